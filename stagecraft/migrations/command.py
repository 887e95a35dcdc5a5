"""The ``command`` engine: any migration tool, run as a command in the release image.

``command`` applies the phase's migrations; the optional ``status_command`` prints the
names of pending migrations, one a line (nothing when all are applied). Without a
status command stagecraft cannot know what is pending: the phase then shows one
migration named ``(command)``, always pending, and the command always runs.
See spec/migrations/command.md.
"""

from __future__ import annotations

from typing import ClassVar

from stagecraft.errors import ConfigError, MigrationFailed
from stagecraft.migrations.base import (
    Completed,
    ContainerCommand,
    ContainerRunner,
    Migration,
    PhaseSpec,
    Report,
)

#: The stand-in migration when there is no status command.
UNKNOWN = "(command)"


def status_names(stdout: str) -> tuple[str, ...]:
    """Pending migration names from a status command's stdout: one per non-empty line,
    surrounding spaces removed, first occurrence kept."""
    names: dict[str, None] = {}
    for line in stdout.splitlines():
        if line.strip():
            names.setdefault(line.strip(), None)
    return tuple(names)


class CommandMigrator:
    """Runs ``spec.command`` (and ``spec.status_command``) in the release image."""

    engine: ClassVar[str] = "command"
    can_down: ClassVar[bool] = False

    def pending(self, spec: PhaseSpec, runner: ContainerRunner, *, timeout: float) -> Report:
        if not spec.status_command:
            return Report(engine=self.engine, phase=spec.phase,
                          migrations=(Migration(UNKNOWN, applied=False),),
                          output="pending migrations unknown: no status_command is "
                          "configured, so the command runs on every deploy")
        done = runner.run(ContainerCommand(argv=tuple(spec.status_command)), timeout=timeout)
        _check(spec, done, spec.status_command, "status command")
        return Report(engine=self.engine, phase=spec.phase,
                      migrations=tuple(Migration(n, applied=False)
                                       for n in status_names(done.stdout)),
                      output=_output(done))

    def apply(self, spec: PhaseSpec, runner: ContainerRunner, *, timeout: float) -> Report:
        if not spec.command:
            raise ConfigError(
                f"the command migration engine needs a command for the {spec.phase}-deploy "
                "phase", hint=f"set migrations.{spec.phase}_deploy.command in stagecraft.yml")
        before = self.pending(spec, runner, timeout=timeout)
        if spec.status_command and not before.pending:
            # The tool says nothing is pending: running it would change nothing.
            return Report(engine=self.engine, phase=spec.phase, output=before.output)
        done = runner.run(ContainerCommand(argv=tuple(spec.command)), timeout=timeout)
        _check(spec, done, spec.command, "command")
        return Report(engine=self.engine, phase=spec.phase,
                      migrations=tuple(Migration(m.name, applied=True)
                                       for m in before.migrations),
                      applied_now=before.pending, output=_output(done))


def _check(spec: PhaseSpec, done: Completed, argv: tuple[str, ...], what: str) -> None:
    if done.returncode == 0:
        return
    output = _output(done)
    raise MigrationFailed(
        f"the {spec.phase}-deploy migration {what} {' '.join(argv)!r} exited with "
        f"{done.returncode}", argv=list(argv), returncode=done.returncode, output=output,
        output_tail=output[-4000:],
        hint="read its output above; fix the migration and deploy again")


def _output(done: Completed) -> str:
    parts = [done.stdout.strip(), done.stderr.strip()]
    return "\n".join(p for p in parts if p)
