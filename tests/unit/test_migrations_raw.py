"""The raw engine without Docker: the command it builds, how it reads the applier's
JSON lines (recorded from real runs against PostgreSQL), the errors it raises, and the
applier's own pure helpers. The fleet tests (tests/integration/test_migrations_raw_db.py)
run the same engine against a real database."""

from __future__ import annotations

import hashlib
import json

import pytest

from stagecraft.errors import ConfigError, MigrationFailed
from stagecraft.migrations import raw_applier
from stagecraft.migrations.base import Completed, ContainerCommand, Migrator, PhaseSpec
from stagecraft.migrations.raw import RawMigrator, applied_names, applier_script, parse_events

SPEC = PhaseSpec("pre", path="db/migrations")


class ScriptedRunner:
    """A ContainerRunner test double: records the commands, answers from a script."""

    def __init__(self, *answers: Completed) -> None:
        self.answers = list(answers)
        self.commands: list[ContainerCommand] = []

    def run(self, command: ContainerCommand, *, timeout: float) -> Completed:
        self.commands.append(command)
        return self.answers.pop(0)


def lines(*events: dict) -> str:
    return "\n".join(json.dumps(e, sort_keys=True) for e in events) + "\n"


DRIVER = {"event": "driver", "name": "psycopg", "version": "3.2.6", "python": "3.13.5"}


def test_raw_is_a_migrator_and_builds_the_applier_command():
    engine = RawMigrator()
    assert isinstance(engine, Migrator) and engine.engine == "raw" and not engine.can_down
    command = engine.command(SPEC, "apply")
    assert command.argv == ("python3", "-", "apply", "db/migrations", "pre")
    assert command.stdin == applier_script() and "pg_advisory_lock" in command.stdin
    assert RawMigrator(python="/usr/local/bin/python3").command(
        PhaseSpec("post", path="m"), "status").argv == ("/usr/local/bin/python3", "-", "status", "m", "post")


def test_a_phase_without_a_path_is_a_config_error():
    with pytest.raises(ConfigError) as caught:
        RawMigrator().pending(PhaseSpec("post"), ScriptedRunner(), timeout=5)
    assert "migrations.post_deploy.path" in caught.value.hint


def test_parse_events_skips_lines_that_are_not_applier_events():
    stdout = "hello from sitecustomize\n{not json\n[1, 2]\n{\"x\": 1}\n" + lines(DRIVER)
    assert parse_events(stdout) == [DRIVER]


def test_pending_reports_every_file_and_which_are_applied():
    runner = ScriptedRunner(Completed(0, lines(
        DRIVER,
        {"event": "migration", "name": "001_a.sql", "checksum": "aa", "applied": True},
        {"event": "migration", "name": "002_b.sql", "checksum": "bb", "applied": False},
        {"event": "done", "applied": []}), ""))
    report = RawMigrator().pending(SPEC, runner, timeout=30)
    assert runner.commands[0].argv[2] == "status"
    assert [(m.name, m.applied, m.checksum) for m in report.migrations] == [
        ("001_a.sql", True, "aa"), ("002_b.sql", False, "bb")]
    assert report.pending == ("002_b.sql",) and report.applied_now == ()
    assert report.engine == "raw" and report.phase == "pre"


def test_apply_reports_the_files_it_applied_in_order():
    stdout = lines(
        DRIVER,
        {"event": "migration", "name": "001_a.sql", "checksum": "aa", "applied": True},
        {"event": "migration", "name": "002_b.sql", "checksum": "bb", "applied": False},
        {"event": "migration", "name": "003_c.sql", "checksum": "cc", "applied": False},
        {"event": "start", "name": "002_b.sql"},
        {"event": "applied", "name": "002_b.sql", "checksum": "bb", "duration_ms": 3},
        {"event": "start", "name": "003_c.sql"},
        {"event": "applied", "name": "003_c.sql", "checksum": "cc", "duration_ms": 1},
        {"event": "done", "applied": ["002_b.sql", "003_c.sql"]})
    report = RawMigrator().apply(SPEC, ScriptedRunner(Completed(0, stdout, "")), timeout=30)
    assert report.applied_now == ("002_b.sql", "003_c.sql")
    assert report.pending == () and all(m.applied for m in report.migrations)
    assert applied_names(stdout) == ["002_b.sql", "003_c.sql"]


def test_a_changed_file_names_the_file_and_both_checksums():
    stdout = lines(DRIVER, {"event": "migration", "name": "001_a.sql", "checksum": "new",
                            "applied": True},
                   {"event": "changed", "name": "001_a.sql", "applied_checksum": "old",
                    "checksum": "new"}, {"event": "done", "applied": []})
    with pytest.raises(MigrationFailed) as caught:
        RawMigrator().apply(SPEC, ScriptedRunner(Completed(2, stdout, "")), timeout=30)
    error = caught.value
    assert "001_a.sql" in error.message and "old" in error.message and "new" in error.message
    assert "add a new migration" in error.hint and error.returncode == 2


def test_a_failed_file_names_it_the_error_and_what_ran_before():
    stdout = lines(DRIVER, {"event": "applied", "name": "001_a.sql", "checksum": "a",
                            "duration_ms": 1},
                   {"event": "failed", "name": "002_b.sql", "sqlstate": "42P01",
                    "error": 'relation "nope" does not exist'})
    with pytest.raises(MigrationFailed) as caught:
        RawMigrator().apply(SPEC, ScriptedRunner(Completed(1, stdout, "")), timeout=30)
    message = caught.value.message
    assert "002_b.sql failed and was rolled back [SQLSTATE 42P01]" in message
    assert 'relation "nope" does not exist' in message and "applied before it: 001_a.sql" in message
    assert caught.value.output.startswith("{")


@pytest.mark.parametrize(("done", "expected"), [
    # Real outputs of images without python3 / without a driver / a wrong path.
    (Completed(127, "", 'docker: Error response from daemon: failed to create task: exec: '
               '"python3": executable file not found in $PATH\n'), "cannot run python3"),
    (Completed(3, lines(DRIVER | {"event": "error", "kind": "driver-missing",
                                  "message": "neither psycopg (3) nor psycopg2"}), ""),
     "no PostgreSQL driver"),
    (Completed(3, lines({"event": "error", "kind": "path-missing",
                         "message": "no directory 'db/migrations' under '/app'"}), ""),
     "no directory 'db/migrations' under '/app'"),
    (Completed(125, "", "docker: Error response from daemon: network x not found.\n"),
     "docker could not start the migration container"),
    (Completed(0, lines(DRIVER), ""), "without saying it was done"),
])
def test_environment_problems_say_what_the_image_needs(done, expected):
    with pytest.raises(MigrationFailed) as caught:
        RawMigrator().apply(SPEC, ScriptedRunner(done), timeout=30)
    assert expected in caught.value.message, caught.value.message
    if "python3" in expected or "driver" in expected:
        assert "engine `command`" in caught.value.hint


def test_applier_lists_sql_files_in_name_order_with_their_sha256(tmp_path):
    (tmp_path / "010_late.sql").write_text("select 10;")
    (tmp_path / "002_early.sql").write_text("select 2;")
    (tmp_path / "README.md").write_text("not a migration")
    (tmp_path / "sub.sql").mkdir()  # a directory is not a file
    files = raw_applier.migration_files(str(tmp_path))
    assert files == [("002_early.sql", hashlib.sha256(b"select 2;").hexdigest()),
                     ("010_late.sql", hashlib.sha256(b"select 10;").hexdigest())]


def test_applier_moves_prismas_schema_parameter_into_the_search_path():
    assert raw_applier.split_url("postgresql://u:p@db:5432/app?schema=shop&sslmode=disable") == (
        "postgresql://u:p@db:5432/app?sslmode=disable", "shop")
    assert raw_applier.split_url("postgresql://u:p@db/app") == ("postgresql://u:p@db/app", None)
