"""The Ansible inventory of an environment (CORE_INVENTORY, spec/core/inventory.md).

One source of rendering: the CLI (``stagecraft inventory``, the run bundle) and
the ``stagecraft.platform.stagecraft`` inventory plugin both call
:func:`inventory_of`, which reads the environment's state files and hands them to
the pure :func:`render_inventory`.

The result is Ansible's YAML/JSON inventory-file shape (what the ``yaml``
inventory plugin reads and what ansible-runner takes as ``inventory``)::

    {"all": {"children": {
        "project_shop": {"children": {"env_production": {"hosts": {"edge-1": {...vars}}}}},
        "role_app":  {"hosts": {"app-1": {}, "app-2": {}}},
        "role_edge": {"hosts": {"edge-1": {}}}}}}

Group names carry a prefix (``project_``, ``env_``, ``role_``) so that they can
never be Ansible's reserved ``all``/``ungrouped``, never clash with each other
(a role named like an environment) and never equal a host name (host names are
DNS labels, which have no ``_``). Characters Ansible does not allow in group
names (``-``) become ``_``. Host variables live once, under the environment
group; the other groups only list members.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stagecraft.config.loader import LoadedConfig
from stagecraft.config.schema import Host, ResolvedEnvironment
from stagecraft.errors import ConfigError
from stagecraft.hosts import ssh
from stagecraft.hosts.fleet import (
    ConnectionSettings,
    fleet_records,
    load_connection_settings,
    load_host_records,
    state_dir,
)
from stagecraft.providers.cloud.base import HostRecord

PROJECT_GROUP_PREFIX = "project_"
ENV_GROUP_PREFIX = "env_"
ROLE_GROUP_PREFIX = "role_"


def group_name(prefix: str, name: str) -> str:
    """An Ansible group name: the prefix, then ``name`` with ``-`` (and any other
    character Ansible rejects in group names) replaced by ``_``."""
    safe = "".join(ch if (ch.isascii() and (ch.isalnum() or ch == "_")) else "_" for ch in name)
    return f"{prefix}{safe}"


def project_group(project: str) -> str:
    """The group of every host of the project: ``project_<project>``."""
    return group_name(PROJECT_GROUP_PREFIX, project)


def env_group(environment: str) -> str:
    """The group of every host of an environment: ``env_<environment>``."""
    return group_name(ENV_GROUP_PREFIX, environment)


def role_group(role: str) -> str:
    """The group of every host with a role: ``role_<role>``."""
    return group_name(ROLE_GROUP_PREFIX, role)


def render_inventory(
    env: ResolvedEnvironment,
    hosts: Mapping[str, HostRecord] | None,
    connection: ConnectionSettings,
) -> dict[str, Any]:
    """The inventory of ``env`` in Ansible's YAML/JSON inventory-file shape.

    ``hosts`` maps host name to what the cloud provider recorded (hosts.json);
    None or a missing entry means the host was not created yet: it is still
    listed, with its roles and services, and with connection variables only if
    the config gives an ``address``. Records of hosts the environment does not
    list are ignored: the config decides which hosts exist.

    Pure: reads nothing, and the same arguments give the same dict (insertion
    order included). No secret is rendered.
    Raises ConfigError when two roles would become the same group name.
    """
    records = hosts or {}
    host_vars = {
        host.name: _host_vars(env, host, records.get(host.name), connection)
        for host in env.hosts
    }
    role_groups: dict[str, dict[str, Any]] = {}
    role_of_group: dict[str, str] = {}
    for role in sorted({role for host in env.hosts for role in host.roles}):
        name = role_group(role)
        if name in role_of_group:
            raise ConfigError(
                f"environment {env.name!r}: roles {role_of_group[name]!r} and {role!r} both "
                f"become the Ansible group {name}",
                hint="rename one of the roles (a role's '-' becomes '_' in its group name)",
            )
        role_of_group[name] = role
        role_groups[name] = {
            "hosts": {host.name: {} for host in env.hosts if role in host.roles},
        }
    return {
        "all": {
            "children": {
                project_group(env.project.name): {
                    "children": {
                        env_group(env.name): {"hosts": host_vars},
                    },
                },
                **role_groups,
            },
        },
    }


def _host_vars(env: ResolvedEnvironment, host: Host, record: HostRecord | None,
               connection: ConnectionSettings) -> dict[str, Any]:
    """The variables of one host: stagecraft facts, then how to connect."""
    services = sorted(name for name, service in env.services.items()
                      if set(service.on).intersection(host.roles))
    facts: dict[str, Any] = {
        "stagecraft_project": env.project.name,
        "stagecraft_environment": env.name,
        "stagecraft_roles": list(host.roles),
        "stagecraft_services": services,
        "stagecraft_volumes": list(host.volumes),
    }
    if record is not None and record.private_ip:
        facts["stagecraft_private_ip"] = record.private_ip
    # Kept on whatever ansible.cfg or ANSIBLE_HOST_KEY_CHECKING say: a host
    # variable outranks both.
    facts["ansible_host_key_checking"] = True

    address = (record.ssh_host if record is not None else None) or host.address
    if not address:
        return facts
    facts["ansible_host"] = address
    port = (record.ssh_port if record is not None else None) or host.port
    if port:
        facts["ansible_port"] = port
    user = (record.ssh_user if record is not None else None) or host.user or connection.user
    if user:
        facts["ansible_user"] = user
    if user and user != "root":
        # The roles run as root, whoever logs in: the deploy user (and an adopting
        # admin) has passwordless sudo.
        facts["ansible_become"] = True
    key = (record.ssh_key if record is not None else None) or (
        str(connection.private_key) if connection.private_key is not None else None)
    if key is not None:
        facts["ansible_ssh_private_key_file"] = key
    route = ssh.Route(proxy=record.ssh_proxy, proxy_command=record.proxy_command,
                      host_key_alias=record.host_key_alias) if record is not None else None
    facts["ansible_ssh_common_args"] = ssh_common_args(connection, key, route=route)
    return facts


def ssh_common_args(connection: ConnectionSettings, key: str | None = None,
                    proxy: str | None = None, route: ssh.Route | None = None) -> str:
    """The ``-o`` options every ssh/scp/sftp call gets: pinned host keys, checked,
    and the way through the bastion ``proxy`` (or the whole ``route``)."""
    return ssh.ansible_common_args(key or connection.private_key, connection.known_hosts,
                                   proxy, route)


# ------------------------------------------------------------------ state files


def inventory_of(loaded: LoadedConfig, environment: str | None) -> dict[str, Any]:
    """The inventory of an environment of a loaded stagecraft.yml, with its state files.

    Only the records :func:`stagecraft.hosts.fleet.in_fleet` keeps are used (a record
    another cloud wrote is stale). This is the one function
    the CLI and the inventory plugin call. Raises ConfigError and StateError.
    """
    env = loaded.environment(environment)
    directory = state_dir(loaded.project_dir, env.name)
    records = fleet_records(env, load_host_records(directory))
    return render_inventory(env, records, load_connection_settings(directory))


# ------------------------------------------------------------------------ views


def inventory_graph(inventory: Mapping[str, Any]) -> str:
    """The tree ``ansible-inventory --graph`` prints for this inventory.

    Groups and hosts come in the inventory's order, ``@ungrouped:`` first under
    ``@all:`` as Ansible shows it; hosts directly under ``all`` are not shown.
    """
    lines = ["@all:", "  |--@ungrouped:"]
    all_group = inventory.get("all") or {}
    for name, child in (all_group.get("children") or {}).items():
        _graph_group(name, child, 1, lines)
    return "\n".join(lines)


def _graph_group(name: str, group: Mapping[str, Any] | None, depth: int,
                 lines: list[str]) -> None:
    lines.append("  |" * depth + f"--@{name}:")
    group = group or {}
    for child_name, child in (group.get("children") or {}).items():
        _graph_group(child_name, child, depth + 1, lines)
    for host in group.get("hosts") or {}:
        lines.append("  |" * (depth + 1) + f"--{host}")


__all__ = [
    "env_group", "group_name", "inventory_graph", "inventory_of", "project_group",
    "render_inventory", "role_group", "ssh_common_args",
]
