"""The database: DATABASE_URL names it (postgres://user:password@host:port/db).

Each call opens a short connection, so a database restarted under a running
server costs one failed request, not a stuck connection.
"""

from __future__ import annotations

import os

CONNECT_TIMEOUT_S = 3


class DatabaseUnavailable(Exception):
    """The database is not configured or does not answer."""


def fetch_items() -> list[dict[str, object]]:
    """The rows of table ``items``, by id, as ``[{"id": 1, "name": "apple"}, ...]``."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        raise DatabaseUnavailable("DATABASE_URL is not set")
    # Imported here: /up and /api/hello work without psycopg installed.
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            rows = conn.execute("SELECT id, name FROM items ORDER BY id").fetchall()
    except psycopg.Error as exc:
        raise DatabaseUnavailable(str(exc).strip() or type(exc).__name__) from exc
    return [{"id": item_id, "name": name} for item_id, name in rows]
