"""The release ledger: release ids, release records and their store
(``.stagecraft/releases.json``). See spec/core/ledger.md."""

from stagecraft.ledger.model import (
    SCHEMA_VERSION,
    ErrorRecord,
    GitRecord,
    HostRecord,
    ImageRecord,
    LedgerData,
    MigrationRecord,
    PhaseHostRecord,
    PhaseRecord,
    Release,
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
    "LEDGER_FILE", "SCHEMA_VERSION", "ErrorRecord", "GitRecord", "GitSource", "HostRecord",
    "ImageRecord", "Ledger", "LedgerData",
    "MigrationRecord", "PhaseHostRecord", "PhaseRecord", "Release",
    "ReleaseId", "ReleaseIdError", "ReleaseNotFound", "format_release_id",
    "git_source", "is_release_id", "ledger_path", "new_release_id", "parse_release_id", "utc_now",
]
