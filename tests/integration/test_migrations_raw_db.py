"""The raw and command engines against a real PostgreSQL (tests/migrations_db.py),
each command run by LocalDockerRunner in a one-off container of a small app image
built FROM stagecraft/runtime with the test's migration files.

Covers: name order and the tracking table, a second apply that applies nothing, a
changed applied file, a failing file that rolls back only itself and stops, two
concurrent appliers that never apply a file twice, images without python3 or a
driver, the runner's timeout, and the command engine with a status command.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

import pytest
from migrations_db import migrations_db  # noqa: F401  (the fixture)

from stagecraft.errors import MigrationFailed
from stagecraft.migrations.base import ContainerCommand, PhaseSpec
from stagecraft.migrations.command import CommandMigrator
from stagecraft.migrations.raw import RawMigrator
from stagecraft.migrations.runner import LocalDockerRunner

pytestmark = pytest.mark.fleet

PRE = PhaseSpec("pre", path="migrations")
PREFIX = "sc-migtest"


@pytest.fixture(scope="module")
def build_app():
    """build_app({path: text}, dockerfile_extra="") -> an image tag FROM the runtime
    image with those files under /app; every tag is removed at the end."""
    from stagecraft.providers.cloud.local.service_images import ensure_runtime_image

    runtime = ensure_runtime_image()
    tags: list[str] = []

    def build(files: dict[str, str], extra: str = "") -> str:
        tag = f"{PREFIX}-app:{uuid.uuid4().hex[:10]}"
        with tempfile.TemporaryDirectory() as tmp:
            context = Path(tmp)
            for path, text in files.items():
                (context / "app" / path).parent.mkdir(parents=True, exist_ok=True)
                (context / "app" / path).write_text(text)
            (context / "app").mkdir(exist_ok=True)
            (context / "Dockerfile").write_text(
                f"FROM {runtime}\n{extra}\nWORKDIR /app\nCOPY app/ /app/\n")
            subprocess.run(["docker", "build", "-q", "-t", tag, str(context)], check=True,
                           capture_output=True, timeout=300,
                           env={**os.environ, "DOCKER_BUILDKIT": "0"})
        tags.append(tag)
        return tag

    yield build
    if tags:
        subprocess.run(["docker", "rmi", "-f", *tags], capture_output=True, timeout=120)


def runner_for(db, image: str, database: str) -> LocalDockerRunner:
    return LocalDockerRunner(image, network=db.network, name_prefix=PREFIX,
                             secret_env={"DATABASE_URL": db.url_for(database)})


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# Each file appends to `journal`, so its ids show the order the files ran in.
BASE_FILES = {
    "migrations/001_journal.sql": "CREATE TABLE journal (id serial PRIMARY KEY, step text);\n"
                                  "INSERT INTO journal (step) VALUES ('001');\n",
    "migrations/002_items.sql": "CREATE TABLE items (name text UNIQUE);\n"
                                "INSERT INTO journal (step) VALUES ('002');\n",
    "migrations/010_more.sql": "INSERT INTO items VALUES ('anvil'), ('100% cotton');\n"
                               "INSERT INTO journal (step) VALUES ('010');\n",
    "migrations/notes.txt": "not a migration\n",
}


def test_apply_runs_files_in_name_order_once(migrations_db, build_app):
    image = build_app(BASE_FILES)
    runner = runner_for(migrations_db, image, "ordered")
    migrations_db.create_database("ordered")
    engine = RawMigrator()

    before = engine.pending(PRE, runner, timeout=60)
    assert before.pending == ("001_journal.sql", "002_items.sql", "010_more.sql")

    first = engine.apply(PRE, runner, timeout=60)
    assert first.applied_now == ("001_journal.sql", "002_items.sql", "010_more.sql")
    assert migrations_db.psql("SELECT string_agg(step, ',' ORDER BY id) FROM journal",
                              database="ordered") == "001,002,010"
    rows = migrations_db.psql("SELECT phase, name, checksum, duration_ms >= 0, applied_at <= now() "
                              "FROM stagecraft_migrations ORDER BY name", database="ordered")
    assert rows.splitlines() == [
        f"pre|{name.split('/')[1]}|{sha256(text)}|t|t" for name, text in BASE_FILES.items()
        if name.endswith(".sql")]

    second = engine.apply(PRE, runner, timeout=60)
    assert second.applied_now == () and second.pending == ()
    assert migrations_db.psql("SELECT count(*) FROM journal", database="ordered") == "3"
    assert engine.pending(PRE, runner, timeout=60).pending == ()

    # A new file in the next release: only it runs. The post phase is tracked apart.
    image2 = build_app({**BASE_FILES, "migrations/011_last.sql":
                        "INSERT INTO journal (step) VALUES ('011');\n",
                        "migrations/post/001_journal.sql":
                        "INSERT INTO journal (step) VALUES ('post-001');\n"})
    runner2 = runner_for(migrations_db, image2, "ordered")
    assert engine.apply(PRE, runner2, timeout=60).applied_now == ("011_last.sql",)
    post = engine.apply(PhaseSpec("post", path="migrations/post"), runner2, timeout=60)
    assert post.applied_now == ("001_journal.sql",)
    assert migrations_db.psql("SELECT string_agg(step, ',' ORDER BY id) FROM journal",
                              database="ordered") == "001,002,010,011,post-001"


def test_a_changed_applied_file_is_an_error_and_nothing_runs(migrations_db, build_app):
    migrations_db.create_database("changed")
    engine = RawMigrator()
    engine.apply(PRE, runner_for(migrations_db, build_app(BASE_FILES), "changed"), timeout=60)

    edited = "CREATE TABLE journal (id bigserial PRIMARY KEY, step text);\n"
    image = build_app({**BASE_FILES, "migrations/001_journal.sql": edited,
                       "migrations/020_new.sql": "INSERT INTO journal (step) VALUES ('020');\n"})
    runner = runner_for(migrations_db, image, "changed")
    old = sha256(BASE_FILES["migrations/001_journal.sql"])
    for call in (engine.pending, engine.apply):
        with pytest.raises(MigrationFailed) as caught:
            call(PRE, runner, timeout=60)
        message = caught.value.message
        assert "001_journal.sql" in message and old in message and sha256(edited) in message
        assert "add a new migration" in caught.value.hint
    assert migrations_db.psql("SELECT count(*) FROM stagecraft_migrations",
                              database="changed") == "3"
    assert migrations_db.psql("SELECT count(*) FROM journal WHERE step = '020'",
                              database="changed") == "0"


def test_a_failing_file_rolls_back_only_itself_and_stops(migrations_db, build_app):
    migrations_db.create_database("failing")
    image = build_app({
        "migrations/001_ok.sql": "CREATE TABLE t (x int);\nINSERT INTO t VALUES (1);\n",
        "migrations/002_bad.sql": "INSERT INTO t VALUES (2);\nSELECT * FROM no_such_table;\n",
        "migrations/003_never.sql": "INSERT INTO t VALUES (3);\n",
    })
    runner = runner_for(migrations_db, image, "failing")
    with pytest.raises(MigrationFailed) as caught:
        RawMigrator().apply(PRE, runner, timeout=60)
    message = caught.value.message
    assert "002_bad.sql failed and was rolled back [SQLSTATE 42P01]" in message
    assert "no_such_table" in message and "applied before it: 001_ok.sql" in message
    assert migrations_db.psql("SELECT string_agg(x::text, ',' ORDER BY x) FROM t",
                              database="failing") == "1"
    assert migrations_db.psql("SELECT string_agg(name, ',') FROM stagecraft_migrations",
                              database="failing") == "001_ok.sql"
    assert RawMigrator().pending(PRE, runner, timeout=60).pending == ("002_bad.sql",
                                                                      "003_never.sql")


def test_concurrent_appliers_never_apply_a_file_twice(migrations_db, build_app):
    migrations_db.create_database("racing")
    files = {"migrations/001_t.sql": "CREATE TABLE hits (file text);\n"}
    for n in range(2, 7):
        # pg_sleep widens the window in which the other applier would interleave.
        files[f"migrations/{n:03}_hit.sql"] = (f"SELECT pg_sleep(0.3);\n"
                                              f"INSERT INTO hits VALUES ('{n:03}');\n")
    image = build_app(files)
    reports, errors = [], []

    def apply() -> None:
        try:
            reports.append(RawMigrator().apply(PRE, runner_for(migrations_db, image, "racing"),
                                               timeout=120))
        except Exception as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=apply) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not errors, errors
    assert len(reports) == 2
    applied = [name for report in reports for name in report.applied_now]
    assert sorted(applied) == sorted(Path(p).name for p in files)
    assert len(applied) == len(set(applied))
    assert migrations_db.psql("SELECT count(*), count(DISTINCT file) FROM hits",
                              database="racing") == "5|5"
    assert migrations_db.psql("SELECT count(*) FROM stagecraft_migrations",
                              database="racing") == "6"


def test_images_without_python3_or_a_driver_get_a_clear_error(migrations_db, build_app):
    no_driver = build_app({"migrations/001.sql": "SELECT 1;\n"},
                          extra="RUN rm -rf /usr/lib/python3/dist-packages/psycopg*")
    with pytest.raises(MigrationFailed) as caught:
        RawMigrator().apply(PRE, runner_for(migrations_db, no_driver, "app"), timeout=60)
    assert "no PostgreSQL driver" in caught.value.message
    assert "engine `command`" in caught.value.hint

    with pytest.raises(MigrationFailed) as caught:
        RawMigrator(python="python3-not-here").apply(
            PRE, runner_for(migrations_db, no_driver, "app"), timeout=60)
    assert "cannot run python3-not-here" in caught.value.message

    with_driver = build_app({"migrations/001.sql": "SELECT 1;\n"})
    with pytest.raises(MigrationFailed) as caught:
        RawMigrator().pending(PhaseSpec("pre", path="db/none"),
                              runner_for(migrations_db, with_driver, "app"), timeout=60)
    assert "no directory 'db/none' under '/app'" in caught.value.message


def test_the_runner_removes_a_container_that_outlives_its_timeout(migrations_db, build_app):
    runner = LocalDockerRunner(migrations_db.image, name_prefix=f"{PREFIX}-timeout",
                               secret_env={"DATABASE_URL": migrations_db.url})
    with pytest.raises(MigrationFailed) as caught:
        runner.run(ContainerCommand(argv=("sh", "-c", 'echo "$DATABASE_URL"; sleep 60')),
                   timeout=3)
    assert "did not finish within 3 s" in caught.value.message
    assert migrations_db.password not in caught.value.output
    left = subprocess.run(["docker", "ps", "-aq", "--filter", f"name={PREFIX}-timeout"],
                          capture_output=True, text=True, timeout=30)
    assert left.stdout.strip() == ""
    # A finished command: its output, secrets masked, and its exit code.
    done = runner.run(ContainerCommand(argv=("sh", "-c", 'echo "$DATABASE_URL $A"; exit 4'),
                                       env={"A": "plain"}), timeout=30)
    assert done.returncode == 4 and done.stdout.strip() == "******** plain"


# A tiny migration tool for the command engine: its own table, `pending` and `up`.
TOOL = '''
import os, sys, psycopg
NAMES = ["0001_users", "0002_orders"]
conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
conn.execute("CREATE TABLE IF NOT EXISTS tool_log (name text PRIMARY KEY)")
done = {r[0] for r in conn.execute("SELECT name FROM tool_log")}
for name in NAMES:
    if name not in done:
        if sys.argv[1] == "up":
            conn.execute("INSERT INTO tool_log VALUES (%s)", (name,))
            print("applied", name, file=sys.stderr)
        else:
            print(name)
'''


def test_command_engine_with_a_status_command(migrations_db, build_app):
    migrations_db.create_database("tool")
    runner = runner_for(migrations_db, build_app({"tool.py": TOOL}), "tool")
    spec = PhaseSpec("pre", command=("python3", "tool.py", "up"),
                     status_command=("python3", "tool.py", "pending"))
    engine = CommandMigrator()
    assert engine.pending(spec, runner, timeout=60).pending == ("0001_users", "0002_orders")
    report = engine.apply(spec, runner, timeout=60)
    assert report.applied_now == ("0001_users", "0002_orders")
    assert "applied 0002_orders" in report.output
    assert engine.pending(spec, runner, timeout=60).pending == ()
    assert engine.apply(spec, runner, timeout=60).applied_now == ()
    assert migrations_db.psql("SELECT count(*) FROM tool_log", database="tool") == "2"

    failing = PhaseSpec("pre", command=("sh", "-c", "echo 'no such table' >&2; exit 5"))
    with pytest.raises(MigrationFailed) as caught:
        engine.apply(failing, runner, timeout=60)
    assert caught.value.returncode == 5 and caught.value.output == "no such table"
