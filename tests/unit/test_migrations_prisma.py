"""The prisma engine's commands and its reading of Prisma's output.

The outputs under tests/fixtures/migrations/prisma/ were captured from real runs: the
example image (examples/migrations/prisma: Prisma 6.19 with the pg driver adapter, so
its schema engine runs as WebAssembly) against a real PostgreSQL, through
LocalDockerRunner, by tests/fixtures/migrations/capture.py (run it again after changing
the engine's script or the example's versions). The fleet test
tests/integration/test_migrations_prisma_db.py runs the same engine for real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from stagecraft.errors import MigrationFailed
from stagecraft.migrations.base import Completed, Migrator, PhaseSpec
from stagecraft.migrations.prisma import (
    _FAILED,
    _PENDING,
    MARK,
    SCRIPT,
    PrismaMigrator,
    deployed_names,
    first_error,
    names_after,
    parse_marks,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "migrations" / "prisma"
NAMES = ("20261121000001_create_users", "20261121000002_add_posts")
IMAGE = "stagecraft/example-prisma:test"


def fixture(name: str) -> tuple[PhaseSpec, Completed, str]:
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    return (PhaseSpec("pre", path=data["path"]),
            Completed(data["returncode"], data["stdout"], data["stderr"]), data["mode"])


def report(name: str):
    spec, done, mode = fixture(name)
    return PrismaMigrator().report(spec, done, mode=mode, image=IMAGE)


def failure(name: str) -> MigrationFailed:
    with pytest.raises(MigrationFailed) as info:
        report(name)
    return info.value


# ------------------------------------------------------------------------ commands


def test_it_is_a_migrator_that_cannot_go_down():
    migrator = PrismaMigrator()
    assert isinstance(migrator, Migrator)
    assert (migrator.engine, migrator.can_down) == ("prisma", False)


@pytest.mark.parametrize("mode", ["status", "apply"])
def test_path_is_passed_as_the_schema(mode):
    command = PrismaMigrator().command(PhaseSpec("pre", path="db/schema.prisma"), mode)
    assert command.argv == ("sh", "-s", "--", mode, "--schema", "db/schema.prisma")
    assert command.stdin == SCRIPT
    # Prisma's update check would try the internet on every run.
    assert command.env["CHECKPOINT_DISABLE"] == "1"
    assert "DATABASE_URL" not in command.env


def test_without_a_path_prisma_finds_its_own_configuration():
    assert PrismaMigrator().command(PhaseSpec("post"), "status").argv == (
        "sh", "-s", "--", "status")


def test_an_unknown_mode_is_a_bug():
    with pytest.raises(ValueError):
        PrismaMigrator().command(PhaseSpec("pre"), "reset")


def test_the_script_deploys_then_reads_the_status():
    deploy = SCRIPT.index("npx --no-install prisma migrate deploy")
    status = SCRIPT.index("npx --no-install prisma migrate status")
    assert deploy < status


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh")
def test_the_script_is_valid_sh():
    proc = subprocess.run(["sh", "-n"], input=SCRIPT, capture_output=True, check=False, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_script_says_which_tool_an_image_lacks(tmp_path):
    """Run for real with sh and a PATH without node: the script's own check."""
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    proc = subprocess.run([sh, "-s", "--", "status"], input=SCRIPT, capture_output=True,
                          text=True, cwd=tmp_path, env={**os.environ, "PATH": str(tmp_path)},
                          check=False)
    assert proc.returncode == 127
    assert parse_marks(proc.stdout) == [{"missing": "node"}]


@pytest.mark.skipif(shutil.which("node") is None or shutil.which("npx") is None,
                    reason="no node on this machine")
def test_the_script_says_when_prisma_is_not_installed(tmp_path):
    """Node is there, the prisma package is not: found before npx is asked."""
    proc = subprocess.run(["sh", "-s", "--", "status"], input=SCRIPT, capture_output=True,
                          text=True, cwd=tmp_path, timeout=60, check=False)
    assert proc.returncode == 127
    assert parse_marks(proc.stdout) == [{"missing": "prisma"}]


# --------------------------------------------------------------- real outputs


def test_status_exits_1_when_migrations_are_pending_and_that_is_no_error():
    _, done, _ = fixture("status_fresh")
    assert done.returncode == 0  # the script's own exit
    assert {"step": "status", "exit": 1} in parse_marks(done.stdout)  # Prisma's
    result = report("status_fresh")
    assert result.pending == NAMES
    assert result.applied_now == ()


def test_apply_reports_the_migrations_deploy_applied():
    result = report("apply_all")
    assert result.applied_now == NAMES
    assert result.pending == ()
    assert "All migrations have been successfully applied." in result.output
    assert MARK.strip() not in result.output


def test_a_second_apply_applies_nothing():
    result = report("apply_again")
    assert result.applied_now == ()
    assert [m.applied for m in result.migrations] == [True, True]
    assert "No pending migrations to apply." in result.output


def test_status_after_apply_lists_every_migration_as_applied():
    result = report("status_done")
    assert result.pending == ()
    assert tuple(m.name for m in result.migrations) == NAMES


def test_without_a_path_prisma_config_finds_the_same_migrations():
    spec, _, _ = fixture("status_default_path")
    assert spec.path is None
    assert report("status_default_path").pending == NAMES


def test_a_database_only_migration_is_not_seen_with_the_wasm_schema_engine():
    """Recorded behaviour of Prisma 6.19 with a driver adapter: a row in
    _prisma_migrations that the folder lacks does not make status fail."""
    result = report("status_drift")
    assert result.pending == ()
    assert "20270101000000_from_elsewhere" not in {m.name for m in result.migrations}


def test_drift_reported_by_prisma_is_an_error():
    """The native schema engine's wording for the same state (synthetic output)."""
    stdout = ("2 migrations found in prisma/migrations\n"
              "Your local migration history and the migrations table from your database "
              "are different:\n\nThe migration from the database are not found locally in "
              "prisma/migrations:\n20270101000000_from_elsewhere\n\n"
              f'{MARK}{{"step": "status", "exit": 1}}\n')
    with pytest.raises(MigrationFailed, match="migrations folder lacks"):
        PrismaMigrator().report(PhaseSpec("pre"), Completed(0, stdout, ""), mode="status")


def test_an_image_without_node_gets_a_clear_error():
    error = failure("status_no_node")
    assert f"engine prisma needs Node.js in image {IMAGE}" in error.message
    assert "devDependencies" in error.hint
    assert "driver adapter" in error.hint


def test_an_image_without_prisma_gets_a_clear_error():
    error = failure("status_no_prisma")
    assert "needs prisma in image" in error.message


def test_an_unreachable_database_is_an_error_not_a_pending_state():
    error = failure("status_unreachable")
    assert "Can't reach database server at `sc-migcap-nohost`" in error.message
    assert "DATABASE_URL" in error.hint


def test_a_failing_migration_is_named_with_the_database_error():
    error = failure("apply_fails")
    assert "migration 20261121000002_add_posts failed" in error.message
    assert 'relation "Post" already exists' in error.message
    assert "recorded as failed: 20261121000002_add_posts" in error.message
    assert "prisma migrate resolve --rolled-back 20261121000002_add_posts" in error.hint
    assert error.output and error.output_tail


def test_a_recorded_failed_migration_blocks_status():
    error = failure("status_failed")
    assert "20261121000002_add_posts failed earlier" in error.message
    assert "prisma migrate resolve" in error.hint


def test_a_non_empty_database_without_history_needs_a_baseline():
    error = failure("apply_not_empty")
    assert "P3005" in error.message and "not empty" in error.message
    assert "baseline" in error.hint


def test_docker_failing_to_start_the_container_is_said_so():
    done = Completed(125, "", "docker: Error response from daemon: No such image: x.\n")
    with pytest.raises(MigrationFailed, match="could not start the migration container"):
        PrismaMigrator().report(PhaseSpec("pre"), done, mode="status")


# ------------------------------------------------------------------ text parsing


def test_pending_heading_in_singular_and_plural():
    text = ("Following migration have not yet been applied:\nA_one\n\n"
            "Following migrations have not yet been applied:\nB_two\nC_three\n\nTo apply")
    assert names_after(text, _PENDING) == ["A_one", "B_two", "C_three"]
    assert names_after("Following migration have failed:\nX_bad\n", _FAILED) == ["X_bad"]


def test_deployed_names_come_from_the_tree_of_folders_only():
    tree = ("migrations/\n  └─ 1_a/\n    └─ migration.sql\n"
            "  └─ 2_b/\n    └─ migration.sql\n")
    assert deployed_names(tree) == ["1_a", "2_b"]


def test_first_error_skips_the_schema_engines_backtrace():
    text = ("Error: external connector error\nERROR: boom\n   0: sql_schema_connector::x\n"
            "           with migration_name=\"1_a\"\n")
    assert first_error(text) == "external connector error ERROR: boom"
    assert first_error("all good\n") is None
