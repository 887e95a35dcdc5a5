INSERT INTO items (name) VALUES ('anvil'), ('rocket skates');
