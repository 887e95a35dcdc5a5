"""The command engine without Docker: pending from a status command's lines, the
unknown stand-in without one, what apply runs and reports, and its errors."""

from __future__ import annotations

import pytest

from stagecraft.errors import ConfigError, MigrationFailed
from stagecraft.migrations.base import Completed, ContainerCommand, Migrator, PhaseSpec
from stagecraft.migrations.command import UNKNOWN, CommandMigrator, status_names


class ScriptedRunner:
    """A ContainerRunner test double: records the commands, answers from a script."""

    def __init__(self, *answers: Completed) -> None:
        self.answers = list(answers)
        self.commands: list[ContainerCommand] = []

    def run(self, command: ContainerCommand, *, timeout: float) -> Completed:
        self.commands.append(command)
        return self.answers.pop(0)


SPEC = PhaseSpec("pre", command=("./migrate", "up"), status_command=("./migrate", "pending"))


def test_command_is_a_migrator():
    assert isinstance(CommandMigrator(), Migrator) and CommandMigrator.engine == "command"


def test_status_lines_are_the_pending_names():
    assert status_names("  0003_add_index \n\n0004_drop\n0003_add_index\n") == (
        "0003_add_index", "0004_drop")


def test_pending_runs_the_status_command_and_lists_its_lines():
    runner = ScriptedRunner(Completed(0, "0003_a\n0004_b\n", ""))
    report = CommandMigrator().pending(SPEC, runner, timeout=10)
    assert runner.commands == [ContainerCommand(argv=("./migrate", "pending"))]
    assert report.pending == ("0003_a", "0004_b") and report.applied_now == ()


def test_without_a_status_command_pending_is_unknown_and_says_so():
    runner = ScriptedRunner()
    report = CommandMigrator().pending(PhaseSpec("post", command=("x",)), runner, timeout=10)
    assert runner.commands == [] and report.pending == (UNKNOWN,)
    assert "unknown" in report.output and "status_command" in report.output


def test_apply_runs_the_command_and_reports_what_was_pending():
    runner = ScriptedRunner(Completed(0, "0003_a\n", ""), Completed(0, "migrated 1\n", "warn\n"))
    report = CommandMigrator().apply(SPEC, runner, timeout=10)
    assert [c.argv for c in runner.commands] == [("./migrate", "pending"), ("./migrate", "up")]
    assert report.applied_now == ("0003_a",) and report.pending == ()
    assert report.output == "migrated 1\nwarn"


def test_apply_skips_the_command_when_the_status_says_nothing_is_pending():
    runner = ScriptedRunner(Completed(0, "\n", ""))
    report = CommandMigrator().apply(SPEC, runner, timeout=10)
    assert len(runner.commands) == 1 and report.applied_now == ()


def test_apply_without_a_status_command_always_runs():
    runner = ScriptedRunner(Completed(0, "ok", ""))
    report = CommandMigrator().apply(PhaseSpec("pre", command=("m",)), runner, timeout=10)
    assert [c.argv for c in runner.commands] == [("m",)] and report.applied_now == (UNKNOWN,)


def test_a_failing_command_raises_with_its_output():
    runner = ScriptedRunner(Completed(0, "0003_a\n", ""), Completed(4, "", "boom: syntax error\n"))
    with pytest.raises(MigrationFailed) as caught:
        CommandMigrator().apply(SPEC, runner, timeout=10)
    assert "'./migrate up' exited with 4" in caught.value.message
    assert caught.value.output == "boom: syntax error" and caught.value.returncode == 4


def test_a_failing_status_command_raises():
    with pytest.raises(MigrationFailed) as caught:
        CommandMigrator().pending(SPEC, ScriptedRunner(Completed(1, "", "no db")), timeout=10)
    assert "status command" in caught.value.message


def test_apply_without_a_command_is_a_config_error():
    with pytest.raises(ConfigError) as caught:
        CommandMigrator().apply(PhaseSpec("pre"), ScriptedRunner(), timeout=10)
    assert "migrations.pre_deploy.command" in caught.value.hint
