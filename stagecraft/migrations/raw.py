"""The ``raw`` engine: plain SQL files applied in name order, tracked in a table.

The engine ships its applier (stagecraft/migrations/raw_applier.py) on stdin to
``python3 -`` in a one-off container of the release image, and reads the JSON lines
it prints. The image needs python3 and psycopg 3 (or psycopg2); the stagecraft
runtime image has both. See spec/migrations/raw.md.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from stagecraft.errors import ConfigError, MigrationFailed
from stagecraft.migrations.base import (
    Completed,
    ContainerCommand,
    ContainerRunner,
    Migration,
    PhaseSpec,
    Report,
)

APPLIER = Path(__file__).with_name("raw_applier.py")

#: Exit codes of the applier (see raw_applier.py).
EXIT_FAILED, EXIT_CHANGED, EXIT_ENVIRONMENT = 1, 2, 3
#: Exit codes of `docker run` itself: cannot start the container / the command.
DOCKER_RUN_FAILED, NOT_EXECUTABLE, NOT_FOUND = 125, 126, 127

IMAGE_NEEDS = ("the raw engine runs its applier with python3 and psycopg 3 (or psycopg2) "
               "inside the migration image")
IMAGE_HINT = ("install them in the image (Debian: apt-get install python3 python3-psycopg; "
              "the stagecraft/runtime image has both), or use engine `command` with your "
              "own migration tool")


@cache
def applier_script() -> str:
    """The applier's source, as fed to ``python3 -``."""
    return APPLIER.read_text()


def parse_events(stdout: str) -> list[dict[str, Any]]:
    """The applier's JSON lines (objects with an ``event``), in order; other lines are
    skipped (an image's sitecustomize may print)."""
    events = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("event"), str):
            events.append(value)
    return events


def applied_names(stdout: str) -> list[str]:
    """Names of the files an apply run applied (its ``applied`` lines), in order.
    The migrations role uses this same rule to report `changed`."""
    return [e["name"] for e in parse_events(stdout) if e["event"] == "applied"]


class RawMigrator:
    """SQL files in ``spec.path`` (inside the image, relative to its working directory),
    applied once each, in name order, each in its own transaction."""

    engine: ClassVar[str] = "raw"
    can_down: ClassVar[bool] = False

    def __init__(self, python: str = "python3") -> None:
        self.python = python  # the interpreter in the image

    def command(self, spec: PhaseSpec, mode: str) -> ContainerCommand:
        """The container command of ``mode`` (``status`` or ``apply``) for ``spec``."""
        if not spec.path:
            raise ConfigError(
                f"the raw migration engine needs a directory of SQL files for the "
                f"{spec.phase}-deploy phase",
                hint=f"set migrations.{spec.phase}_deploy.path in stagecraft.yml")
        return ContainerCommand(argv=(self.python, "-", mode, spec.path, spec.phase),
                                stdin=applier_script())

    def pending(self, spec: PhaseSpec, runner: ContainerRunner, *, timeout: float) -> Report:
        done = runner.run(self.command(spec, "status"), timeout=timeout)
        return self.report(spec, done)

    def apply(self, spec: PhaseSpec, runner: ContainerRunner, *, timeout: float) -> Report:
        done = runner.run(self.command(spec, "apply"), timeout=timeout)
        return self.report(spec, done)

    def report(self, spec: PhaseSpec, done: Completed) -> Report:
        """The Report of a finished status or apply run; MigrationFailed when it failed."""
        events = parse_events(done.stdout)
        output = _output(done)
        if done.returncode != 0:
            raise self.failure(spec, done, events, output)
        applied_now = tuple(e["name"] for e in events if e["event"] == "applied")
        migrations = tuple(
            Migration(name=e["name"], applied=bool(e.get("applied")) or e["name"] in applied_now,
                      checksum=e.get("checksum"))
            for e in events if e["event"] == "migration")
        if not any(e["event"] == "done" for e in events):
            raise MigrationFailed(
                f"the raw migration applier ended without saying it was done "
                f"({spec.phase}-deploy)", output=output, output_tail=output[-4000:],
                returncode=done.returncode,
                hint="read the output above; the image may run another program as python3")
        return Report(engine=self.engine, phase=spec.phase, migrations=migrations,
                      applied_now=applied_now, output=output)

    def failure(self, spec: PhaseSpec, done: Completed, events: list[dict[str, Any]],
                output: str) -> MigrationFailed:
        """The MigrationFailed that explains a non-zero exit."""
        where = f"{spec.phase}-deploy migrations ({spec.path})"

        def error(message: str, hint: str) -> MigrationFailed:
            return MigrationFailed(message, output=output, output_tail=output[-4000:],
                                   returncode=done.returncode, hint=hint)

        changed = [e for e in events if e["event"] == "changed"]
        if changed:
            files = "; ".join(f"{e['name']} (applied with sha256 {e['applied_checksum']}, "
                              f"now {e['checksum']})" for e in changed)
            return error(f"{where}: applied migration files changed: {files}",
                         "never edit an applied migration: restore the file and add a new "
                         "migration with the change instead")
        failed = next((e for e in events if e["event"] == "failed"), None)
        if failed is not None:
            applied = [e["name"] for e in events if e["event"] == "applied"]
            before = f"; applied before it: {', '.join(applied)}" if applied else ""
            state = f" [SQLSTATE {failed['sqlstate']}]" if failed.get("sqlstate") else ""
            return error(f"{where}: {failed['name']} failed and was rolled back{state}: "
                         f"{failed.get('error', '')}{before}",
                         f"fix {failed['name']} (it was not applied; later files did not run) "
                         "and deploy again")
        problem = next((e for e in events if e["event"] == "error"), None)
        if problem is not None:
            kind = problem.get("kind")
            if kind == "driver-missing":
                return error(f"{where}: the migration image has python3 but no PostgreSQL "
                             f"driver: {IMAGE_NEEDS}", IMAGE_HINT)
            if kind == "path-missing":
                return error(f"{where}: {problem.get('message')}",
                             f"check migrations.{spec.phase}_deploy.path: it is relative to "
                             "the image's working directory (WORKDIR)")
            return error(f"{where}: {problem.get('message')}",
                         "check the database URL secret and that the database is reachable "
                         "from the migration host")
        if done.returncode in (NOT_EXECUTABLE, NOT_FOUND) and not events:
            return error(f"{where}: the migration image cannot run {self.python}: {IMAGE_NEEDS}",
                         IMAGE_HINT)
        if done.returncode == DOCKER_RUN_FAILED and not events:
            return error(f"{where}: docker could not start the migration container: "
                         f"{done.stderr.strip()[-500:]}",
                         "check that the image exists on the migration host and the network "
                         "is there")
        return error(f"{where}: the applier exited with {done.returncode}",
                     "read the output for the cause")


def _output(done: Completed) -> str:
    """The command's output for the release record: stdout then stderr."""
    parts = [done.stdout.strip(), done.stderr.strip()]
    return "\n".join(p for p in parts if p)
