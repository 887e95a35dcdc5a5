"""What `stagecraft bootstrap` would change in each host's firewall and volumes, from
one probe per host: shown by `plan` next to the deploy's changes. Pure functions."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stagecraft.config.schema import ResolvedEnvironment

VOLUME_ROOT = "/mnt"  # role stagecraft.platform.volumes: /mnt/<volume>


@dataclass(frozen=True)
class InfraChange:
    """One thing bootstrap would change on a host."""

    host: str
    kind: str  # firewall | volume
    name: str  # "rules" or the volume's name
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"host": self.host, "kind": self.kind, "name": self.name, "detail": self.detail}


def infra_changes(env: ResolvedEnvironment, facts: Mapping[str, Any],
                  private_cidrs: Iterable[str]) -> list[InfraChange]:
    """Per reachable host: the firewall ruleset when the host's differs from what the
    firewall role would write, and each volume not mounted where the volumes role
    mounts it. Unreachable hosts are left out (the deploy plan reports them)."""
    from stagecraft.infra import firewall
    from stagecraft.infra.bootstrap import volumes_by_host

    cidrs = list(private_cidrs)
    volumes = volumes_by_host(env)
    changes: list[InfraChange] = []
    for host in env.hosts:
        found = facts.get(host.name)
        if found is None or not getattr(found, "reachable", False):
            continue
        rules = firewall.render_ruleset(firewall.host_vars(env, host, cidrs))
        wanted = hashlib.sha256(rules.encode()).hexdigest()
        if found.firewall_hash is None:
            changes.append(InfraChange(host.name, "firewall", "rules",
                                       f"not applied yet: default-deny ruleset of "
                                       f"{len(rules.splitlines())} lines"))
        elif found.firewall_hash != wanted:
            changes.append(InfraChange(host.name, "firewall", "rules",
                                       "ruleset differs from the one the config gives"))
        for volume in volumes.get(host.name, []):
            mount = f"{VOLUME_ROOT}/{volume['name']}"
            fstype = found.mounts.get(mount)
            if fstype is None:
                changes.append(InfraChange(
                    host.name, "volume", volume["name"],
                    f"not mounted at {mount}: a blank device gets {volume['filesystem']}, "
                    "one with a filesystem is only mounted"))
            elif fstype != volume["filesystem"]:
                changes.append(InfraChange(
                    host.name, "volume", volume["name"],
                    f"mounted as {fstype}, config says {volume['filesystem']}: "
                    "bootstrap refuses to reformat it"))
    return changes
