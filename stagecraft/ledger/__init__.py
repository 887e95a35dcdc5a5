"""The release ledger: release ids, release records and their store
(``.stagecraft/releases.json``). See spec/core/ledger.md."""

from stagecraft.ledger.model import (
    SCHEMA_VERSION,
    ErrorRecord,
    GitRecord,
    HostStatus,
    ImageRecord,
    LedgerData,
    MigrationRecord,
    PhaseHostRecord,
    PhaseRecord,
    PhaseStatus,
    Release,
    ReleaseAction,
    ReleaseHost,
    ReleaseResult,
    RolloutResult,
    utc_now,
)
from stagecraft.ledger.release_id import (
    GitSource,
    ReleaseId,
    ReleaseIdError,
    format_release_id,
    git_source,
    is_release_id,
    new_release_id,
    parse_release_id,
)
from stagecraft.ledger.store import LEDGER_FILE, Ledger, ReleaseNotFound, ledger_path

__all__ = [
    "LEDGER_FILE", "SCHEMA_VERSION", "ErrorRecord", "GitRecord", "GitSource", "HostStatus",
    "ImageRecord", "Ledger", "LedgerData",
    "MigrationRecord", "PhaseHostRecord", "PhaseRecord", "PhaseStatus", "Release",
    "ReleaseAction", "ReleaseHost", "ReleaseId", "ReleaseIdError", "ReleaseNotFound",
    "ReleaseResult", "RolloutResult", "format_release_id",
    "git_source", "is_release_id", "ledger_path", "new_release_id", "parse_release_id", "utc_now",
]
