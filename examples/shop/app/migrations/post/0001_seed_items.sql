-- Post-deploy: runs once after every host serves the release.
INSERT INTO items (name, price_cents) VALUES ('tea', 350), ('cake', 420)
ON CONFLICT (name) DO NOTHING;
