"""The environment's hosts on its tailnet (PROVIDER_NETWORK_TAILSCALE): what each node
reported when it joined, kept in ``.stagecraft/<env>/mesh.json``.

The tailscale role sets the fact ``tailscale_node`` on every host it joins; the
bootstrap reads those facts from the run's events (:func:`nodes_from_events`) and
records them here. From then on the fleet uses the tailnet addresses: services reach
each other at them, and with ``ssh_over_mesh`` the controller connects to them.
A host that never joined has no node; a failed join leaves the last good record.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from stagecraft.errors import StateError
from stagecraft.fsutil import write_atomic
from stagecraft.providers.cloud.base import HostRecord, MeshRoute, host_key_name

MESH_FILE = "mesh.json"
#: Tailscale's address ranges: CGNAT IPv4 and its ULA IPv6 prefix.
TAILNET_IPV4 = ipaddress.ip_network("100.64.0.0/10")
TAILNET_IPV6 = ipaddress.ip_network("fd7a:115c:a1e0::/48")
#: The fact the tailscale role sets on each host it joined (role stagecraft.platform.tailscale, tasks/join.yml).
FACT = "tailscale_node"
#: Network kinds whose hosts join a tailnet.
TAILNET_KINDS = frozenset({"tailscale", "headscale"})


@dataclass(frozen=True)
class MeshNode:
    """One host as the tailnet knows it."""

    name: str
    ipv4: str
    ipv6: str | None = None
    dns_name: str | None = None
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tags"] = list(self.tags)
        return data


def node_of(host: str, fact: Mapping[str, Any]) -> MeshNode | None:
    """The node a ``tailscale_node`` fact describes; None when it names no tailnet IPv4."""
    ipv4 = str(fact.get("ipv4") or "")
    try:
        if ipaddress.ip_address(ipv4) not in TAILNET_IPV4:
            return None
    except ValueError:
        return None
    ipv6 = str(fact.get("ipv6") or "") or None
    dns_name = str(fact.get("dns_name") or "") or None
    tags = tuple(str(t) for t in fact.get("tags") or ())
    return MeshNode(host, ipv4, ipv6, dns_name, tags)


def nodes_from_events(events: Iterable[Mapping[str, Any]]) -> dict[str, MeshNode]:
    """Host -> node, from the ``tailscale_node`` facts in a run's job events (the last
    one of each host wins)."""
    nodes: dict[str, MeshNode] = {}
    for event in events:
        if event.get("event") != "runner_on_ok":
            continue
        data = event.get("event_data") or {}
        facts = (data.get("res") or {}).get("ansible_facts") or {}
        fact = facts.get(FACT)
        host = data.get("host")
        if isinstance(fact, Mapping) and isinstance(host, str):
            node = node_of(host, fact)
            if node is not None:
                nodes[host] = node
    return nodes


def over_mesh(record: HostRecord, node: MeshNode, route: MeshRoute) -> HostRecord:
    """``record`` as the controller reaches it over the tailnet: at the node's address,
    through the route's command, its pinned host key looked up under the name it was
    pinned under (the address it had before)."""
    alias = host_key_name(record.ssh_host, record.ssh_port or 22) if record.ssh_host else None
    return replace(record, ssh_host=node.ipv4, ssh_port=route.ssh_port or record.ssh_port,
                   ssh_proxy=None, proxy_command=route.proxy_command, host_key_alias=alias)


def mesh_file(state_dir: Path) -> Path:
    return Path(state_dir) / MESH_FILE


def read_nodes(state_dir: Path) -> dict[str, MeshNode]:
    """The recorded nodes (none when nothing joined yet). Raises StateError, naming
    the file and what to do, when it cannot be read."""
    path = mesh_file(state_dir)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StateError(f"cannot read {path}: {exc}",
                         hint="remove it and run `stagecraft bootstrap` again: the hosts "
                              "report their tailnet addresses anew") from None
    nodes: dict[str, MeshNode] = {}
    for name, fact in (document.get("nodes") or {}).items() if isinstance(document, dict) else ():
        node = node_of(name, fact) if isinstance(fact, Mapping) else None
        if node is not None:
            nodes[name] = node
    return nodes


def record_nodes(state_dir: Path, joined: Mapping[str, MeshNode],
                 keep: Iterable[str] | None = None) -> dict[str, MeshNode]:
    """Merge ``joined`` into mesh.json (atomically) and return what it now holds.
    ``keep``: the environment's host names; nodes of other names are dropped."""
    nodes = {**read_nodes(state_dir), **joined}
    if keep is not None:
        wanted = set(keep)
        nodes = {name: node for name, node in nodes.items() if name in wanted}
    document = {"nodes": {name: node.to_dict() for name, node in sorted(nodes.items())}}
    write_atomic(mesh_file(state_dir), json.dumps(document, indent=2) + "\n")
    return nodes


def forget_nodes(state_dir: Path) -> None:
    """The hosts left the tailnet (``infra down``): nothing of them is kept."""
    mesh_file(state_dir).unlink(missing_ok=True)


__all__ = ["FACT", "MESH_FILE", "MeshNode", "TAILNET_IPV4", "TAILNET_IPV6", "TAILNET_KINDS",
           "forget_nodes", "mesh_file", "node_of", "nodes_from_events", "over_mesh",
           "read_nodes", "record_nodes"]
