"""The phases of a release, in order. One list, shared by the plan, the deploy
playbook (plays named ``phase <name>: ...``), the ledger and the progress UI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

PhaseName = Literal[
    "lock", "build", "upload", "pull", "migrate-pre", "rollout", "migrate-post", "finalize",
    "unlock",
]
PhaseScope = Literal["release", "host"]


@dataclass(frozen=True)
class PhaseInfo:
    """One phase: its name, what it does, and whether it runs once per release or per host."""

    name: PhaseName
    description: str
    scope: PhaseScope


PHASES: tuple[PhaseInfo, ...] = (
    PhaseInfo("lock", "take the environment's deploy lock on its primary host", "release"),
    PhaseInfo("build", "build and push the images of the release", "release"),
    PhaseInfo("upload", "write the release files (compose file, env files, Traefik "
              "configuration) to each host", "host"),
    PhaseInfo("pull", "pull the release's images on each host", "host"),
    PhaseInfo("migrate-pre", "run pre-deploy migrations once, from the new image, before "
              "any traffic switches", "release"),
    PhaseInfo("rollout", "start, roll, recreate or remove services on each host, in batches",
              "host"),
    PhaseInfo("migrate-post", "run post-deploy migrations once, after every host is healthy",
              "release"),
    PhaseInfo("finalize", "point `current` at the release, write the audit line, prune old "
              "releases", "host"),
    PhaseInfo("unlock", "release the deploy lock", "release"),
)

PHASE_NAMES: tuple[PhaseName, ...] = tuple(phase.name for phase in PHASES)
PHASE_BY_NAME: dict[str, PhaseInfo] = {phase.name: phase for phase in PHASES}

# The Literal and the table are written separately; they must name the same phases.
assert PHASE_NAMES == get_args(PhaseName), "PhaseName and PHASES disagree"
