"""The shop's database, when it has one (DATABASE_URL set): a short connection per
call, so a restarted database never leaves the app holding a dead connection."""

from __future__ import annotations

import os
from typing import Any

CONNECT_TIMEOUT_S = 2


def url() -> str:
    return os.environ.get("DATABASE_URL", "").strip()


def enabled() -> bool:
    return bool(url())


def _connect() -> Any:
    import psycopg  # Debian's python3-psycopg, in stagecraft/runtime

    return psycopg.connect(url(), connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)


def ping() -> None:
    """Raise when the database does not answer."""
    with _connect() as conn:
        conn.execute("SELECT 1")


def facts() -> dict[str, Any]:
    """What /version shows of the database: the newest applied migration of each
    phase and the number of items (or the error, when there is none)."""
    with _connect() as conn:
        rows = conn.execute(
            "SELECT phase, max(name) FROM stagecraft_migrations GROUP BY phase").fetchall()
        schema = {phase: name for phase, name in rows}
        items = conn.execute("SELECT count(*) FROM items").fetchone()[0]
        columns = [row[0] for row in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'items' ORDER BY ordinal_position").fetchall()]
    return {"schema": schema, "items": items, "item_columns": columns}
