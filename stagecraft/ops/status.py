"""`stagecraft status`: what every host of an environment runs right now."""

from __future__ import annotations

from typing import Any

from stagecraft.hosts.fleet import Fleet
from stagecraft.hosts.probe import HostFacts, probe_hosts
from stagecraft.ui.table import table_lines


def environment_status(fleet: Fleet) -> dict[str, Any]:
    """Probe every host (with Traefik's routes); the report as data."""
    env = fleet.env
    facts = probe_hosts(fleet, routes=True)
    return status_report(env, facts)


def status_report(env, facts: dict[str, HostFacts]) -> dict[str, Any]:
    """The report: per host its facts, roles and the services placed on it; the lock
    as the primary host holds it."""
    primary = env.primary_host.name
    hosts = []
    for host in env.hosts:
        fact = facts[host.name]
        row = fact.to_dict()
        row["roles"] = list(host.roles)
        row["services"] = sorted(name for name in env.services
                                 if host.name in {h.name for h in env.hosts_for_service(name)})
        hosts.append(row)
    primary_facts = facts[primary]
    if not primary_facts.reachable:
        lock: dict[str, Any] = {"held": None, "host": primary, "error": primary_facts.error}
    elif primary_facts.lock is None:
        lock = {"held": False, "host": primary}
    else:
        lock = {"held": True, "host": primary, **primary_facts.lock.to_dict()}
    return {"project": env.project.name, "environment": env.name, "hosts": hosts, "lock": lock}


def status_lines(report: dict[str, Any]) -> list[str]:
    """The report as text for people."""
    lines = [f"{report['project']}/{report['environment']}: {len(report['hosts'])} hosts"]
    for host in report["hosts"]:
        head = f"{host['host']} ({', '.join(host['roles'])})"
        if not host["reachable"]:
            lines.append(f"{head}: UNREACHABLE - {host['error']}")
            continue
        traefik = "running" if host["traefik_running"] else "NOT RUNNING"
        # Traefik's own routes (API, ping, dashboard) are not the project's.
        shown = [r for r in host["routes"] if r.get("provider") != "internal"]
        lines.append(f"{head}: release {host['current_release'] or '(none)'}, "
                     f"traefik {traefik}, {len(shown)} routes")
        tailnet = host.get("tailnet")
        if tailnet is not None:
            connected = ("connected" if tailnet["state"] == "Running" and tailnet["online"]
                         else f"NOT CONNECTED ({tailnet['state'] or 'no answer'})")
            words = [tailnet["ipv4"] or "-", tailnet["dns_name"] or "", connected]
            lines.append("  tailnet: " + " ".join(word for word in words if word))
        if host["error"]:
            lines.append(f"  problem: {host['error']}")
        rows = _container_rows(host) + [["route", r["name"], r["status"], r["rule"]]
                                        for r in shown]
        lines += [f"  {line}" for line in table_lines(
            ["service", "name", "state", "rule"], rows, header=False)]
    lock = report["lock"]
    if lock["held"] is None:
        lines.append(f"lock: unknown (primary host {lock['host']} unreachable)")
    elif not lock["held"]:
        lines.append("lock: not held")
    else:
        stale = " [STALE: that process is gone]" if lock["stale"] else ""
        lines.append(f"lock: held by {lock['holder']} (pid {lock['pid']}) for "
                     f"{lock['age_seconds']:.0f} s, {lock['command']} of "
                     f"{lock['release'] or '?'}{stale}")
    return lines


def _container_rows(host: dict[str, Any]) -> list[list[str]]:
    """Per service placed on or running on the host: its containers and their state,
    or NO CONTAINERS."""
    by_service: dict[str, list[dict]] = {}
    for container in host["containers"]:
        by_service.setdefault(container["service"], []).append(container)
    rows = []
    for service in sorted(set(host["services"]) | set(by_service)):
        containers = by_service.get(service, [])
        if not containers:
            rows.append([service, "NO CONTAINERS", "", ""])
            continue
        if service not in host["services"]:
            service = f"{service} (not placed here)"
        for container in containers:
            state = container["state"] + (f" {container['health']}" if container["health"] else "")
            rows.append([service, container["name"], state, ""])
            service = ""  # named on its first container only
    return rows
