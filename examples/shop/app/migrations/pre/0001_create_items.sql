-- The shop's first table. Pre-deploy: runs before any container of the release
-- takes traffic.
CREATE TABLE items (
    id    serial PRIMARY KEY,
    name  text NOT NULL UNIQUE,
    price_cents integer NOT NULL CHECK (price_cents >= 0)
);
