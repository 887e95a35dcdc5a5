"""`stagecraft doctor`: is this machine (and, with an environment, each of its hosts)
ready for stagecraft, and what to do where it is not.

``controller_report`` checks the machine stagecraft runs on, then what each cloud
in use needs here (its ``controller_checks``); ``hosts_report`` adds one SSH round
trip per host of an environment. Both return plain :class:`Check` rows; the CLI
prints them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stagecraft.doctor.controller import controller_checks
from stagecraft.doctor.model import Check, Status

if TYPE_CHECKING:
    from stagecraft.hosts.fleet import Fleet

__all__ = ["Check", "Report", "Status", "controller_report", "hosts_report"]


@dataclass
class Report:
    """Every check, in the order they ran."""

    checks: list[Check] = field(default_factory=list)

    @property
    def failing(self) -> list[Check]:
        return [c for c in self.checks if c.failing]

    @property
    def ok(self) -> bool:
        return not self.failing

    def to_dict(self) -> dict[str, Any]:
        counts = {str(s): sum(c.status == s for c in self.checks) for s in Status}
        return {"ok": self.ok, "counts": counts, "checks": [c.to_dict() for c in self.checks]}


def controller_report(project_dir: Path, clouds: Iterable[Any]) -> Report:
    """The controller's checks, then those of each cloud provider in ``clouds``."""
    checks = controller_checks(project_dir)
    for cloud in clouds:
        checks += cloud.controller_checks()
    return Report(checks)


def hosts_report(report: Report, fleet: Fleet) -> Report:
    """``report`` plus the checks of every host of ``fleet``."""
    from stagecraft.doctor.hosts import check_hosts

    env = fleet.env
    hosts = fleet.remotes(fleet.host_names)
    report.checks += check_hosts(hosts, env.project.name, env.name, env.primary_host.name,
                                 mesh=fleet.spec.mesh)
    return report
