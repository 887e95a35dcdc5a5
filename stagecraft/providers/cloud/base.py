"""The cloud provider interface (PROVIDER_CLOUD_INTERFACE).

A cloud provider makes an environment's hosts exist (``up``), reports them
(``status``) and removes them (``down``). It knows nothing about stagecraft.yml:
the CLI turns the config into a :class:`FleetSpec` of plain frozen dataclasses,
and the provider answers with :class:`HostRecord` rows that the inventory
renderer and the bootstrap playbook consume.

Every provider keeps its local state in the environment's state directory
(``.stagecraft/<env>/``) under the same file names (:class:`StateFiles`), so the
rest of stagecraft reads ``hosts.json`` and ``known_hosts`` without knowing which
cloud made them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from stagecraft.doctor.model import Check
from stagecraft.errors import ConfigError, StateError
from stagecraft.fsutil import exclusive_lock, write_atomic
from stagecraft.hosts.ssh import connection_options

#: Version of the hosts.json layout; bump it when a field changes meaning.
HOSTS_FILE_VERSION = 1

#: Host states a provider reports.
RUNNING = "running"
STOPPED = "stopped"
MISSING = "missing"
CREATING = "creating"  # made, not ready yet (a droplet still in status `new`)
UNREACHABLE = "unreachable"  # recorded, but does not answer SSH now (cloud `ssh`)

#: What one ``up``/``down`` call did to a host (HostRecord.change).
CREATED = "created"
STARTED = "started"
UNCHANGED = "unchanged"
ORPHANED = "orphaned"  # exists, carries this environment's labels, not in the spec
REMOVED = "removed"
ABSENT = "absent"  # down found nothing to remove

# Host names become hostnames and parts of container/droplet names: RFC 1123 labels.
_HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

Log = Callable[[str], None]
#: Asked before trusting something new (a host key nobody vouched for): the question,
#: a yes/no answer. None where a provider takes one: refuse whatever needs asking.
Confirm = Callable[[str], bool]
#: Runs a bundled playbook on this machine (for a cloud whose resources Ansible makes):
#: (playbook file name, its variables, the state dir, log). Raises RunFailed when the
#: run fails. The CLI passes stagecraft.infra.provision.run_on_controller; providers
#: never import the Ansible driver themselves.
Provisioner = Callable[[str, Mapping[str, Any], Path, Log], None]


@dataclass(frozen=True)
class HostSpec:
    """One host the environment asks for."""

    name: str
    roles: tuple[str, ...] = ()
    size: str | None = None  # provider size slug (s-2vcpu-4gb); clouds without sizes ignore it
    volumes: tuple[str, ...] = ()  # names of block-storage volumes attached to this host
    # How to reach a server that exists already (cloud `ssh`); other clouds ignore them.
    address: str | None = None
    port: int | None = None
    user: str | None = None
    ssh_key: str | None = None  # private key file, `~` expanded; None: agent and ~/.ssh
    proxy_jump: str | None = None  # another host's name, or [user@]address[:port]


@dataclass(frozen=True)
class FleetSpec:
    """The hosts of one environment of one project."""

    project: str
    environment: str
    hosts: tuple[HostSpec, ...]
    # GiB per block-storage volume name (stagecraft.yml ``volumes.<name>.size_gb``).
    volume_sizes: Mapping[str, int] = field(default_factory=dict)
    # For clouds with a firewall of their own (DigitalOcean): the ports edge hosts
    # open to everyone, and where SSH may come from (empty: nowhere but the private
    # side, e.g. when a tailnet carries SSH).
    public_ports: tuple[int, ...] = (80, 443)
    ssh_from: tuple[str, ...] = ()
    # Whether the hosts join a tailnet (network tailscale or headscale): a cloud then
    # tells bootstrap how tailscale gets onto its hosts (bootstrap_vars).
    mesh: bool = False
    # The ACL tags its nodes carry (network ``tags``): a cloud that runs the control
    # server puts them on the pre-auth key it makes.
    mesh_tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # The config layer validates names for users; this guards every other caller,
        # because these names end up in container names, hostnames and file paths.
        for label, value in (("project", self.project), ("environment", self.environment)):
            if not _HOST_NAME.match(value):
                raise ConfigError(
                    f"{label} name {value!r} cannot name hosts: use lowercase letters, "
                    "digits and '-' (at most 63)",
                )
        seen: set[str] = set()
        for host in self.hosts:
            if not _HOST_NAME.match(host.name):
                raise ConfigError(
                    f"environment {self.environment!r}: host name {host.name!r} is not a "
                    "valid hostname: use lowercase letters, digits and '-' (at most 63)",
                )
            if host.name in seen:
                raise ConfigError(
                    f"environment {self.environment!r}: host name {host.name!r} appears twice",
                )
            seen.add(host.name)

    def host(self, name: str) -> HostSpec | None:
        """The spec of host ``name``, or None."""
        return next((h for h in self.hosts if h.name == name), None)


@dataclass(frozen=True)
class HostRecord:
    """What a provider knows about one host: where to reach it and in what state it is."""

    name: str
    roles: tuple[str, ...]
    state: str  # running | stopped | missing | unreachable | creating
    ssh_host: str | None  # address the controller connects to
    ssh_port: int | None
    ssh_user: str
    private_ip: str | None  # address on the environment's private network (VPC)
    provider_id: str | None  # container id, droplet id
    provider: str = "local"
    size: str | None = None
    public_ip: str | None = None
    change: str | None = None  # what the call that returned this record did to the host
    in_spec: bool = True  # False: the host exists but the environment no longer lists it
    # Where the controller reaches an edge host's ports 80 and 443 when a cloud
    # publishes them on this machine; None otherwise (then: public_ip, ports 80 and 443).
    http_port: int | None = None
    https_port: int | None = None
    # The private key for this host when it is not the environment's (cloud `ssh`:
    # the host's `ssh_key`); None: SshAccess.private_key.
    ssh_key: str | None = None
    # The bastion to reach this host through, ``user@address:port`` (cloud `ssh`).
    ssh_proxy: str | None = None
    # What the provider found on the host: "debian 13", "x86_64" (cloud `ssh`).
    os: str | None = None
    arch: str | None = None
    # Set only on the fleet's view of a host reached over the tailnet (hosts/mesh.py),
    # never written: a ProxyCommand that connects to %h:%p on the tailnet (None: the
    # controller routes there itself), and the known_hosts name its key is pinned under.
    proxy_command: str | None = None
    host_key_alias: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data (tuples become lists)."""
        data = asdict(self)
        data["roles"] = list(self.roles)
        for derived in ("proxy_command", "host_key_alias"):  # the fleet's view only
            del data[derived]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostRecord:
        """Inverse of :meth:`to_dict`. Unknown keys are ignored (newer writers may add some).

        Raises StateError when a required key is missing or has the wrong type.
        """
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        try:
            values["roles"] = tuple(values["roles"])
            record = cls(**values)
        except (KeyError, TypeError) as exc:
            raise StateError(
                f"a host record is incomplete or malformed ({exc}): {dict(data)!r}",
                hint="run `stagecraft infra up` to rewrite the host list",
            ) from exc
        ports = (record.ssh_port, record.http_port, record.https_port)
        if not isinstance(record.name, str) or not all(
            port is None or isinstance(port, int) for port in ports
        ):
            raise StateError(
                f"a host record has a bad name or port: {dict(data)!r}",
                hint="run `stagecraft infra up` to rewrite the host list",
            )
        return record


@dataclass(frozen=True)
class DownResult:
    """What ``down`` did: every host it handled, and the other things it removed."""

    hosts: tuple[HostRecord, ...]  # change is "removed" or "absent"
    removed: tuple[str, ...] = ()  # e.g. "network stagecraft-shop-local", "file .../hosts.json"

    @property
    def changed(self) -> bool:
        """Whether anything was removed (False: a no-op, the environment was already gone)."""
        return bool(self.removed) or any(h.change == REMOVED for h in self.hosts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hosts": [h.to_dict() for h in self.hosts],
            "removed": list(self.removed),
            "changed": self.changed,
        }


@dataclass(frozen=True)
class VolumeStatus:
    """A block-storage volume of the environment, as its cloud has it now."""

    name: str  # the cloud's name (DigitalOcean: <project>-<env>-<host>-<volume>)
    size_gb: int | None
    host: str | None  # the environment's host it is attached to; None: none of them
    attached_to: str | None  # the cloud's machine it is attached to (droplet, container)
    volume: str | None = None  # its name in stagecraft.yml (``volumes.<name>``), when known
    provider_id: str | None = None  # the cloud's id of it (an id, or a file on this machine)
    device: str | None = None  # its block device (in the host, or on this machine)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FirewallStatus:
    """A cloud firewall of the environment (DigitalOcean's), as its cloud has it now."""

    name: str
    status: str | None  # DigitalOcean: waiting | succeeded | failed
    droplets: int  # how many droplets it applies to now (by tag or by id)
    tags: tuple[str, ...]  # it applies to the droplets with these tags
    inbound: tuple[str, ...]  # one line per inbound rule: "tcp 80 from 0.0.0.0/0, ::/0"
    provider_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tags"], data["inbound"] = list(self.tags), list(self.inbound)
        return data


@dataclass(frozen=True)
class CloudResources:
    """What a cloud made for an environment besides its hosts, for `infra status`."""

    volumes: tuple[VolumeStatus, ...] = ()
    firewalls: tuple[FirewallStatus, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"volumes": [v.to_dict() for v in self.volumes],
                "firewalls": [f.to_dict() for f in self.firewalls]}


@dataclass(frozen=True)
class CloudChange:
    """One thing ``up`` (or ``down``) would do to one resource of a cloud."""

    kind: str  # droplet | volume | firewall | vpc | ssh key | tag | host
    name: str
    action: str  # create | resize | update | attach | start | delete
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "action": self.action,
                "detail": self.detail}


@dataclass(frozen=True)
class CloudPlan:
    """What ``up`` would change: the changes, the hosts the environment no longer lists
    (deleted only with ``prune``), notes on what is deliberately left alone, and the
    provider's own data for carrying the plan out."""

    changes: tuple[CloudChange, ...]
    variables: Mapping[str, Any] = field(default_factory=dict)
    unlisted: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def to_dict(self) -> dict[str, Any]:
        return {"changes": [c.to_dict() for c in self.changes],
                "unlisted": list(self.unlisted), "kept": list(self.kept),
                "changed": self.changed}


def plan_from_status(records: Sequence[HostRecord], *, create: str = "create",
                     prune: bool = False) -> CloudPlan:
    """The plan of a cloud whose ``up`` only makes missing hosts and starts stopped
    ones (``status`` says which): what ``up`` would do to each host."""
    changes = []
    for record in records:
        if not record.in_spec:
            continue
        if record.state == MISSING:
            changes.append(CloudChange("host", record.name, create, ",".join(record.roles)))
        elif record.state == STOPPED:
            changes.append(CloudChange("host", record.name, "start", "stopped"))
    unlisted = tuple(r.name for r in records if not r.in_spec)
    if prune:
        changes += [CloudChange("host", name, "delete", "not listed in the environment")
                    for name in unlisted]
    return CloudPlan(tuple(changes), unlisted=unlisted)


def refuse_prune(kind: str, orphans: Sequence[str]) -> None:
    """For clouds that remove an environment only as a whole: ``--prune`` with hosts to
    delete is refused, saying how to remove them."""
    if orphans:
        raise ConfigError(
            f"cloud `{kind}` cannot delete single hosts ({', '.join(orphans)})",
            hint="`stagecraft infra down` removes the whole environment; or keep them "
            "listed until then")


@dataclass(frozen=True)
class SshAccess:
    """How the controller reaches an environment's hosts: key, pinned host keys, user."""

    user: str
    private_key: Path | None  # None: ssh's own defaults and agent
    known_hosts: Path

    def ssh_options(self) -> list[str]:
        """``-o`` options for ssh: this key only, these host keys only, checked
        (stagecraft.hosts.ssh decides them)."""
        return connection_options(self.private_key, self.known_hosts)


@dataclass(frozen=True)
class RegistryAccess:
    """How to reach an environment's container registry, from the controller and from hosts.

    ``push_server`` is what the controller pushes to, ``pull_server`` what hosts pull
    from (the same registry, which a cloud may publish on 127.0.0.1 for the controller
    and give hosts at its address on their private network). An image pushed as
    ``<push_server>/<repo>:<tag>`` is pulled as ``<pull_server>/<repo>:<tag>``.
    ``ca_pem`` is the CA that signed the registry's certificate, when it is not a
    publicly trusted one.
    """

    push_server: str
    pull_server: str
    username: str
    password: str = field(repr=False)
    ca_pem: str | None = field(default=None, repr=False)

    def pull_reference(self, repository: str, tag: str, digest: str | None = None) -> str:
        """``<pull_server>/<repository>:<tag>[@<digest>]``: what a host's compose file names."""
        reference = f"{self.pull_server}/{repository}:{tag}"
        return f"{reference}@{digest}" if digest else reference

    def push_reference(self, repository: str, tag: str) -> str:
        """``<push_server>/<repository>:<tag>``: what the controller tags and pushes."""
        return f"{self.push_server}/{repository}:{tag}"


@dataclass(frozen=True)
class StateFiles:
    """The files a cloud provider keeps in ``.stagecraft/<env>/``."""

    state_dir: Path
    hosts: Path = field(init=False)
    known_hosts: Path = field(init=False)
    private_key: Path = field(init=False)
    public_key: Path = field(init=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: derived paths are set once, here
        set_(self, "hosts", self.state_dir / "hosts.json")
        set_(self, "known_hosts", self.state_dir / "known_hosts")
        set_(self, "private_key", self.state_dir / "id_ed25519")
        set_(self, "public_key", self.state_dir / "id_ed25519.pub")


def known_hosts_text(header: str, entries: Sequence[tuple[Sequence[str], str]]) -> str:
    """known_hosts lines under ``header`` (as comments): each entry is (names, "type key")."""
    lines = [f"# {line}" for line in header.splitlines()]
    for names, key in entries:
        lines.append(f"{','.join(names)} {key}")
    return "\n".join(lines) + "\n"


def host_key_name(address: str, port: int) -> str:
    """How ssh names ``address:port`` in known_hosts: ``address``, or ``[address]:port``."""
    return address if port == 22 else f"[{address}]:{port}"


def host_key_names(ssh_host: str, ssh_port: int, private_ip: str | None) -> list[str]:
    """How ssh looks a host up in known_hosts: its SSH address (and its private address)."""
    names = [host_key_name(ssh_host, ssh_port)]
    if private_ip:
        names.append(private_ip)
    return names


def remove_files(paths: Sequence[Path]) -> list[Path]:
    """Delete the files that exist; return the ones deleted."""
    removed = []
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


#: Held in the state dir while a cloud's ``up``, ``bootstrapped`` or ``down`` reads and
#: writes hosts.json (clouds whose state is only that file: ssh, digitalocean).
HOSTS_LOCK_FILE = ".hosts.lock"


def hosts_lock(files: StateFiles, log: Log) -> contextlib.AbstractContextManager[None]:
    """The state dir's lock for one `infra` command at a time."""
    return exclusive_lock(files.state_dir / HOSTS_LOCK_FILE,
                          f"waiting for another `infra` command on {files.state_dir}", log)


def write_hosts_file(
    files: StateFiles,
    *,
    provider: str,
    spec: FleetSpec,
    records: list[HostRecord],
    ssh: SshAccess,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write ``hosts.json``: the environment's hosts as the provider made them.

    Paths to the key and known_hosts are relative to the state dir, so the
    project directory can move. ``change`` is left out: it describes one call.
    """
    hosts = []
    for record in records:
        data = record.to_dict()
        data.pop("change")
        hosts.append(data)
    document = {
        "version": HOSTS_FILE_VERSION,
        "provider": provider,
        "project": spec.project,
        "environment": spec.environment,
        "ssh": {
            "user": ssh.user,
            "private_key": (os.path.relpath(ssh.private_key, files.state_dir)
                            if ssh.private_key is not None else None),
            "known_hosts": os.path.relpath(ssh.known_hosts, files.state_dir),
        },
        **dict(extra or {}),
        "hosts": hosts,
    }
    write_atomic(files.hosts, json.dumps(document, indent=2, sort_keys=False) + "\n")


def read_hosts_file(files: StateFiles) -> dict[str, Any] | None:
    """Read ``hosts.json``; None when it does not exist. Records come back as HostRecords.

    Raises StateError when the file is unreadable, not JSON, or of a newer version.
    """
    try:
        text = files.hosts.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {files.hosts}: {exc.strerror}",
                         hint="check the file's permissions") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(
            f"{files.hosts} is not valid JSON (line {exc.lineno}, column {exc.colno})",
            hint="delete it and run `stagecraft infra up` to rewrite it from the running hosts",
        ) from exc
    if not isinstance(document, dict) or not isinstance(document.get("hosts"), list):
        raise StateError(
            f"{files.hosts} has no host list",
            hint="delete it and run `stagecraft infra up` to rewrite it from the running hosts",
        )
    version = document.get("version")
    if not isinstance(version, int) or version > HOSTS_FILE_VERSION:
        raise StateError(
            f"{files.hosts} has version {version!r}; this stagecraft reads up to "
            f"{HOSTS_FILE_VERSION}",
            hint="upgrade stagecraft, or delete the file and run `stagecraft infra up`",
        )
    document["hosts"] = [HostRecord.from_dict(h) for h in document["hosts"]]
    return document


@dataclass(frozen=True)
class CloudCapabilities:
    """What a cloud offers besides hosts. Callers ask these instead of checking the
    cloud's kind, so a new cloud is one class: it says what it does here."""

    #: It runs a registry per environment (:meth:`CloudProvider.registry_access`);
    #: stagecraft.yml's ``project.registry`` is then not used.
    registry: bool = False
    #: It publishes the Traefik image hosts run (:meth:`CloudProvider.publish_traefik_image`);
    #: otherwise hosts pull the public one.
    traefik_image: bool = False
    #: Base images it builds on this machine for apps' Dockerfiles to start FROM
    #: (:meth:`CloudProvider.ensure_base_image`); nothing is pulled for them.
    base_images: tuple[str, ...] = ()
    #: Its hosts hold nothing a user could lose by mistake (containers on this
    #: machine): ``infra down`` removes them without asking.
    disposable_hosts: bool = False
    #: After bootstrap it reaches hosts as the deploy user, not as the user that
    #: adopted them (:meth:`CloudProvider.bootstrapped` records the switch); root
    #: logins can then be turned off.
    deploy_user_logins: bool = False
    #: The edges' TLS mode when stagecraft.yml's ``tls.mode`` names none: ``acme``
    #: (a public CA), or ``local`` (the environment's own CA) for hosts that no public
    #: CA can reach.
    default_tls: Literal["acme", "local", "off"] = "acme"
    #: It runs a Headscale control server for network ``headscale`` and makes its
    #: pre-auth key, so the network names neither (kinds.MESH_SERVER_CLOUDS lists it).
    mesh_server: bool = False


@runtime_checkable
class CloudProvider(Protocol):
    """What every cloud provider (local, digitalocean, ...) implements.

    All methods take the environment's :class:`FleetSpec` and its state directory
    (``.stagecraft/<env>/``, created if missing). ``log`` receives one-line progress
    messages for stderr. Errors are StagecraftErrors (ProviderError, CommandFailed,
    EnvironmentMissing, StateError) that name the host and the failed command.
    """

    #: The name users write in ``providers.cloud.kind``.
    kind: str
    #: What the cloud offers besides hosts.
    capabilities: CloudCapabilities

    def up(self, spec: FleetSpec, state_dir: Path, *, log: Log | None = None,
           confirm: Confirm | None = None, prune: bool = False,
           provisioner: Provisioner | None = None) -> list[HostRecord]:
        """Make every host of ``spec`` exist and run; write hosts.json and known_hosts.
        ``provisioner`` runs the cloud's playbook, for a cloud that has one.
        With ``prune``, hosts the spec no longer lists are deleted (``confirm`` asked
        first, naming them), where the cloud can delete one host.

        Idempotent: a second call creates nothing and reports each host ``unchanged``.
        Hosts that exist but are not in ``spec`` are returned with ``in_spec=False``
        and ``change="orphaned"``; they are not deleted. ``confirm`` is asked before
        trusting something new (cloud `ssh`: a host key that nothing vouches for);
        None refuses whatever would need asking.
        """
        ...

    def plan(self, spec: FleetSpec, state_dir: Path, *, prune: bool = False,
             down: bool = False, log: Log | None = None) -> CloudPlan:
        """What ``up`` (with ``down``: ``down``) would change now. Changes nothing."""
        ...

    def volume_device(self, spec: FleetSpec, host: str, volume: str) -> str | None:
        """Where ``host`` sees the block device of ``volume`` (None: the config names it)."""
        ...

    def bootstrapped(self, spec: FleetSpec, state_dir: Path, names: Sequence[str],
                     deploy_user: str) -> None:
        """Called after bootstrap succeeded on hosts ``names``, which now have
        ``deploy_user``: a cloud that reached them as another user records that the
        deploy user reaches them from now on (cloud `ssh`); others do nothing."""
        ...

    def down(self, spec: FleetSpec, state_dir: Path, *, log: Log | None = None,
             provisioner: Provisioner | None = None) -> DownResult:
        """Remove every host of the environment (in the spec or orphaned) and what ``up`` made.

        Idempotent: a second call removes nothing and returns ``changed == False``.
        """
        ...

    def status(self, spec: FleetSpec, state_dir: Path) -> list[HostRecord]:
        """Every host of ``spec`` (state running/stopped/missing) plus orphans. Changes nothing."""
        ...

    def ssh_access(self, spec: FleetSpec, state_dir: Path) -> SshAccess:
        """The key, known_hosts file and user to reach the hosts that ``up`` made."""
        ...

    def bootstrap_vars(self, spec: FleetSpec, state_dir: Path) -> dict[str, Any]:
        """Extra variables for the bootstrap role that this cloud's hosts need (the
        Docker source, a registry's address and CA, quirks of its hosts)."""
        ...

    def controller_checks(self) -> list[Check]:
        """What this cloud needs on the machine stagecraft runs on, checked for
        `stagecraft doctor` (programs it runs, images it builds here)."""
        ...

    def prepare_controller(self, log: Log) -> list[str]:
        """Make on this machine what the first ``up`` would otherwise make (the local
        cloud builds its images), for `stagecraft doctor --fix`. Returns what it made."""
        ...

    def registry_access(self, spec: FleetSpec, state_dir: Path) -> RegistryAccess:
        """Servers, credentials and CA of the environment's registry. Called only when
        ``capabilities.registry``; raises ProviderError when the registry is not
        running (the fleet is not up) or the cloud runs none."""
        ...

    def publish_traefik_image(self, spec: FleetSpec, state_dir: Path, *,
                              log: Log | None = None) -> str:
        """Build (if needed) and push the Traefik image to the environment's registry;
        return its pull reference ``<pull_server>/stagecraft/traefik:<version>@sha256:...``.
        Called only when ``capabilities.traefik_image``. Idempotent."""
        ...

    def ensure_base_image(self, name: str, log: Log | None = None) -> str:
        """Build base image ``name`` (one of ``capabilities.base_images``) on this
        machine if it is not built yet; return its tag."""
        ...


@runtime_checkable
class ResourceReporter(Protocol):
    """Optional for a cloud: one that makes more than hosts for an environment (block
    volumes, cloud firewalls) reports what it has of them now. A cloud without it
    reports none (cloud `ssh`: servers exist already, it makes nothing else)."""

    def resources(self, spec: FleetSpec, state_dir: Path) -> CloudResources:
        """The environment's volumes and cloud firewalls as the cloud has them now
        (including ones the environment no longer lists). Changes nothing."""
        ...


@dataclass(frozen=True)
class MeshServer:
    """A tailnet control server a cloud runs for an environment (network ``headscale``
    without a ``login_server``): where hosts log in, the pre-auth key it made for them,
    and the CA that signed its certificate when no public CA did."""

    login_server: str
    auth_key: str = field(repr=False)
    ca_pem: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class MeshRoute:
    """How the controller reaches hosts at their tailnet addresses: a ProxyCommand that
    connects to ``%h:%p`` on the tailnet (None: the controller is on the tailnet and
    routes there itself), and the port sshd answers on there (None: the host record's)."""

    proxy_command: str | None = None
    ssh_port: int | None = None


@runtime_checkable
class MeshCloud(Protocol):
    """Optional for a cloud (capability ``mesh_server``): it runs the tailnet's control
    server for its environments, and a node on the controller to reach them through."""

    def mesh_server(self, spec: FleetSpec, state_dir: Path, log: Log) -> MeshServer:
        """Start the environment's control server (and the controller's node) unless
        they run; make the user and a reusable pre-auth key on first use. Idempotent."""
        ...

    def mesh_route(self, spec: FleetSpec, state_dir: Path) -> MeshRoute:
        """How the controller reaches the environment's tailnet addresses."""
        ...


def mesh_route(cloud: object, spec: FleetSpec, state_dir: Path) -> MeshRoute:
    """The cloud's way onto the tailnet; a cloud that runs none leaves it to the
    controller (Tailscale running on it)."""
    if isinstance(cloud, MeshCloud):
        return cloud.mesh_route(spec, state_dir)
    return MeshRoute()


def cloud_resources(cloud: object, spec: FleetSpec, state_dir: Path) -> CloudResources:
    """What ``cloud`` reports besides hosts: nothing when it is no ResourceReporter."""
    if isinstance(cloud, ResourceReporter):
        return cloud.resources(spec, state_dir)
    return CloudResources()
