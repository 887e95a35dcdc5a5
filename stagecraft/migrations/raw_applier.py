"""The raw engine's applier: runs inside the one-off migration container.

Fed on stdin to ``python3 - MODE PATH PHASE`` (MODE is ``status`` or ``apply``), with
the database URL in the environment variable DATABASE_URL. Needs only the standard
library and psycopg 3 (or psycopg2). It prints one JSON object per line on stdout
(``{"event": ...}``), which stagecraft.migrations.raw parses; nothing else goes to
stdout. Exit codes: 0 done, 1 a migration failed (rolled back), 2 an applied file
changed, 3 the container lacks something (driver, directory, DATABASE_URL, database).

``apply`` holds a PostgreSQL advisory lock for the whole run, so two appliers never
interleave: the second waits, then finds nothing pending. Each file runs in its own
transaction together with its row in ``stagecraft_migrations``.
"""

import glob
import hashlib
import json
import os
import sys
import time
import urllib.parse

TABLE = "stagecraft_migrations"
# pg_advisory_lock key: the bytes of "STGMIG" as a number. Fixed, so every applier of
# every release contends for the same lock.
LOCK_KEY = 0x5354474D4947

CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " phase text NOT NULL,"
    " name text NOT NULL,"
    " checksum text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now(),"
    " duration_ms integer NOT NULL,"
    " PRIMARY KEY (phase, name))"
)


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}, sort_keys=True), flush=True)


def fail(kind, message, code=3):
    emit("error", kind=kind, message=message)
    sys.exit(code)


def load_driver():
    """(module, name): psycopg 3 if the image has it, else psycopg2."""
    try:
        import psycopg
        return psycopg, "psycopg"
    except ImportError:
        pass
    try:
        import psycopg2
        return psycopg2, "psycopg2"
    except ImportError:
        return None, None


def migration_files(path):
    """[(name, sha256)] of the *.sql files directly in ``path``, in name order."""
    files = []
    for full in sorted(glob.glob(os.path.join(glob.escape(path), "*.sql"))):
        if os.path.isfile(full):
            with open(full, "rb") as handle:
                files.append((os.path.basename(full), hashlib.sha256(handle.read()).hexdigest()))
    return files


def split_url(url):
    """(libpq URL, schema or None): libpq rejects Prisma's ``?schema=``, so it is taken
    out and becomes the search_path instead."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urllib.parse.urlencode([(k, v) for k, v in query if k != "schema"])
    return urllib.parse.urlunsplit(parts._replace(query=rest)), schema


def connect(driver, name, url):
    url, schema = split_url(url)
    if name == "psycopg":
        conn = driver.connect(url, autocommit=True)
    else:
        conn = driver.connect(url)
        conn.autocommit = True
    if schema:
        conn.cursor().execute("SELECT set_config('search_path', %s, false)", (schema,))
    return conn


def applied_rows(cur, phase):
    """{name: checksum} of the phase's applied migrations ({} when the table is missing)."""
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,))
    if not cur.fetchone()[0]:
        return {}
    cur.execute(f"SELECT name, checksum FROM {TABLE} WHERE phase = %s ORDER BY name", (phase,))
    return dict(cur.fetchall())


def survey(files, applied):
    """Emit one ``migration`` line per file (and per applied row whose file is gone) and
    one ``changed`` line per applied file whose checksum differs; True when any did."""
    changed = False
    names = set()
    for name, checksum in files:
        names.add(name)
        old = applied.get(name)
        emit("migration", name=name, checksum=checksum, applied=old is not None)
        if old is not None and old != checksum:
            emit("changed", name=name, applied_checksum=old, checksum=checksum)
            changed = True
    for name in sorted(set(applied) - names):
        emit("migration", name=name, checksum=applied[name], applied=True, missing=True)
    return changed


def apply_one(cur, path, phase, name, checksum):
    with open(os.path.join(path, name), encoding="utf-8") as handle:
        sql = handle.read()
    started = time.monotonic()
    cur.execute("BEGIN")
    try:
        if sql.strip():
            cur.execute(sql)
        duration_ms = int((time.monotonic() - started) * 1000)
        cur.execute(f"INSERT INTO {TABLE} (phase, name, checksum, duration_ms)"
                    " VALUES (%s, %s, %s, %s)", (phase, name, checksum, duration_ms))
        cur.execute("COMMIT")
    except Exception as exc:
        try:
            cur.execute("ROLLBACK")
        except Exception:  # the connection itself is gone: the server rolls back
            pass
        sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        emit("failed", name=name, error=str(exc).strip(), sqlstate=sqlstate)
        sys.exit(1)
    emit("applied", name=name, checksum=checksum, duration_ms=duration_ms)


def main(argv):
    if len(argv) != 3 or argv[0] not in ("status", "apply"):
        fail("usage", "usage: python3 - status|apply PATH PHASE")
    mode, path, phase = argv
    driver, name = load_driver()
    if driver is None:
        fail("driver-missing", "neither psycopg (3) nor psycopg2 can be imported")
    emit("driver", name=name, version=getattr(driver, "__version__", "?"), python=sys.version.split()[0])
    if not os.path.isdir(path):
        fail("path-missing", f"no directory {path!r} under {os.getcwd()!r}")
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        fail("no-database-url", "DATABASE_URL is not set in the container")
    files = migration_files(path)
    try:
        conn = connect(driver, name, url)
    except Exception as exc:
        fail("connect", f"cannot connect to the database: {str(exc).strip()}")
    cur = conn.cursor()
    if mode == "status":
        changed = survey(files, applied_rows(cur, phase))
        emit("done", applied=[])
        sys.exit(2 if changed else 0)

    cur.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
    if not cur.fetchone()[0]:
        emit("waiting", reason="another migration run holds the lock")
        started = time.monotonic()
        cur.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        emit("locked", waited_ms=int((time.monotonic() - started) * 1000))
    # Under the lock: the table and the applied rows cannot change under us now.
    cur.execute(CREATE_TABLE)
    applied = applied_rows(cur, phase)
    if survey(files, applied):
        emit("done", applied=[])
        sys.exit(2)
    done = []
    for file_name, checksum in files:
        if file_name not in applied:
            emit("start", name=file_name)
            apply_one(cur, path, phase, file_name, checksum)
            done.append(file_name)
    cur.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    conn.close()
    emit("done", applied=done)


if __name__ == "__main__":
    main(sys.argv[1:])
