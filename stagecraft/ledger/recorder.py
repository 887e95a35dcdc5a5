"""The ledger record of one deploy or rollback, kept current while it runs.

The deploy engine tells a ReleaseRecorder what happens (a phase starts, the hosts
finish their phases, a migration ran, the release ends) and the recorder writes it
to the ledger at once, so a run killed at any point leaves a record the next run
can read. It knows nothing of how a deploy works: what it records comes in as
plain values and ledger records. In a dry run it records nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Protocol

from stagecraft.errors import Interrupted, StagecraftError, StateError
from stagecraft.ledger.model import (
    ErrorRecord,
    GitRecord,
    HostStatus,
    ImageRecord,
    MigrationRecord,
    PhaseHostRecord,
    PhaseStatus,
    Release,
    ReleaseAction,
    ReleaseHost,
    ReleaseResult,
    RolloutResult,
    utc_now,
)
from stagecraft.ledger.release_id import git_source, new_release_id
from stagecraft.ledger.store import Ledger
from stagecraft.plan.phases import PHASE_NAMES, PhaseName

_MESSAGE_LIMIT = 2000  # characters of an error message kept in the record
_DETAIL_LIMIT = 500  # characters of a host's phase detail kept in the record
_FAILED_HOST = ("failed", "unreachable")


def _quiet(_: str) -> None:
    pass


class HostPhaseResult(Protocol):
    """What one phase did on one host, as the deploy engine folds it from the Ansible
    run (stagecraft.deploy.outcome.HostOutcome has this shape)."""

    status: str  # ok, failed, unreachable, or skipped (every task skipped)
    seconds: float
    changed: bool
    detail: str
    services: dict[str, Any]  # the rollout module's per-service result; empty elsewhere
    current: str | None  # the release `current` points at after the rollout


class ReleaseRecorder:
    """One deploy or rollback in progress: every call writes its change to the ledger."""

    def __init__(self, ledger: Ledger, environment: str, release: Release | None) -> None:
        self.ledger = ledger
        self.environment = environment
        self.release = release  # None in a dry run: nothing is recorded

    @classmethod
    def start(cls, ledger: Ledger, environment: str, project_dir: Path, *,
              action: ReleaseAction, release_id: str, config_hash: str, message: str = "",
              rollback_of: str | None = None, dry_run: bool = False,
              say: Callable[[str], None] = _quiet) -> ReleaseRecorder:
        """Record a new ``running`` release before anything happens (a kill at any later
        point leaves a record that the next run marks interrupted). A deploy's record
        takes ``release_id`` (the next free second if another run took it); a rollback's
        record gets an id of its own. Nothing is recorded in a dry run."""
        if dry_run:
            return cls(ledger, environment, None)
        for killed in ledger.mark_abandoned(environment):
            say(f"release {killed} was left running by a process that is gone: "
                "recorded as interrupted")
        source = git_source(project_dir)
        record_id = release_id if action == ReleaseAction.DEPLOY else new_release_id(project_dir)
        release = Release(
            id=record_id, environment=environment, action=action, rollback_of=rollback_of,
            git=GitRecord(sha=source.sha, dirty=source.dirty), config_hash=config_hash,
            message=message, pid=os.getpid())
        return cls(ledger, environment, ledger.record_new(release))

    @property
    def release_id(self) -> str | None:
        """The id of the record, None in a dry run."""
        return self.release.id if self.release is not None else None

    def switched_hosts(self) -> set[str]:
        """The hosts recorded as switched to this release."""
        if self.release is None:
            return set()
        return {host for host, record in self.release.hosts.items() if record.switched}

    def settle(self, images: Mapping[str, ImageRecord], hosts: Mapping[str, ReleaseHost]) -> None:
        """Record what the release is meant to run: its images, and each host's state."""
        def change(release: Release) -> None:
            release.images = dict(images)
            release.hosts = dict(hosts)
        self._update(change)

    def phase_started(self, phase: PhaseName) -> None:
        def change(release: Release) -> None:
            record = release.phase(phase)
            record.status = PhaseStatus.RUNNING
            record.started = utc_now()
        self._update(change)

    def phase_finished(self, phase: PhaseName, status: PhaseStatus = PhaseStatus.OK) -> None:
        """Record how ``phase`` ended (ok, failed or skipped)."""
        def change(release: Release) -> None:
            record = release.phase(phase)
            now = utc_now()
            record.status = status
            record.started = record.started or now
            record.finished = now
        self._update(change)

    def record_hosts(self, phases: Mapping[str, Mapping[str, HostPhaseResult]],
                     switched: Collection[str]) -> None:
        """Record what the host phases did on each host (``{phase: {host: result}}``)
        and which hosts switched to this release."""
        def change(release: Release) -> None:
            for phase_name, hosts in phases.items():
                name = _phase_name(phase_name)
                if name is None:  # a play that is no phase of the ledger's
                    continue
                phase = release.phase(name)
                failed = any(result.status in _FAILED_HOST for result in hosts.values())
                phase.status = PhaseStatus.FAILED if failed else PhaseStatus.OK
                phase.finished = phase.finished or utc_now()
                phase.started = phase.started or phase.finished
                for host, result in hosts.items():
                    phase.hosts[host] = PhaseHostRecord(
                        status=_host_phase_status(result.status),
                        seconds=round(result.seconds, 2), changed=result.changed,
                        detail=result.detail[:_DETAIL_LIMIT])
            rollout = phases.get("rollout", {})
            for host, record in release.hosts.items():
                rolled = rollout.get(host)
                record.switched = host in switched
                if host in switched:
                    record.status = HostStatus.OK
                elif rolled is not None and rolled.status in _FAILED_HOST:
                    record.status = HostStatus.FAILED
                if rolled is not None and rolled.services:
                    record.result = RolloutResult(services=rolled.services,
                                                  current=rolled.current)
        self._update(change)

    def record_migration(self, record: MigrationRecord) -> None:
        def change(release: Release) -> None:
            release.migrations.append(record)
        self._update(change)

    def fail(self, exc: BaseException, phase: str | None = None) -> None:
        """Record how an exception ended the release: interrupted (Ctrl-C) or failed
        (failed-after-switch when the error says every host had switched)."""
        if isinstance(exc, (Interrupted, KeyboardInterrupt)):
            error = exc if isinstance(exc, Interrupted) else Interrupted("stopped by Ctrl-C")
            self.finish(ReleaseResult.INTERRUPTED, error, phase=phase)
        elif isinstance(exc, StagecraftError):
            self.finish(ReleaseResult(exc.release_result), exc, phase=phase)
        else:
            self.finish(ReleaseResult.FAILED, StateError(f"{type(exc).__name__}: {exc}"),
                        phase=phase)

    def finish(self, result: ReleaseResult, error: StagecraftError | None = None,
               phase: str | None = None, host: str | None = None) -> None:
        """Record how the release ended; a phase still running ends with it."""
        def change(release: Release) -> None:
            release.result = result
            release.finished = utc_now()
            for record in release.phases:
                if record.status == PhaseStatus.RUNNING:
                    record.status = PhaseStatus.OK if result == ReleaseResult.SUCCEEDED \
                        else PhaseStatus.FAILED
                    record.finished = release.finished
            if error is not None:
                release.error = ErrorRecord(message=error.message[:_MESSAGE_LIMIT],
                                            hint=error.hint, phase=_phase_name(phase), host=host)
        self._update(change)

    def discard(self) -> None:
        """Take back the record of a release that found nothing to do: the history only
        holds releases that did something."""
        if self.release is None:
            return
        self.ledger.discard(self.release.id, self.environment)
        self.release = None

    def _update(self, change: Callable[[Release], None]) -> None:
        if self.release is None:
            return
        self.release = self.ledger.update(self.release.id, change, environment=self.environment)


def _phase_name(name: str | None) -> PhaseName | None:
    """``name`` as a phase name; None when it names no phase. Phase names from the
    Ansible run are plain text, and a name the ledger does not know is left out rather
    than failing the record of a failure."""
    for known in PHASE_NAMES:
        if known == name:
            return known
    return None


def _host_phase_status(status: str) -> PhaseStatus:
    """A host's phase status in the ledger: an unreachable host failed the phase, and a
    host whose every task was skipped skipped it."""
    if status in _FAILED_HOST:
        return PhaseStatus.FAILED
    return PhaseStatus.OK if status == "ok" else PhaseStatus.SKIPPED
