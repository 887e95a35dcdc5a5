"""Release ids: when a release was made and from which source.

``YYYYMMDDTHHMMSSZ-<git short sha>[-dirty]``, or ``YYYYMMDDTHHMMSSZ-nogit`` outside
a git work tree. The time comes first and has a fixed width, so sorting the
strings sorts releases by time (spec/deploy/contracts.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from stagecraft.errors import CommandFailed, EnvironmentMissing, UsageError
from stagecraft.execs import run
from stagecraft.log import get_logger

log = get_logger("ledger")

SHORT_SHA_LENGTH = 7
_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
_PATTERN = re.compile(
    r"^(?P<time>\d{8}T\d{6}Z)-(?:(?P<sha>[0-9a-f]{7})(?P<dirty>-dirty)?|nogit)$"
)
EXAMPLE_ID = "20261121T101500Z-3f9c2ab"
# The ledger lives in the project dir; its writes must not make the tree dirty.
_IGNORED_FOR_DIRTY = ":(exclude).stagecraft"
_GIT_TIMEOUT = 30.0


class ReleaseIdError(UsageError, ValueError):
    """A string that is not a release id (a ValueError too, so validators can raise it)."""

    default_hint = f"a release id looks like {EXAMPLE_ID} (see `stagecraft releases`)"


@dataclass(frozen=True)
class GitSource:
    """The commit a release is built from. ``sha`` is None outside a git work tree
    (or before the first commit)."""

    sha: str | None
    dirty: bool = False

    @property
    def short(self) -> str | None:
        return self.sha[:SHORT_SHA_LENGTH] if self.sha else None


@dataclass(frozen=True)
class ReleaseId:
    """A parsed release id."""

    time: datetime  # UTC, whole seconds
    sha: str | None  # the 7-character short sha; None for -nogit
    dirty: bool

    def __str__(self) -> str:
        return format_release_id(self.time, GitSource(self.sha, self.dirty))


def git_source(project_dir: Path) -> GitSource:
    """The HEAD commit of the work tree holding ``project_dir`` and whether it has
    uncommitted changes (tracked or untracked, except ``.stagecraft/``)."""
    project_dir = Path(project_dir)
    try:
        inside = run(["git", "rev-parse", "--is-inside-work-tree"], cwd=project_dir,
                     check=False, timeout=_GIT_TIMEOUT)
    except EnvironmentMissing:
        log.debug("git is not installed: release ids end in -nogit")
        return GitSource(sha=None)
    if inside.returncode != 0:
        if "not a git repository" in inside.stderr:
            return GitSource(sha=None)
        # Anything else (dubious ownership, a broken repo) must not pass as -nogit.
        last = inside.stderr.strip().splitlines()[-1:] or [f"exit code {inside.returncode}"]
        raise CommandFailed(
            f"git cannot tell the commit of {project_dir}: {last[0]}",
            argv=list(inside.argv), returncode=inside.returncode, output_tail=inside.stderr,
            hint="fix the git repository (see `git status` there), or run outside it")
    if inside.stdout.strip() != "true":  # inside .git itself
        return GitSource(sha=None)
    head = run(["git", "rev-parse", "--verify", "--quiet", "HEAD^{commit}"], cwd=project_dir,
               check=False, timeout=_GIT_TIMEOUT)
    if head.returncode != 0:  # a repository with no commit yet
        return GitSource(sha=None)
    status = run(["git", "status", "--porcelain", "--", ":/", _IGNORED_FOR_DIRTY],
                 cwd=project_dir, timeout=_GIT_TIMEOUT)
    return GitSource(sha=head.stdout.strip(), dirty=bool(status.stdout.strip()))


def format_release_id(when: datetime, source: GitSource) -> str:
    """The id of a release made at ``when`` (naive means UTC) from ``source``."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    stamp = when.astimezone(UTC).strftime(_TIME_FORMAT)
    if source.sha is None:
        return f"{stamp}-nogit"
    return f"{stamp}-{source.short}{'-dirty' if source.dirty else ''}"


def new_release_id(project_dir: Path, now: datetime | None = None) -> str:
    """A new release id for the project at ``project_dir``, made now (or at ``now``)."""
    return format_release_id(now or datetime.now(UTC), git_source(project_dir))


def parse_release_id(text: str) -> ReleaseId:
    """Split a release id into its time and source; ReleaseIdError when it is not one."""
    match = _PATTERN.match(text) if isinstance(text, str) else None
    if match is None:
        raise ReleaseIdError(f"not a release id: {text!r}")
    try:
        when = datetime.strptime(match["time"], _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise ReleaseIdError(f"not a release id: {text!r} (no such date and time)") from None
    return ReleaseId(time=when, sha=match["sha"], dirty=bool(match["dirty"]))


def is_release_id(text: str) -> bool:
    try:
        parse_release_id(text)
    except ReleaseIdError:
        return False
    return True
