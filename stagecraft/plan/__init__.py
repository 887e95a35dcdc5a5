"""Planning a release: a pure function from desired and deployed state to the
steps of each phase on each host. See spec/core/plan.md."""

from stagecraft.plan.phases import PHASE_BY_NAME, PHASE_NAMES, PHASES, PhaseInfo, PhaseName
from stagecraft.plan.planner import (
    KEPT_NOTE,
    Difference,
    HostPlan,
    Plan,
    ServiceChange,
    Step,
    TraefikChange,
    build_plan,
)

__all__ = [
    "KEPT_NOTE", "PHASES", "PHASE_BY_NAME", "PHASE_NAMES", "Difference", "HostPlan",
    "PhaseInfo", "PhaseName", "Plan", "ServiceChange", "Step", "TraefikChange", "build_plan",
]
