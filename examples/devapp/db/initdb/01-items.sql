-- devapp's data: run once, when the database is first created (see ../entrypoint.sh).
CREATE TABLE items (
    id   serial PRIMARY KEY,
    name text NOT NULL
);

INSERT INTO items (name) VALUES ('apple'), ('bread'), ('cheese');
