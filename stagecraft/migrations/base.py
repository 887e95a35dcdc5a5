"""The migration engine interface: what every engine (raw, drizzle, prisma, command)
provides, and the runner it drives.

An engine never talks to a host or a database itself. It says which command to run
in a one-off container of the release image (argv, and optionally a script on stdin),
and reads what that command printed. A :class:`ContainerRunner` runs the command:
on a fleet host during a deploy (the ``migrations`` role), or on this machine's
Docker in tests. So engines are pure and the production path is the same everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol, runtime_checkable

Phase = Literal["pre", "post"]

# Name of the environment variable that carries the database URL into the container.
DATABASE_URL_VAR = "DATABASE_URL"


@dataclass(frozen=True)
class PhaseSpec:
    """One phase's migrations, as configured (stagecraft.yml `migrations.<phase>_deploy`)."""

    phase: Phase
    path: str | None = None  # inside the image, relative to its working directory
    command: tuple[str, ...] | None = None  # engine `command`
    status_command: tuple[str, ...] | None = None  # engine `command`, optional


@dataclass(frozen=True)
class ContainerCommand:
    """A command to run in a one-off container of the release image."""

    argv: tuple[str, ...]
    stdin: str | None = None  # a script fed to the command (e.g. `python3 -`)
    env: Mapping[str, str] = field(default_factory=dict)  # plain, non-secret variables


@dataclass(frozen=True)
class Completed:
    """What a container command did."""

    returncode: int
    stdout: str
    stderr: str


@runtime_checkable
class ContainerRunner(Protocol):
    """Runs one command in a one-off container of the release image, with the
    service's environment and secrets (DATABASE_URL among them) already present."""

    def run(self, command: ContainerCommand, *, timeout: float) -> Completed: ...


@dataclass(frozen=True)
class Migration:
    """One migration an engine knows about."""

    name: str
    applied: bool
    checksum: str | None = None


@dataclass(frozen=True)
class Report:
    """The outcome of planning or applying one phase."""

    engine: str
    phase: Phase
    migrations: tuple[Migration, ...] = ()  # every known migration, applied or not
    applied_now: tuple[str, ...] = ()  # names applied by this run, in order
    output: str = ""  # the command's output, for the release record (secrets redacted)

    @property
    def pending(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.migrations if not m.applied)


@runtime_checkable
class Migrator(Protocol):
    """A migration engine. ``pending`` must not change the database; ``apply`` applies
    every pending migration of the phase once, in order, and raises MigrationFailed
    (stagecraft.errors) with the command's output when one fails."""

    engine: ClassVar[str]
    can_down: ClassVar[bool]

    def pending(self, spec: PhaseSpec, runner: ContainerRunner, *, timeout: float) -> Report: ...

    def apply(self, spec: PhaseSpec, runner: ContainerRunner, *, timeout: float) -> Report: ...
