"""The host firewall (INFRA_FIREWALL): the firewall role's variables for each host of an
environment, and the nftables ruleset the role writes, rendered here from the role's
own template so the planner can show and diff it without running Ansible.

Pure functions; the role (role stagecraft.platform.firewall) is the one that touches hosts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

import jinja2
import yaml

from stagecraft import paths
from stagecraft.config.schema import Host, ResolvedEnvironment

#: Where the role writes the ruleset on a host (role stagecraft.platform.firewall, vars/main.yml).
RULES_FILE = "/etc/nftables.d/stagecraft-firewall.nft"

#: Host role whose hosts open the public ports.
EDGE_ROLE = "edge"

#: Traefik's `private` entrypoint (role stagecraft.platform.traefik): edges reach other hosts' services here.
TRAEFIK_PRIVATE_PORT = 8000

#: The interface of the tailnet, for network providers that make one.
TAILNET_INTERFACE = "tailscale0"
_TAILNET_KINDS = frozenset({"tailscale", "headscale"})


def environment_vars(env: ResolvedEnvironment, private_cidrs: Iterable[str]) -> dict[str, Any]:
    """The role variables every host of ``env`` shares (everything but firewall_edge).

    ``private_cidrs``: the networks that form the private side (the cloud's private
    network, the VPC, or the hosts' private addresses).
    """
    interfaces = [TAILNET_INTERFACE] if env.providers.network.kind in _TAILNET_KINDS else []
    return {
        "firewall_public_ports": sorted(set(env.firewall.public)),
        "firewall_ssh": env.firewall.ssh,
        "firewall_private_cidrs": sorted(set(private_cidrs)),
        "firewall_private_interfaces": interfaces,
        "firewall_private_ports": private_ports(env),
    }


def private_ports(env: ResolvedEnvironment) -> list[int]:
    """Ports open to the private side: Traefik's private entrypoint, and the ports of
    private services (a database other hosts' services use; render/compose.py)."""
    from stagecraft.render.compose import private_services

    return sorted({TRAEFIK_PRIVATE_PORT,
                   *(env.services[name].port for name in private_services(env))})


def host_vars(env: ResolvedEnvironment, host: Host, private_cidrs: Iterable[str]) -> dict[str, Any]:
    """All role variables of one host: the environment's plus whether it is an edge."""
    return {**environment_vars(env, private_cidrs), "firewall_edge": EDGE_ROLE in host.roles}


def hosts_private_cidrs(addresses: Iterable[str | None]) -> list[str]:
    """The private side when the cloud names no network: each host's private address."""
    return sorted({f"{a}/32" for a in addresses if a})


def private_cidrs(cloud_vars: Mapping[str, Any], addresses: Iterable[str | None],
                  tailnet_only: bool = False) -> list[str]:
    """The private side of an environment: the networks the cloud names
    (``firewall_private_cidrs`` in its ``bootstrap_vars``: its private network, a
    VPC), else each host's private address (``addresses``); none with
    ``tailnet_only`` (every host is reached over the tailnet, whose interface is the
    private side: :func:`environment_vars`)."""
    if tailnet_only:
        return []
    named = cloud_vars.get("firewall_private_cidrs")
    return sorted(set(named)) if named else hosts_private_cidrs(addresses)


@cache
def _role_defaults() -> dict[str, Any]:
    role = paths.roles_dir() / "firewall"
    values: dict[str, Any] = {}
    for part in ("defaults", "vars"):
        values.update(yaml.safe_load((role / part / "main.yml").read_text()) or {})
    return values


@cache
def _template() -> jinja2.Template:
    source = (paths.roles_dir() / "firewall" / "templates" / "stagecraft-firewall.nft.j2").read_text()
    # Ansible's template module: trim_blocks on, the file's trailing newline kept.
    environment = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True,
                                     undefined=jinja2.StrictUndefined, autoescape=False)
    return environment.from_string(source)


def render_ruleset(variables: dict[str, Any]) -> str:
    """The text of RULES_FILE that the role writes for these variables (the role's
    defaults fill in the rest). The same template the role uses, so the two agree."""
    return _template().render({**_role_defaults(), **variables})


__all__ = ["EDGE_ROLE", "RULES_FILE", "TAILNET_INTERFACE", "TRAEFIK_PRIVATE_PORT",
           "environment_vars", "host_vars", "hosts_private_cidrs", "private_cidrs",
           "render_ruleset"]
