"""Cross-field checks: rules that span several settings of a resolved environment.

Each check returns Issues with resolved paths; the loader maps them back to the
place in the file. Messages name the environment only when the rule depends on it,
so the same mistake is reported once, not once per environment.

``usable`` maps a provider family to the kinds that have a provider
(stagecraft.providers.kinds); the loader asks for it once per load.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterator, Mapping, Sequence

from stagecraft.config.schema import ResolvedEnvironment
from stagecraft.config.positions import Issue
from stagecraft.config.values import check_hostname
from stagecraft.providers.kinds import MESH_SERVER_CLOUDS

_PLACEHOLDER = re.compile(r"\{([^}]*)\}")
_MOUNT = re.compile(r"^(?P<source>[^:]+):(?P<target>/[^:]*)(?::(?P<mode>ro|rw))?$")


def check_environment(env: ResolvedEnvironment,
                      usable: Mapping[str, Sequence[str]]) -> list[Issue]:
    return [
        *_check_provider_kinds(env, usable),
        *_check_hosts(env),
        *_check_placement(env),
        *_check_sources(env),
        *_check_routes(env),
        *_check_volumes(env),
        *_check_migrations(env),
        *_check_cloud(env),
        *_check_network(env),
    ]


def _roles_text(env: ResolvedEnvironment) -> str:
    roles = sorted({r for h in env.hosts for r in h.roles})
    return ", ".join(roles) if roles else "none"


def _check_hosts(env: ResolvedEnvironment) -> Iterator[Issue]:
    counts = Counter(h.name for h in env.hosts)
    seen: set[str] = set()
    for index, host in enumerate(env.hosts):
        if counts[host.name] > 1 and host.name in seen:
            yield Issue(("hosts", index, "name"),
                        f"host name '{host.name}' is used twice in environment '{env.name}'; "
                        "host names must be unique")
        seen.add(host.name)
    if env.domain is not None:
        try:
            check_hostname(env.domain)
        except ValueError as exc:
            yield Issue(("domain",), str(exc))


def _check_placement(env: ResolvedEnvironment) -> Iterator[Issue]:
    present = {r for h in env.hosts for r in h.roles}
    # Roles become Ansible groups with '-' turned into '_': two spellings of one
    # group would silently merge.
    spelled: dict[str, str] = {}
    for index, host in enumerate(env.hosts):
        for rindex, role in enumerate(host.roles):
            key = role.replace("-", "_")
            if spelled.setdefault(key, role) != role:
                yield Issue(("hosts", index, "roles", rindex),
                            f"role '{role}' and role '{spelled[key]}' differ only in '-' "
                            "and '_'; pick one spelling")
    for name, service in env.services.items():
        for index, role in enumerate(service.on):
            if role not in present:
                yield Issue(("services", name, "on", index),
                            f"no host of environment '{env.name}' has role '{role}' "
                            f"(roles there: {_roles_text(env)})")
        if service.stateful and service.replicas > 1:
            yield Issue(("services", name, "replicas"),
                        "a stateful service runs one container per host; set replicas: 1")


def _check_sources(env: ResolvedEnvironment) -> Iterator[Issue]:
    for name, service in env.services.items():
        if service.from_ is None:
            continue
        target = env.services.get(service.from_)
        if target is None:
            known = ", ".join(sorted(env.services))
            yield Issue(("services", name, "from"),
                        f"'{service.from_}' is not a service (services: {known})")
        elif target.from_ is not None or service.from_ == name:
            yield Issue(("services", name, "from"),
                        f"'{service.from_}' has no image of its own; point from: at a "
                        "service with build or image")


def _check_routes(env: ResolvedEnvironment) -> Iterator[Issue]:
    claimed: dict[tuple[str, str], str] = {}
    routed = False
    for name, service in env.services.items():
        if not service.routes:
            continue
        routed = True
        if service.port is None:
            yield Issue(("services", name, "routes"),
                        "a routed service needs a port (the port it listens on)")
        if service.healthcheck is None:
            yield Issue(("services", name, "routes"),
                        "a routed service needs a healthcheck, so rollouts only send traffic "
                        "to ready containers")
        for index, route in enumerate(service.routes):
            path = ("services", name, "routes", index, "host")
            bad = [p for p in _PLACEHOLDER.findall(route.host) if p not in ("env", "domain")]
            if bad:
                yield Issue(path, f"unknown placeholder '{{{bad[0]}}}' in route host; "
                                  "use {env} or {domain}")
                continue
            if "{domain}" in route.host and env.domain is None:
                yield Issue(path, f"route host uses {{domain}} but environment '{env.name}' "
                                  "sets no domain")
                continue
            host = env.route_host(route)
            try:
                check_hostname(host)
            except ValueError as exc:
                yield Issue(path, str(exc))
                continue
            key = (host, route.path)
            if key in claimed and claimed[key] != name:
                yield Issue(path, f"route {host}{route.path} is already taken by service "
                                  f"'{claimed[key]}'")
            claimed.setdefault(key, name)
    if routed and not env.hosts_with_role("edge"):
        yield Issue(("hosts",), f"services have routes but no host of environment "
                                f"'{env.name}' has role 'edge' to serve them")


def _check_volumes(env: ResolvedEnvironment) -> Iterator[Issue]:
    known = ", ".join(sorted(env.volumes)) or "none defined"
    for name, service in env.services.items():
        for index, mount in enumerate(service.volumes):
            path = ("services", name, "volumes", index)
            match = _MOUNT.match(mount)
            if not match:
                yield Issue(path, f"'{mount}' is not a mount: write 'volume:/path' or "
                                  "'/host/path:/path', with an optional ':ro'")
                continue
            source = match.group("source")
            if not source.startswith(("/", ".")) and source not in env.volumes:
                yield Issue(path, f"volume '{source}' is not defined under volumes: "
                                  f"(defined: {known})")
    for index, host in enumerate(env.hosts):
        for vindex, volume in enumerate(host.volumes):
            if volume not in env.volumes:
                yield Issue(("hosts", index, "volumes", vindex),
                            f"volume '{volume}' is not defined under volumes: (defined: {known})")


def _check_migrations(env: ResolvedEnvironment) -> Iterator[Issue]:
    migrations = env.migrations
    if migrations is None:
        return
    source = env.services.get(migrations.from_)
    if source is None:
        yield Issue(("migrations", "from"),
                    f"'{migrations.from_}' is not a service (services: "
                    f"{', '.join(sorted(env.services))})")
    if migrations.host is not None and migrations.host not in {h.name for h in env.hosts}:
        yield Issue(("migrations", "host"),
                    f"'{migrations.host}' is not a host of environment '{env.name}'")
    if migrations.pre_deploy is None and migrations.post_deploy is None:
        yield Issue(("migrations",), "set pre_deploy, post_deploy, or both")
    for phase in ("pre_deploy", "post_deploy"):
        chosen = getattr(migrations, phase)
        if chosen is None:
            continue
        if migrations.engine == "command" and not chosen.command:
            yield Issue(("migrations", phase), "engine 'command' needs command: [...]")
        if migrations.engine != "command" and not chosen.path:
            yield Issue(("migrations", phase),
                        f"engine '{migrations.engine}' needs path: (the migrations directory)")


#: Host fields that say how to reach a server that already exists (cloud `ssh`).
CONNECTION_FIELDS = ("address", "port", "user", "ssh_key", "proxy_jump")


def _check_cloud(env: ResolvedEnvironment) -> Iterator[Issue]:
    kind = env.providers.cloud.kind
    names = {host.name: host for host in env.hosts}
    for index, host in enumerate(env.hosts):
        if kind == "ssh" and not host.address:
            yield Issue(("hosts", index), f"host '{host.name}' needs an address: cloud 'ssh' "
                                          "connects to hosts that already exist")
        if kind != "ssh":
            for name in CONNECTION_FIELDS:
                if getattr(host, name) is not None:
                    yield Issue(("hosts", index, name),
                                f"{name} is only for cloud 'ssh'; cloud '{kind}' makes its "
                                "hosts and knows how to reach them")
            continue
        for name in host.volumes:
            volume = env.volumes.get(name)
            if volume is not None and volume.device is None:
                yield Issue(("volumes", name, "device"),
                            f"volume '{name}' on host '{host.name}' needs a device: cloud "
                            "'ssh' attaches nothing, so name the disk the server already "
                            "has (a stable path such as /dev/disk/by-id/...)")
        jump = host.proxy_jump
        if jump is None:
            continue
        if jump == host.name:
            yield Issue(("hosts", index, "proxy_jump"),
                        f"host '{host.name}' cannot be its own bastion")
        elif jump in names and names[jump].proxy_jump is not None:
            yield Issue(("hosts", index, "proxy_jump"),
                        f"bastion '{jump}' is itself reached through a bastion; stagecraft "
                        "takes one hop: point proxy_jump at a host reached directly")


def _check_network(env: ResolvedEnvironment) -> Iterator[Issue]:
    """Headscale names its server and key, except on a cloud that runs both."""
    network, cloud = env.providers.network, env.providers.cloud.kind
    if network.kind != "headscale" or cloud in MESH_SERVER_CLOUDS:
        return
    for name, what in (("login_server", "the URL of your Headscale server"),
                       ("auth_key", "a reference to a pre-auth key (headscale preauthkeys "
                                    "create --reusable), e.g. ${secret:HEADSCALE_KEY}")):
        if getattr(network, name) is None:
            yield Issue(("providers", "network", name),
                        f"network 'headscale' needs {name} on cloud '{cloud}': give {what} "
                        "(clouds that run a Headscale server of their own: "
                        f"{', '.join(MESH_SERVER_CLOUDS)})")


def _check_provider_kinds(env: ResolvedEnvironment,
                          usable: Mapping[str, Sequence[str]]) -> Iterator[Issue]:
    """A kind the schema knows but no provider implements yet (cloud ssh, network
    tailscale, ...) would only fail when a command needs it: refuse it now."""
    for family, kinds in usable.items():
        kind = getattr(env.providers, family).kind
        if kind not in kinds:
            yield Issue(("providers", family, "kind"),
                        f"{family} kind '{kind}' has no provider in this version, so it "
                        f"cannot be used yet; {family} kinds that work now: {', '.join(kinds)}")
