"""The drizzle engine's commands and its reading of their output.

The outputs under tests/fixtures/migrations/drizzle/ were captured from real runs: the
example image (examples/migrations/drizzle, drizzle-kit 0.31) against a real PostgreSQL,
through LocalDockerRunner, by tests/fixtures/migrations/capture.py (run it again after
changing the engine's script or the example's versions). Each file holds the mode, the
phase's path and the Completed (returncode, stdout, stderr). The fleet test
tests/integration/test_migrations_drizzle_db.py runs the same engine for real.
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
from stagecraft.migrations.drizzle import (
    MARK,
    SCRIPT,
    SNAPSHOT_JS,
    DrizzleMigrator,
    migrations_of,
    parse_marks,
    plain,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "migrations" / "drizzle"
TAGS = ("0000_create_users", "0001_add_posts")
IMAGE = "stagecraft/example-drizzle:test"


def fixture(name: str) -> tuple[PhaseSpec, Completed, str]:
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    return (PhaseSpec("pre", path=data["path"]),
            Completed(data["returncode"], data["stdout"], data["stderr"]), data["mode"])


def report(name: str):
    spec, done, mode = fixture(name)
    return DrizzleMigrator().report(spec, done, mode=mode, image=IMAGE)


def failure(name: str) -> MigrationFailed:
    with pytest.raises(MigrationFailed) as info:
        report(name)
    return info.value


# ------------------------------------------------------------------------ commands


def test_it_is_a_migrator_that_cannot_go_down():
    migrator = DrizzleMigrator()
    assert isinstance(migrator, Migrator)
    assert (migrator.engine, migrator.can_down) == ("drizzle", False)


@pytest.mark.parametrize("mode", ["status", "apply"])
def test_command_feeds_the_script_to_sh_with_mode_and_path(mode):
    command = DrizzleMigrator().command(PhaseSpec("post", path="db/drizzle"), mode)
    assert command.argv == ("sh", "-s", "--", mode, "db/drizzle")
    assert command.stdin == SCRIPT
    assert command.env["NPM_CONFIG_UPDATE_NOTIFIER"] == "false"
    assert "DATABASE_URL" not in command.env  # a secret: the runner passes it


def test_each_phase_has_its_own_migrations_table():
    """drizzle-kit compares journal stamps with the newest row of its table: two
    folders in one table would hide each other's migrations."""
    migrator = DrizzleMigrator()
    pre = migrator.command(PhaseSpec("pre", path="drizzle"), "apply")
    post = migrator.command(PhaseSpec("post", path="drizzle-post"), "apply")
    assert pre.env["STAGECRAFT_DRIZZLE_TABLE"] == "__drizzle_migrations"  # drizzle's default
    assert post.env["STAGECRAFT_DRIZZLE_TABLE"] == "__drizzle_migrations_post"


def test_without_a_path_the_engine_uses_drizzle_kits_default_out_folder():
    command = DrizzleMigrator().command(PhaseSpec("pre"), "status")
    assert command.argv[-1] == "drizzle"


def test_an_unknown_mode_is_a_bug():
    with pytest.raises(ValueError):
        DrizzleMigrator().command(PhaseSpec("pre"), "down")


def test_the_script_runs_drizzle_kit_migrate_with_a_config_of_its_own():
    assert 'npx --no-install drizzle-kit migrate --config "$dir/drizzle.config.mjs"' in SCRIPT
    assert "process.env.DATABASE_URL" in SCRIPT  # the URL is never written into the file
    assert 'schema: "drizzle",' in SCRIPT
    assert 'table: process.env.STAGECRAFT_DRIZZLE_TABLE || "__drizzle_migrations"' in SCRIPT


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh")
def test_the_script_is_valid_sh():
    proc = subprocess.run(["sh", "-n"], input=SCRIPT, capture_output=True, check=False, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("node") is None, reason="no node on this machine")
def test_the_snapshot_is_valid_javascript(tmp_path):
    script = tmp_path / "snapshot.js"
    script.write_text(SNAPSHOT_JS)
    proc = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr


def test_the_script_says_which_tool_an_image_lacks(tmp_path):
    """Run for real with sh and a PATH without node: the script's own check."""
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    proc = subprocess.run([sh, "-s", "--", "status", "drizzle"], input=SCRIPT,
                          capture_output=True, check=False, text=True, cwd=tmp_path,
                          env={**os.environ, "PATH": str(tmp_path)})
    assert proc.returncode == 127
    assert parse_marks(proc.stdout) == [{"missing": "node"}]


# --------------------------------------------------------------- real outputs


def test_a_fresh_database_has_both_migrations_pending():
    result = report("status_fresh")
    assert result.pending == TAGS
    assert result.applied_now == ()
    assert all(m.checksum and len(m.checksum) == 64 for m in result.migrations)


def test_apply_reports_what_this_run_applied():
    result = report("apply_all")
    assert result.applied_now == TAGS
    assert result.pending == ()
    assert "migrations applied successfully" in result.output
    assert MARK not in result.output  # the script's JSON lines stay out of the record
    assert "\x1b" not in result.output  # so do the spinner's terminal codes


def test_a_second_apply_applies_nothing():
    result = report("apply_again")
    assert result.applied_now == ()
    assert [m.applied for m in result.migrations] == [True, True]


def test_status_after_apply_has_nothing_pending():
    result = report("status_done")
    assert result.pending == ()
    assert [m.name for m in result.migrations] == list(TAGS)


def test_checksums_are_the_sha256_of_the_migration_files():
    import hashlib

    project = Path(__file__).resolve().parents[2] / "examples" / "migrations" / "drizzle"
    result = report("status_done")
    for migration in result.migrations:
        data = (project / "drizzle" / f"{migration.name}.sql").read_bytes()
        assert migration.checksum == hashlib.sha256(data).hexdigest()


def test_an_applied_migration_whose_hash_changed_is_refused():
    error = failure("status_changed")
    assert "0000_create_users" in error.message
    assert "edited after it was applied" in error.message
    assert "never edit an applied migration" in error.hint


def test_an_image_without_node_gets_a_clear_error():
    error = failure("status_no_node")
    assert f"engine drizzle needs Node.js in image {IMAGE}" in error.message
    assert "devDependencies" in error.hint and "apt-get install nodejs npm" in error.hint
    assert error.returncode == 127


def test_an_image_without_drizzle_kit_gets_a_clear_error():
    error = failure("status_no_drizzle_kit")
    assert "needs drizzle-kit" in error.message
    assert "devDependencies" in error.hint


def test_a_wrong_path_names_the_missing_journal():
    error = failure("status_no_journal")
    assert "db/migrations/meta/_journal.json" in error.message
    assert "migrations.pre_deploy.path" in error.hint


def test_an_unreachable_database_fails_before_drizzle_kit_runs():
    error = failure("apply_unreachable")
    assert "ENOTFOUND" in error.message
    assert "DATABASE_URL" in error.hint
    _, done, _ = fixture("apply_unreachable")
    assert "drizzle_kit_exit" not in done.stdout


def test_a_failing_migration_is_named_with_the_database_error():
    """drizzle-kit 0.31 exits 1 without a word; the engine's rolled-back replay names
    the migration, the statement and PostgreSQL's error."""
    error = failure("apply_fails")
    assert "0001_add_posts fails with" in error.message
    assert 'relation "posts" already exists' in error.message
    assert "SQLSTATE 42P07" in error.message
    assert "still pending: 0000_create_users, 0001_add_posts" in error.message
    assert error.output_tail and error.output


def test_docker_failing_to_start_the_container_is_said_so():
    done = Completed(125, "", "docker: Error response from daemon: No such image: x.\n")
    with pytest.raises(MigrationFailed, match="could not start the migration container"):
        DrizzleMigrator().report(PhaseSpec("pre"), done, mode="status")


# ------------------------------------------------------------------ pure rules


def snapshot(entries, rows):
    return {"stage": "before", "table": bool(rows),
            "entries": [{"tag": t, "when": w, "hash": h} for t, w, h in entries],
            "applied": [{"hash": h, "created_at": c} for h, c in rows]}


def test_applied_follows_drizzle_kits_rule_of_the_newest_created_at():
    entries = [("a", 100, "ha"), ("b", 200, "hb"), ("c", 300, "hc")]
    migrations, suspicious = migrations_of(snapshot(entries, [("ha", 100), ("hb", 200)]))
    assert [m.applied for m in migrations] == [True, True, False]
    assert suspicious == []


def test_an_entry_older_than_the_newest_row_without_its_hash_is_suspicious():
    entries = [("a", 100, "ha"), ("late", 150, "hl"), ("b", 200, "hb")]
    _, suspicious = migrations_of(snapshot(entries, [("ha", 100), ("hb", 200)]))
    assert suspicious == ["late"]


def test_no_table_means_everything_is_pending():
    migrations, _ = migrations_of(snapshot([("a", 1, "h")], []))
    assert [m.applied for m in migrations] == [False]


def test_plain_keeps_only_the_last_state_of_a_redrawn_line():
    text = "Reading\n[a] applying...\x1b[2K\x1b[1G[\x1b[32m✓\x1b[39m] done!\n\n"
    assert plain(text) == "Reading\n[✓] done!"


def test_marks_glued_to_a_line_without_newline_are_found():
    stdout = 'spinner text' + MARK + '{"drizzle_kit_exit": 0}\n' + MARK + "not json\n"
    assert parse_marks(stdout) == [{"drizzle_kit_exit": 0}]
