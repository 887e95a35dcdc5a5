"""Which host and which containers an operator command acts on."""

from __future__ import annotations

from dataclasses import dataclass

from stagecraft.errors import StateError, UsageError
from stagecraft.hosts.fleet import Fleet
from stagecraft.hosts.probe import ContainerFacts, HostFacts, probe_hosts
from stagecraft.hosts.remote import RemoteHost


def host_names(env) -> list[str]:
    return [h.name for h in env.hosts]


def check_host(env, name: str) -> str:
    """``name`` if the environment has that host, else a UsageError listing its hosts."""
    if name not in host_names(env):
        raise UsageError(f"environment '{env.name}' has no host '{name}'",
                         hint=f"its hosts: {', '.join(host_names(env))}")
    return name


def check_service(env, service: str) -> str:
    if service not in env.services:
        raise UsageError(f"environment '{env.name}' has no service '{service}'",
                         hint=f"its services: {', '.join(sorted(env.services))}")
    return service


def placed_hosts(env, service: str) -> list[str]:
    """The hosts the configuration places ``service`` on, in the environment's order."""
    return [h.name for h in env.hosts_for_service(service)]


@dataclass(frozen=True)
class ServiceOnHost:
    """A host that has containers of a service, with those containers."""

    host: RemoteHost
    facts: HostFacts
    containers: tuple[ContainerFacts, ...]


def find_service(fleet: Fleet, service: str, host: str | None = None, *,
                 running_only: bool = False,
                 warn=None) -> list[ServiceOnHost]:
    """The hosts (``host``, or every host it is placed on) that have containers of
    ``service``, probed. Unreachable hosts are reported to ``warn`` and skipped; none
    at all is a StateError."""
    env = fleet.env
    check_service(env, service)
    names = [check_host(env, host)] if host else placed_hosts(env, service)
    if not names:
        raise StateError(f"service '{service}' is placed on no host of '{env.name}'",
                         hint="check the service's `on` roles and the hosts' roles")
    found = []
    for name, facts in probe_hosts(fleet, names).items():
        if not facts.reachable:
            if warn is not None:
                warn(f"host {name} is unreachable: {facts.error}")
            continue
        containers = tuple(c for c in facts.service_containers(service)
                           if not running_only or c.state == "running")
        if containers:
            found.append(ServiceOnHost(fleet.remote(name), facts, containers))
    if not found:
        where = f"host {host}" if host else f"hosts {', '.join(names)}"
        kind = "running containers" if running_only else "containers"
        raise StateError(f"no {kind} of service '{service}' on {where}",
                         hint=f"see what runs where: stagecraft status --env {env.name}")
    return found


def release_host(fleet: Fleet, service: str, host: str | None = None, *, warn=None) -> RemoteHost:
    """The host (``host``, or the first the service is placed on) with a current release,
    for a one-off container of ``service``."""
    env = fleet.env
    check_service(env, service)
    names = [check_host(env, host)] if host else placed_hosts(env, service)
    for name, facts in probe_hosts(fleet, names).items():
        if not facts.reachable:
            if warn is not None:
                warn(f"host {name} is unreachable: {facts.error}")
        elif facts.current_release:
            return fleet.remote(name)
    raise StateError(f"no release of '{env.name}' is current on {', '.join(names)}",
                     hint=f"deploy first: stagecraft deploy --env {env.name}")
