"""The release record: what a release was meant to do, and what happened.

One Release per deploy or rollback of one environment. It holds names, refs,
digests and hashes only, never a secret value: the caller has none to give
(images are refs, configuration is a hash, host state is ``HostState``), and the
store masks every registered secret value before it writes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from stagecraft import identity
from stagecraft.ledger.release_id import parse_release_id
from stagecraft.plan.phases import PHASE_NAMES, PhaseName
from stagecraft.render.state import HostState

SCHEMA_VERSION = 1

# The enums are strings: the file holds their values, and a value compares equal
# to its text (release.result == "succeeded").


class ReleaseAction(StrEnum):
    """What a release does."""

    DEPLOY = "deploy"
    ROLLBACK = "rollback"


class ReleaseResult(StrEnum):
    """How a release ended, or ``running`` while it runs."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    FAILED_AFTER_SWITCH = "failed-after-switch"  # every host switched, then a step failed
    INTERRUPTED = "interrupted"


class PhaseStatus(StrEnum):
    """Where a phase stands, for the release or on one host."""

    PENDING = "pending"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


class HostStatus(StrEnum):
    """How the release went on one host."""

    PENDING = "pending"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    SKIPPED = "skipped"


_TIME_TEXT = "%Y-%m-%dT%H:%M:%SZ"


def _whole_utc_seconds(value: datetime) -> datetime:
    # Stored as text with whole seconds; normalising here keeps a record equal
    # to itself after a trip through the file.
    return value.astimezone(UTC).replace(microsecond=0)


UtcTime = Annotated[
    AwareDatetime,
    AfterValidator(_whole_utc_seconds),
    PlainSerializer(lambda value: value.strftime(_TIME_TEXT), return_type=str),
]


def utc_now() -> datetime:
    return _whole_utc_seconds(datetime.now(UTC))


def _release_id(value: str) -> str:
    parse_release_id(value)
    return value


ReleaseIdText = Annotated[str, AfterValidator(_release_id)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GitRecord(_Model):
    """The commit the release was built from."""

    sha: str | None = Field(None, description="Full commit sha; null outside a git work tree.")
    dirty: bool = Field(False, description="True when the work tree had uncommitted changes.")


class ImageRecord(_Model):
    """One service's image as hosts pull it."""

    ref: str = Field(description="The reference hosts pull, e.g. registry/shop-web:<release id>.")
    digest: str | None = Field(None, description="The manifest digest (sha256:...) when known.")


class PhaseHostRecord(_Model):
    """What one phase did on one host."""

    status: PhaseStatus = Field(PhaseStatus.PENDING, description="Where the phase stands on this host.")
    seconds: float | None = Field(None, ge=0, description="How long it took on this host.")
    changed: bool = Field(False, description="True when it changed something on the host.")
    detail: str = Field("", description="One line: what it did, or why it failed.")


class PhaseRecord(_Model):
    """One phase of the release (see stagecraft.plan.phases)."""

    name: PhaseName = Field(description="The phase name, one of PHASES.")
    status: PhaseStatus = Field(PhaseStatus.PENDING, description="Where the phase stands.")
    started: UtcTime | None = Field(None, description="When it started (UTC).")
    finished: UtcTime | None = Field(None, description="When it ended (UTC).")
    hosts: dict[str, PhaseHostRecord] = Field(
        default_factory=dict, description="Per host results, for phases that run on hosts.")


class RolloutResult(BaseModel):
    """The rollout module's result for one host (spec/deploy/contracts.md)."""

    # The module's other keys (changed, pruned, and on failure msg, health, logs)
    # are kept as they came: the record holds the module's result, not a digest of it.
    model_config = ConfigDict(extra="allow", validate_assignment=True)

    services: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per service: what the rollout did (action, containers, seconds).")
    current: str | None = Field(
        None, description="The release the host's `current` points at afterwards.")

    @model_serializer(mode="wrap")
    def _only_given_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A key the result was never given is not written, so a record reads back,
        # and is written again, with the keys it had.
        data: dict[str, Any] = handler(self)
        return {key: value for key, value in data.items() if key in self.model_fields_set}


class ReleaseHost(_Model):
    """One host in the release: what it should run and whether it got there."""

    state: dict[str, Any] = Field(
        description="The host's desired state for this release (HostState.to_dict()).")
    switched: bool = Field(
        False, description="True once the host's `current` points at this release.")
    status: HostStatus = Field(HostStatus.PENDING,
                               description="How the release went on this host.")
    result: RolloutResult | None = Field(
        None, description="The rollout module's result for this host (spec/deploy/contracts.md).")

    @field_validator("state")
    @classmethod
    def _state_is_a_host_state(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            return HostState.from_dict(value).to_dict()
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"not a host state: {error}") from None

    def host_state(self) -> HostState:
        return HostState.from_dict(self.state)


class MigrationRecord(_Model):
    """One migration phase of the release: what ran, where, and what it said."""

    phase: Literal["pre", "post"] = Field(description="pre: before any switch; post: after.")
    engine: str = Field(description="The engine that ran (raw, drizzle, prisma, command).")
    host: str | None = Field(None, description="The host whose Docker ran the container.")
    status: PhaseStatus = Field(PhaseStatus.PENDING, description="How the phase went.")
    applied: list[str] = Field(default_factory=list,
                               description="Migrations applied by this run, in order.")
    pending_after: list[str] = Field(default_factory=list,
                                     description="Migrations still pending afterwards.")
    output: str = Field("", description="The tail of the command's output (secrets masked).")
    seconds: float | None = Field(None, ge=0, description="How long it took.")


class ErrorRecord(_Model):
    """Why the release failed."""

    message: str = Field(description="What went wrong, and where.")
    hint: str | None = Field(None, description="What to do about it.")
    phase: PhaseName | None = Field(None, description="The phase that failed.")
    host: str | None = Field(None, description="The host it failed on, when one.")


class Release(_Model):
    """One deploy or rollback of one environment."""

    id: ReleaseIdText = Field(description="The release id (YYYYMMDDTHHMMSSZ-<sha>[-dirty]).")
    environment: str = Field(min_length=1, description="The environment it targets.")
    action: ReleaseAction = Field(ReleaseAction.DEPLOY,
                                  description="deploy, or rollback to an earlier release.")
    rollback_of: ReleaseIdText | None = Field(
        None, description="For a rollback: the id of the release it brings back.")
    git: GitRecord = Field(default_factory=GitRecord, description="The source commit.")
    images: dict[str, ImageRecord] = Field(
        default_factory=dict, description="Per service: the image hosts pull.")
    config_hash: str = Field("", description="Hash of the resolved environment configuration.")
    performer: str = Field(default_factory=identity.performer, description="user@host.")
    pid: int | None = Field(
        None, description="Process id of the stagecraft run that wrote it, so a run that "
        "was killed can be told from one still running.")
    created: UtcTime = Field(default_factory=utc_now, description="When it started (UTC).")
    finished: UtcTime | None = Field(None, description="When it ended (UTC).")
    result: ReleaseResult = Field(ReleaseResult.RUNNING, description="How it ended, or running.")
    message: str = Field("", description="The message given with --message.")
    phases: list[PhaseRecord] = Field(default_factory=list, description="Its phases, in order.")
    hosts: dict[str, ReleaseHost] = Field(default_factory=dict, description="Per host record.")
    migrations: list[MigrationRecord] = Field(
        default_factory=list, description="Its migration phases, in the order they ran.")
    error: ErrorRecord | None = Field(None, description="Why it failed, when it did.")

    @model_validator(mode="after")
    def _consistent(self) -> Release:
        if self.action == ReleaseAction.ROLLBACK and self.rollback_of is None:
            raise ValueError("a rollback names the release it brings back (rollback_of)")
        if self.action == ReleaseAction.DEPLOY and self.rollback_of is not None:
            raise ValueError("rollback_of is only for action rollback")
        names = [phase.name for phase in self.phases]
        if len(names) != len(set(names)):
            raise ValueError(f"a phase appears twice: {names}")
        return self

    @property
    def sort_key(self) -> tuple[datetime, str]:
        return (self.created, self.id)

    def phase(self, name: PhaseName) -> PhaseRecord:
        """The record of phase ``name``, added (pending) when the release has none yet."""
        for phase in self.phases:
            if phase.name == name:
                return phase
        if name not in PHASE_NAMES:
            raise ValueError(f"unknown phase {name!r}; phases are {', '.join(PHASE_NAMES)}")
        record = PhaseRecord(name=name)
        self.phases.append(record)
        self.phases.sort(key=lambda p: PHASE_NAMES.index(p.name))
        return record


class LedgerData(_Model):
    """The whole file: ``{"schema_version": 1, "releases": [...]}``, oldest first."""

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="The file format version.")
    releases: list[Release] = Field(default_factory=list, description="Every release, oldest first.")
