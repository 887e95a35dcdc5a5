"""An environment's hosts as its cloud provider recorded them (:class:`Fleet`).

Every command that works on hosts (deploy, rollback, plan, bootstrap, status,
logs, ssh, exec, audit, lock, migrate, doctor, the inventory) starts from one
``Fleet``: the resolved environment, its cloud provider, and the host records of
``.stagecraft/<env>/hosts.json``, filtered by one rule (:func:`in_fleet`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stagecraft.config.schema import CloudSSH, Host, ResolvedEnvironment, is_duration
from stagecraft.config.values import parse_duration
from stagecraft.errors import StateError
from stagecraft.ledger import Ledger
from stagecraft.providers.cloud import (
    CloudProvider,
    FleetSpec,
    HostRecord,
    HostSpec,
    SshAccess,
    get_cloud_provider,
)
from stagecraft.hosts.mesh import TAILNET_KINDS, MeshNode, over_mesh, read_nodes
from stagecraft.providers.cloud.base import StateFiles, mesh_route, read_hosts_file

if TYPE_CHECKING:
    from stagecraft.hosts.remote import RemoteHost

STATE_DIR = ".stagecraft"


@dataclass(frozen=True)
class ConnectionSettings:
    """How Ansible reaches an environment's hosts, beyond each host's address.

    ``private_key``: the SSH key to use (None: ssh's own defaults and agent).
    ``known_hosts``: the pinned host keys (None: the user's known_hosts files).
    ``user``: the user for hosts whose config and record name none.
    Host key checking is on either way.
    """

    private_key: Path | None = None
    known_hosts: Path | None = None
    user: str | None = None

    @classmethod
    def of(cls, access: SshAccess) -> ConnectionSettings:
        """The settings for hosts a cloud gives ``access`` to."""
        return cls(private_key=access.private_key, known_hosts=access.known_hosts,
                   user=access.user)


def fleet_spec(env: ResolvedEnvironment) -> FleetSpec:
    """The hosts an environment asks for, in the cloud interface's terms."""
    return FleetSpec(
        project=env.project.name,
        environment=env.name,
        hosts=tuple(_host_spec(env, h) for h in env.hosts),
        volume_sizes={name: volume.size_gb for name, volume in env.volumes.items()},
        public_ports=tuple(sorted(set(env.firewall.public))),
        ssh_from=tuple(env.firewall.ssh_from) if env.firewall.ssh == "public" else (),
        mesh=env.providers.network.kind in TAILNET_KINDS,
        mesh_tags=tuple(getattr(env.providers.network, "tags", ())),
    )


def _host_spec(env: ResolvedEnvironment, host: Host) -> HostSpec:
    cloud = env.providers.cloud
    user = host.user or (cloud.user if isinstance(cloud, CloudSSH) else None)
    key = host.ssh_key or (cloud.ssh_key if isinstance(cloud, CloudSSH) else None)
    return HostSpec(host.name, tuple(host.roles), host.size, tuple(host.volumes),
                    address=host.address, port=host.port, user=user,
                    ssh_key=str(Path(key).expanduser()) if key else None,
                    proxy_jump=host.proxy_jump)


def cloud_for(env: ResolvedEnvironment, project_dir: Path | None = None) -> CloudProvider:
    """The environment's cloud provider, built with its settings from stagecraft.yml.

    A setting that is a secret reference (DigitalOcean's token) is passed as a function
    that resolves it through the secrets provider when the cloud first needs it, so
    commands that never call the cloud's API never read the secret. A duration
    (``wait_timeout: 5m``) is passed in seconds.
    """
    cloud = env.providers.cloud
    settings = cloud.model_dump(exclude={"kind"}, exclude_none=True)
    fields = type(cloud).model_fields
    for key, value in list(settings.items()):
        if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
            settings[key] = _deferred_secret(env, project_dir, value)
        elif key in fields and is_duration(fields[key]):
            settings[key] = parse_duration(value)  # providers take seconds
    return get_cloud_provider(env.providers.cloud.kind, settings)


def _deferred_secret(env: ResolvedEnvironment, project_dir: Path | None,
                     reference: str) -> Callable[[], str]:
    def resolve() -> str:
        from stagecraft.providers.secrets import resolve_reference

        return resolve_reference(env, Path(project_dir or Path.cwd()), reference)

    return resolve


def state_dir(project_dir: Path, environment: str) -> Path:
    """``<project>/.stagecraft/<env>/``: hosts.json, known_hosts and the SSH key of an
    environment; absolute and canonical, so rendered paths work from any working
    directory and the CLI and the inventory plugin render the same paths."""
    return Path(project_dir).resolve() / STATE_DIR / environment


def load_host_records(state_dir: Path) -> dict[str, HostRecord]:
    """Every host record of ``state_dir``/hosts.json by host name; empty when there is none.

    Raises StateError when the file is unreadable, malformed or too new.
    """
    document = read_hosts_file(StateFiles(Path(state_dir)))
    if document is None:
        return {}
    return {record.name: record for record in document["hosts"]}


def load_connection_settings(state_dir: Path) -> ConnectionSettings:
    """The key, known_hosts and user recorded in ``state_dir``/hosts.json.

    Without hosts.json (hosts not created, or a cloud that keeps no state), the
    standard key and known_hosts of the state dir are used when they exist.
    Raises StateError like :func:`load_host_records`.
    """
    files = StateFiles(Path(state_dir))
    document = read_hosts_file(files)
    ssh = document.get("ssh") if document is not None else None
    if isinstance(ssh, Mapping):
        return ConnectionSettings(
            private_key=_state_path(files, ssh.get("private_key")),
            known_hosts=_state_path(files, ssh.get("known_hosts")),
            user=ssh.get("user") if isinstance(ssh.get("user"), str) else None,
        )
    return ConnectionSettings(
        private_key=files.private_key if files.private_key.is_file() else None,
        known_hosts=files.known_hosts if files.known_hosts.is_file() else None,
    )


def _state_path(files: StateFiles, value: Any) -> Path | None:
    """A path written in hosts.json (relative to the state dir, or absolute)."""
    if not isinstance(value, str) or not value:
        return None
    return files.state_dir / value


def in_fleet(record: HostRecord, env: ResolvedEnvironment) -> bool:
    """The one rule for which records count: the environment lists the host, the
    environment's cloud wrote the record (a record of another cloud is stale: the
    cloud changed since ``infra up``), and the last ``infra up`` had it in the spec."""
    return (record.in_spec and record.provider == env.providers.cloud.kind
            and any(host.name == record.name for host in env.hosts))


def fleet_records(env: ResolvedEnvironment, records: Mapping[str, HostRecord]
                  ) -> dict[str, HostRecord]:
    """``records`` that :func:`in_fleet` keeps, in the recorded order."""
    return {name: record for name, record in records.items() if in_fleet(record, env)}


@dataclass(frozen=True)
class Fleet:
    """One environment and the hosts it runs on, loaded once per command."""

    env: ResolvedEnvironment
    project_dir: Path
    state_dir: Path
    cloud: CloudProvider
    spec: FleetSpec
    records: Mapping[str, HostRecord]  # only the records :func:`in_fleet` keeps
    # The hosts that joined the environment's tailnet (none without one). With
    # ssh_over_mesh, ``records`` reach them at these addresses.
    mesh: Mapping[str, MeshNode] = field(default_factory=dict)

    @classmethod
    def load(cls, env: ResolvedEnvironment, project_dir: Path, *,
             require: bool = True) -> Fleet:
        """The fleet of ``env``. With ``require`` (the default), every host the
        environment lists must have a record: StateError names those without one."""
        project_dir = Path(project_dir).resolve()
        sdir = state_dir(project_dir, env.name)
        records = fleet_records(env, load_host_records(sdir))
        if require:
            missing = [h.name for h in env.hosts if h.name not in records]
            if missing:
                raise StateError(
                    f"environment '{env.name}' has no host record for {', '.join(missing)}",
                    hint=f"create the hosts first: stagecraft infra up --env {env.name} "
                         "--bootstrap")
        cloud, spec = cloud_for(env, project_dir), fleet_spec(env)
        network = env.providers.network
        nodes = read_nodes(sdir) if spec.mesh else {}
        nodes = {name: node for name, node in nodes.items() if name in records}
        # A joined host's private address is its tailnet one: services, Traefik's
        # backends and the private ports are reached (and bound) there.
        records = {name: replace(record, private_ip=nodes[name].ipv4) if name in nodes
                   else record for name, record in records.items()}
        if nodes and getattr(network, "ssh_over_mesh", False):
            route = mesh_route(cloud, spec, sdir)
            records = {name: over_mesh(record, nodes[name], route) if name in nodes else record
                       for name, record in records.items()}
        return cls(env=env, project_dir=project_dir, state_dir=sdir, cloud=cloud, spec=spec,
                   records=records, mesh=nodes)

    @cached_property
    def access(self) -> SshAccess:
        """The key, known_hosts and user the cloud gives for these hosts."""
        return self.cloud.ssh_access(self.spec, self.state_dir)

    @property
    def connection(self) -> ConnectionSettings:
        """How Ansible reaches the hosts: the cloud's key, known_hosts and user."""
        return ConnectionSettings.of(self.access)

    @property
    def ledger(self) -> Ledger:
        return Ledger.for_project(self.project_dir)

    @property
    def runs_dir(self) -> Path:
        """Where run bundles go: ``.stagecraft/runs/``."""
        return self.project_dir / STATE_DIR / "runs"

    @property
    def host_names(self) -> list[str]:
        """The environment's hosts, in config order."""
        return [host.name for host in self.env.hosts]

    def remotes(self, names: Iterable[str] | None = None) -> dict[str, RemoteHost]:
        """A RemoteHost for each of ``names`` (default: every host of the fleet)."""
        from stagecraft.hosts.remote import remote_hosts

        wanted = list(names) if names is not None else list(self.records)
        return remote_hosts(self.records, self.access, wanted)

    def remote(self, name: str) -> RemoteHost:
        """The RemoteHost of host ``name``."""
        return self.remotes([name])[name]

    @property
    def primary(self) -> RemoteHost:
        """The RemoteHost of the environment's primary host (it holds the deploy lock)."""
        return self.remote(self.env.primary_host.name)

    @property
    def private_ips(self) -> dict[str, str]:
        """Each host's address on the private network: its tailnet address once it
        joined one, else its VPC address (its SSH address when it has neither)."""
        return {name: r.private_ip or r.ssh_host or name for name, r in self.records.items()}


__all__ = [
    "ConnectionSettings", "Fleet", "STATE_DIR", "cloud_for", "fleet_records", "fleet_spec",
    "in_fleet", "load_connection_settings", "load_host_records", "state_dir",
]
