"""The ledger file, ``.stagecraft/releases.json``: every release of the project.

Readers need no lock: the file is only ever replaced whole (temp file, fsync,
rename), so a reader sees one version or the next. Writers read, change and
write under an exclusive flock on ``releases.json.lock`` beside it, so two
stagecraft processes never lose each other's updates. Every call reads the file
afresh: what one call wrote, the next one sees.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from pydantic import ValidationError

from stagecraft.errors import StateError, UsageError
from stagecraft.fsutil import exclusive_lock, write_atomic
from stagecraft.identity import process_gone
from stagecraft.ledger.model import (
    SCHEMA_VERSION,
    ErrorRecord,
    LedgerData,
    PhaseStatus,
    Release,
    ReleaseResult,
    utc_now,
)
from stagecraft.ledger.release_id import ReleaseIdError, parse_release_id
from stagecraft.log import get_logger, redactor
from stagecraft.render.state import HostState

log = get_logger("ledger")

LEDGER_FILE = Path(".stagecraft") / "releases.json"
_MOVE_ASIDE_HINT = ("restore it from a backup, or move it aside to start a new history "
                    "(stagecraft starts an empty ledger when the file is missing)")
_MAX_ISSUES_SHOWN = 5


class ReleaseNotFound(UsageError):
    """The release id given matches no release in the ledger."""


def ledger_path(project_dir: Path) -> Path:
    return Path(project_dir) / LEDGER_FILE


class Ledger:
    """The release history stored at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    @classmethod
    def for_project(cls, project_dir: Path) -> Ledger:
        return cls(ledger_path(project_dir))

    # -- reading ---------------------------------------------------------------

    def load(self) -> LedgerData:
        """The whole ledger; an empty one when the file does not exist yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return LedgerData()
        except (OSError, UnicodeDecodeError) as error:
            raise StateError(f"cannot read the release ledger {self.path}: {error}",
                             hint=_MOVE_ASIDE_HINT) from None
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise StateError(
                f"the release ledger {self.path} is not valid JSON "
                f"(line {error.lineno}, column {error.colno}: {error.msg})",
                hint=_MOVE_ASIDE_HINT) from None
        self._check_version(raw)
        try:
            return LedgerData.model_validate(raw)
        except ValidationError as error:
            raise StateError(
                f"the release ledger {self.path} is not a valid ledger:\n{_issues(error)}",
                hint=_MOVE_ASIDE_HINT) from None

    def _check_version(self, raw: object) -> None:
        if not isinstance(raw, dict) or "schema_version" not in raw:
            raise StateError(
                f"the release ledger {self.path} has no schema_version: it is not a "
                "stagecraft ledger", hint=_MOVE_ASIDE_HINT)
        version = raw["schema_version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise StateError(
                f"the release ledger {self.path} has an unknown schema_version {version!r}",
                hint=_MOVE_ASIDE_HINT)
        if version > SCHEMA_VERSION:
            raise StateError(
                f"the release ledger {self.path} was written by a newer stagecraft "
                f"(schema version {version}; this stagecraft reads version {SCHEMA_VERSION})",
                hint="upgrade stagecraft to read and extend this history")

    def releases(self, environment: str | None = None) -> list[Release]:
        """The releases of ``environment`` (of every environment when None), newest first."""
        found = [r for r in self.load().releases
                 if environment is None or r.environment == environment]
        return sorted(found, key=lambda r: r.sort_key, reverse=True)

    def get(self, release_id: str, environment: str | None = None) -> Release:
        """The release ``release_id`` (in ``environment`` when given)."""
        return _find(self.load().releases, release_id, environment, self.path)

    def last_successful(self, environment: str) -> Release | None:
        """The newest release of ``environment`` that succeeded."""
        return next((r for r in self.releases(environment) if r.result == "succeeded"), None)

    def previous_successful(self, environment: str, before: str) -> Release | None:
        """The newest succeeded release of ``environment`` older than release ``before``:
        what a rollback from ``before`` brings back. Rollbacks count as releases."""
        releases = self.releases(environment)
        anchor = _find(releases, before, environment, self.path)
        return next((r for r in releases
                     if r.result == "succeeded" and r.sort_key < anchor.sort_key), None)

    def deployed_state(self, environment: str) -> dict[str, HostState]:
        """Per host, the state of the newest release whose switch succeeded on that
        host. A failed release counts for the hosts it did switch."""
        states: dict[str, HostState] = {}
        for release in self.releases(environment):
            for host, record in release.hosts.items():
                if record.switched and host not in states:
                    states[host] = record.host_state()
        return states

    def current_releases(self, environment: str) -> dict[str, str]:
        """Per host, the release directory its ``current`` link should point at: that
        of the newest release that switched it (a rollback's is the one it brought back)."""
        found: dict[str, str] = {}
        for release in self.releases(environment):
            for host, record in release.hosts.items():
                if record.switched and host not in found:
                    found[host] = release.rollback_of if release.action == "rollback" \
                        and release.rollback_of else release.id
        return found

    # -- writing ---------------------------------------------------------------

    def record(self, release: Release) -> Release:
        """Add ``release``, or replace the stored release with its id and environment."""
        release = _checked(release)
        with self._locked():
            data = self.load()
            kept = [r for r in data.releases
                    if (r.id, r.environment) != (release.id, release.environment)]
            self._write(LedgerData(releases=[*kept, release]))
        return release

    def record_new(self, release: Release) -> Release:
        """Add ``release`` as a new record, never over an existing one: when another run
        already took its id (two deploys in the same second), it gets the next free
        second. Returns the release as written, with the id it got."""
        release = _checked(release)
        with self._locked():
            data = self.load()
            taken = {r.id for r in data.releases}
            parsed = parse_release_id(release.id)
            new_id = release.id
            while new_id in taken:
                parsed = replace(parsed, time=parsed.time + timedelta(seconds=1))
                new_id = str(parsed)
            if new_id != release.id:
                release = _checked(release.model_copy(update={"id": new_id}))
            self._write(LedgerData(releases=[*data.releases, release]))
        return release

    def discard(self, release_id: str, environment: str) -> None:
        """Remove a record that is still ``running``: a run that found nothing to do
        takes back the record it started with. Other records are never removed."""
        with self._locked():
            data = self.load()
            kept = [r for r in data.releases
                    if not (r.id == release_id and r.environment == environment
                            and r.result == "running")]
            if len(kept) != len(data.releases):
                self._write(LedgerData(releases=kept))

    def update(self, release_id: str, change: Callable[[Release], Release | None], *,
               environment: str | None = None) -> Release:
        """Read, change and write one release under the lock. ``change`` gets a copy
        it may edit in place (or return a new one); the result is checked before it
        is written. Returns the release as written."""
        with self._locked():
            data = self.load()
            current = _find(data.releases, release_id, environment, self.path)
            draft = current.model_copy(deep=True)
            changed = change(draft)
            new = _checked(changed if changed is not None else draft)
            if (new.id, new.environment) != (current.id, current.environment):
                raise ValueError("an update cannot change a release's id or environment")
            releases = [new if r is current else r for r in data.releases]
            self._write(LedgerData(releases=releases))
        return new

    def mark_abandoned(self, environment: str | None = None) -> list[str]:
        """Releases still ``running`` whose process (on this machine) is gone were
        killed: record them as interrupted. Returns their ids."""
        def abandoned(release: Release) -> bool:
            return (release.result == "running" and release.pid is not None
                    and (environment is None or release.environment == environment)
                    and process_gone(release.performer, release.pid))

        if not any(abandoned(r) for r in self.load().releases):
            return []
        found: list[str] = []
        with self._locked():
            data = self.load()
            releases = []
            for release in data.releases:
                if abandoned(release):
                    release = _interrupted(release)
                    found.append(release.id)
                releases.append(release)
            if found:
                self._write(LedgerData(releases=releases))
        return found

    def _locked(self):
        return exclusive_lock(self.lock_path,
                              f"waiting for another stagecraft writing {self.path}", log.info)

    def _write(self, data: LedgerData) -> None:
        data.releases.sort(key=lambda r: r.sort_key)
        # Records hold refs and hashes only; masking is the last guard should a
        # caller ever pass a value that a secrets provider resolved.
        dumped = data.model_dump(mode="json")
        masked = redactor().data(dumped)
        if masked != dumped:
            log.warning("a secret value reached the release ledger; it was masked")
        write_atomic(self.path, json.dumps(masked, indent=2, ensure_ascii=False) + "\n")
        self._remove_stale_temp_files()

    def _remove_stale_temp_files(self) -> None:
        # Called under the lock, when no other writer can be mid-write: any temp
        # file left is from a writer that was killed before its rename.
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            try:
                stale.unlink()
            except OSError:
                pass


def _interrupted(release: Release) -> Release:
    release = release.model_copy(deep=True)
    release.result = ReleaseResult.INTERRUPTED
    release.finished = utc_now()
    for phase in release.phases:
        if phase.status == PhaseStatus.RUNNING:
            phase.status = PhaseStatus.FAILED
            phase.finished = release.finished
    running = next((p.name for p in release.phases if p.status == PhaseStatus.FAILED), None)
    if release.error is None:
        release.error = ErrorRecord(
            message=f"the stagecraft process {release.pid} ended before the release finished "
                    "(killed?); the hosts may be partly on it",
            hint="see `stagecraft status`, release a stale lock with `stagecraft lock release`, "
                 "then deploy again", phase=running)
    return _checked(release)


def _checked(release: Release) -> Release:
    """``release`` validated whole: edits in place (``r.hosts[h] = {...}``) skip
    pydantic's assignment checks, so the dump may hold plain dicts where records
    belong; no serializer warning for them, the validation that follows judges."""
    return Release.model_validate(release.model_dump(warnings=False))


def _find(releases: list[Release], release_id: str, environment: str | None,
          path: Path) -> Release:
    candidates = [r for r in releases if environment is None or r.environment == environment]
    matches = [r for r in candidates if r.id == release_id]
    where = f"environment {environment}" if environment else str(path)
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(sorted(r.environment for r in matches))
        raise ReleaseNotFound(f"release {release_id} exists in several environments: {names}",
                              hint="name the environment (--env)")
    nearest = _nearest_ids(release_id, sorted({r.id for r in candidates}))
    hint = (f"the nearest release ids are {', '.join(nearest)}" if nearest
            else "there are no releases yet")
    raise ReleaseNotFound(f"no release {release_id} in {where}", hint=hint)


def _nearest_ids(release_id: str, known: list[str], count: int = 3) -> list[str]:
    """The known ids closest in time to ``release_id``, or closest in spelling when it
    is not a release id at all."""
    try:
        wanted = parse_release_id(release_id).time
    except ReleaseIdError:
        return difflib.get_close_matches(release_id, known, n=count, cutoff=0.0)
    return sorted(known, key=lambda other: (abs(parse_release_id(other).time - wanted), other))[:count]


def _issues(error: ValidationError) -> str:
    lines = []
    for issue in error.errors()[:_MAX_ISSUES_SHOWN]:
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}"
                        for part in issue["loc"]).lstrip(".") or "(top)"
        lines.append(f"  {where}: {issue['msg']}")
    more = error.error_count() - _MAX_ISSUES_SHOWN
    if more > 0:
        lines.append(f"  ... and {more} more")
    return "\n".join(lines)
