"""Database migrations as phases of a release (spec/migrations/)."""
