"""Does a host run what the ledger says was deployed? (pure)

The ledger is the truth of what was intended, the host of what runs
(docs/architecture.md, "Principles"). Before a deploy the CLI probes every host once
(stagecraft/hosts/probe.py) and compares: a host that runs what the ledger says needs
nothing when the plan has no changes, so a no-op redeploy ends without a
playbook; a host that differs is planned as if nothing were known about it, so
the deploy repairs it.
"""

from __future__ import annotations

from collections.abc import Mapping

from stagecraft.hosts.probe import HostFacts
from stagecraft.render.state import HostState


def host_drift(deployed: HostState | None, facts: HostFacts | None,
               release_id: str | None = None) -> list[str]:
    """Why ``facts`` differ from ``deployed`` (empty: the host runs it).

    ``release_id``: the release whose files the ledger says are current there.
    """
    if facts is None:
        return ["not probed"]
    if not facts.reachable:
        return [f"unreachable: {facts.error}"]
    if facts.error:
        return [facts.error]
    if deployed is None:
        return ["no release recorded for it"]
    reasons: list[str] = []
    if facts.current_release is None:
        reasons.append("no current release on the host")
    elif release_id is not None and facts.current_release != release_id:
        reasons.append(f"current release is {facts.current_release}, recorded {release_id}")
    for name, service in deployed.services.items():
        containers = facts.service_containers(name)
        running = [c for c in containers if c.state == "running"]
        stale = [c.name for c in containers if c.config_hash != service.config_hash]
        if len(running) != service.replicas:
            reasons.append(f"service {name}: {len(running)} of {service.replicas} running")
        elif stale:
            reasons.append(f"service {name}: {', '.join(stale)} run another definition")
        elif any(c.health == "unhealthy" for c in running):
            reasons.append(f"service {name}: unhealthy")
    unknown = sorted({c.service for c in facts.containers} - set(deployed.services))
    if unknown:
        reasons.append(f"services not in the release run: {', '.join(unknown)}")
    if deployed.traefik_hash and not facts.traefik_running:
        reasons.append("Traefik is not running")
    return reasons


def fleet_drift(deployed: Mapping[str, HostState | None], facts: Mapping[str, HostFacts],
                current: Mapping[str, str | None] | None = None) -> dict[str, list[str]]:
    """``host_drift`` of every host in ``deployed``, only those that differ."""
    found: dict[str, list[str]] = {}
    for host, state in deployed.items():
        reasons = host_drift(state, facts.get(host), (current or {}).get(host))
        if reasons:
            found[host] = reasons
    return found
