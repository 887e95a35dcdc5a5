"""The environment's volumes and cloud firewalls as `infra status` shows them: pure
functions from what the API answered to :class:`VolumeStatus` and
:class:`FirewallStatus` rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stagecraft.providers.cloud.base import FirewallStatus, FleetSpec, VolumeStatus
from stagecraft.providers.cloud.digitalocean import names

#: How the API writes "every port" ("0", or nothing for ICMP).
_ALL_PORTS = ("0", "", "all")


def volume_statuses(spec: FleetSpec, volumes: Sequence[Mapping[str, Any]],
                    droplets: Sequence[Mapping[str, Any]]) -> tuple[VolumeStatus, ...]:
    """Each volume (by name) with the droplet it is attached to, that droplet's host
    and the stagecraft.yml volume it is (when its name is one the environment gives)."""
    project, env = spec.project, spec.environment
    by_id = {d.get("id"): d for d in droplets}
    listed = {names.volume_name(project, env, h.name, v): v for h in spec.hosts
              for v in h.volumes}
    rows = []
    for volume in sorted(volumes, key=lambda v: str(v.get("name"))):
        attached = [by_id.get(i) for i in volume.get("droplet_ids") or []]
        droplet = next((d for d in attached if d is not None), None)
        droplet_name = str(droplet["name"]) if droplet is not None else None
        if droplet_name is None and volume.get("droplet_ids"):
            droplet_name = f"droplet {volume['droplet_ids'][0]}"  # not the environment's
        name = str(volume.get("name"))
        rows.append(VolumeStatus(
            name=name, size_gb=volume.get("size_gigabytes"),
            host=names.host_of(project, env, droplet_name) if droplet is not None else None,
            attached_to=droplet_name, volume=listed.get(name),
            provider_id=str(volume["id"]) if volume.get("id") is not None else None,
            device=names.DEVICE_PREFIX + name))
    return tuple(rows)


def rule_text(rule: Mapping[str, Any], side: str = "sources") -> str:
    """One inbound rule as a line: ``tcp 22 from 0.0.0.0/0, ::/0``, ``tcp all from tag
    stagecraft-shop-prod``, ``icmp from droplet 42``."""
    protocol = str(rule.get("protocol") or "tcp")
    ports = str(rule.get("ports") or "")
    if protocol == "icmp":
        what = "icmp"
    else:
        what = f"{protocol} {'all' if ports in _ALL_PORTS else ports}"
    where = rule.get(side) or {}
    who = [*(str(a) for a in where.get("addresses") or []),
           *(f"tag {t}" for t in where.get("tags") or []),
           *(f"droplet {i}" for i in where.get("droplet_ids") or []),
           *(f"load balancer {u}" for u in where.get("load_balancer_uids") or []),
           *(f"kubernetes cluster {k}" for k in where.get("kubernetes_ids") or [])]
    return f"{what} from {', '.join(who) or 'nowhere'}"


def firewall_statuses(firewalls: Sequence[Mapping[str, Any]],
                      droplets: Sequence[Mapping[str, Any]]) -> tuple[FirewallStatus, ...]:
    """Each firewall with the number of the environment's droplets it applies to now
    (named by id, or carrying one of its tags) and its inbound rules."""
    rows = []
    for firewall in sorted(firewalls, key=lambda f: str(f.get("name"))):
        tags = tuple(firewall.get("tags") or ())
        tagged = {d.get("id") for d in droplets if set(d.get("tags") or ()) & set(tags)}
        count = len(tagged | set(firewall.get("droplet_ids") or ()))
        rows.append(FirewallStatus(
            name=str(firewall.get("name")), status=firewall.get("status"), droplets=count,
            tags=tags, inbound=tuple(rule_text(r) for r in firewall.get("inbound_rules") or ()),
            provider_id=str(firewall["id"]) if firewall.get("id") is not None else None))
    return tuple(rows)
