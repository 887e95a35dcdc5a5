"""The ``local`` cloud provider (PROVIDER_CLOUD_LOCAL): hosts are containers on this machine.

Each host is a container of the host image running systemd as PID 1 and sshd,
able to run Docker inside (the flags of HOST_RUN_FLAGS, never --privileged), attached
to a private Docker network that plays the VPC. SSH is published on 127.0.0.1 at a
fixed port per host; the environment's key pair and pinned host keys live in its
state directory, next to hosts.json.

Docker itself is the inventory: containers carry labels (project, environment,
host, roles), so ``status`` and ``down`` find every container ``up`` made, even
without hosts.json.

Each environment also gets a registry (TLS from the environment's CA, basic auth)
on its network, see :mod:`stagecraft.providers.cloud.local.registry`, and edge
hosts publish their ports 80 and 443 on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from stagecraft import steps
from stagecraft.doctor.model import Check
from stagecraft.errors import EnvironmentMissing, ProviderError, StateError
from stagecraft.fsutil import exclusive_lock, write_atomic
from stagecraft.hosts.ssh import sshd_answers
from stagecraft.providers.cloud.base import (
    ABSENT,
    CREATED,
    MISSING,
    ORPHANED,
    REMOVED,
    RUNNING,
    STARTED,
    STOPPED,
    UNCHANGED,
    CloudCapabilities,
    CloudChange,
    CloudPlan,
    CloudResources,
    Confirm,
    DownResult,
    FleetSpec,
    HostRecord,
    HostSpec,
    Log,
    MeshRoute,
    MeshServer,
    Provisioner,
    RegistryAccess,
    SshAccess,
    StateFiles,
    host_key_names,
    known_hosts_text,
    plan_from_status,
    read_hosts_file,
    refuse_prune,
    remove_files,
    write_hosts_file,
)
from stagecraft.providers.cloud import keys
from stagecraft.providers.cloud.local import addressing, inotify, loopdev, registry, tailnet
from stagecraft.providers.cloud.local import doctor as local_doctor
from stagecraft.providers.cloud.local.dockercli import docker, exists, raise_for, tail
from stagecraft.providers.cloud.local.host_image import cache_dir, ensure_host_image
from stagecraft.providers.cloud.local.mesh_binaries import ensure_mesh_binaries
from stagecraft.providers.cloud.local.service_images import (
    POSTGRES_REPO,
    RUNTIME_REPO,
    TRAEFIK_DIR,
    TRAEFIK_REPO,
    context_hash,
    ensure_postgres_image,
    ensure_runtime_image,
    ensure_traefik_image,
    traefik_binary,
    traefik_version,
)
from stagecraft.infra.tls import ca_directory, load_ca

KIND = "local"
SSH_USER = "root"  # as on a fresh droplet; the bootstrap role adds the deploy user
SSH_BIND = "127.0.0.1"  # never on other interfaces: tests and demos stay on this machine

LABEL_CLOUD = "org.stagecraft.cloud"
LABEL_PROJECT = "org.stagecraft.project"
LABEL_ENV = "org.stagecraft.environment"
LABEL_HOST = "org.stagecraft.host"
LABEL_ROLES = "org.stagecraft.roles"

#: Hosts with this role get their ports 80 and 443 published on 127.0.0.1.
EDGE_ROLE = "edge"

#: The flags that let systemd boot as PID 1 and dockerd run inside a host container,
#: without --privileged (which fails on machines whose capability bounding set lacks
#: CAP_SYS_RESOURCE); docs/architecture.md ("The local cloud") explains them. An
#: engine's policy may refuse these, so hints name them.
HOST_ENGINE_FLAGS = (
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
)
#: The TUN device hosts get when they join a tailnet.
TUN_DEVICE = "/dev/net/tun"

#: Every flag a host container runs with.
HOST_RUN_FLAGS = (
    *HOST_ENGINE_FLAGS,
    "--tmpfs", "/run", "--tmpfs", "/run/lock",
    # An anonymous volume: the inner dockerd cannot put overlayfs on overlayfs.
    # `docker rm -v` removes it with the host.
    "-v", "/var/lib/docker",
    "-e", "container=docker",
)

#: What hints say a host container needs from the Docker Engine.
ENGINE_MUST_ALLOW = (f"`docker run {' '.join(HOST_ENGINE_FLAGS)}` "
                     "(stagecraft never uses --privileged)")

#: Where the volumes role mounts block volumes (as DigitalOcean does): /mnt/<volume>.
#: The local cloud itself only hands each host the block device (see loopdev).
VOLUME_MOUNT_ROOT = "/mnt"

_PORT_TAKEN = ("port is already allocated", "address already in use")
_POOL_OVERLAP = ("overlaps with other one", "pool overlaps")
_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class _Container:
    """What ``docker inspect`` tells about one host container."""

    id: str
    name: str
    host: str
    roles: tuple[str, ...]
    status: str  # docker's: created, running, paused, restarting, exited, dead
    ip: str | None
    ssh_port: int | None
    http_port: int | None = None
    https_port: int | None = None
    public_ip: str | None = None  # on the environment's public network

    @property
    def state(self) -> str:
        return RUNNING if self.status == "running" else STOPPED


class LocalCloud:
    """Hosts as containers on this machine's Docker Engine. See spec/providers/cloud-local.md."""

    kind = KIND
    # No registry can be reached from the machines this runs on: the local cloud runs
    # its own, publishes Traefik there, and builds the base images apps start FROM;
    # for network headscale it runs the control server too.
    capabilities = CloudCapabilities(registry=True, traefik_image=True,
                                     base_images=(RUNTIME_REPO, POSTGRES_REPO),
                                     disposable_hosts=True, default_tls="local",
                                     mesh_server=True)

    def __init__(self, image: str = "debian-13", ready_timeout: float = 120.0,
                 registry: bool = True, image_tag: str | None = None) -> None:
        """``image``: the host image, ``debian-13`` (bare, like a fresh droplet) or
        ``docker`` (the packages bootstrap installs already there).
        ``image_tag``: an image tag to use instead of building one.
        ``ready_timeout``: seconds to wait for all hosts' sshd after they start.
        ``registry``: run the environment's registry (False: hosts only, for tests
        and fleets that never deploy).
        Volume sizes come from the spec (``FleetSpec.volume_sizes``); a volume it
        does not size gets loopdev.DEFAULT_SIZE_GB.
        """
        self.image = image
        self.image_tag = image_tag
        self.ready_timeout = ready_timeout
        self.registry = registry

    # ----------------------------------------------------------------- public API

    def controller_checks(self) -> list[Check]:
        """debootstrap or a debian:trixie image; the host and runtime images built or not."""
        return local_doctor.controller_checks()

    def prepare_controller(self, log: Log) -> list[str]:
        """Build every image the local cloud runs (each only when missing)."""
        return local_doctor.prepare_controller(log)

    def bootstrap_vars(self, spec: FleetSpec, state_dir: Path) -> dict[str, Any]:
        """Variables the bootstrap role needs on containers-as-hosts (not on real hosts).

        dockerd inside a container cannot start containers unless it may leave IPv6
        on an IPv4-only interface (DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1, see
        docs/architecture.md); Debian's docker.io is installed from
        the mirror the hosts reach (Docker's own apt repository is not reachable);
        root keeps key-only SSH because the local cloud connects as root. When `up`
        made the environment's registry, hosts learn its pull address and trust its
        CA (Docker's certs.d and the system trust store).
        """
        variables: dict[str, Any] = {
            "bootstrap_docker_environment": {"DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE": "1"},
            "bootstrap_docker_source": "distro",
            "bootstrap_sshd_permit_root_login": "prohibit-password",
            # Hosts lack CAP_SYS_RESOURCE, without which ext4 cannot grow mounted.
            "volumes_grow_offline": True,
        }
        # The firewall's private side is the environment's network. The controller's
        # SSH arrives there too (from the bridge's gateway, through the port published
        # on 127.0.0.1), as it would over a tailnet or from inside a VPC; the scans of
        # the public side come from the public network's gateway.
        document = read_hosts_file(StateFiles(Path(state_dir)))
        subnet = ((document or {}).get("network") or {}).get("subnet")
        if subnet:
            variables["firewall_private_cidrs"] = [str(subnet)]
        info = registry.read_info(Path(state_dir))
        if info is not None:
            variables["bootstrap_registry_server"] = str(info["pull_server"])
            variables["bootstrap_registry_ca_pem"] = load_ca(Path(state_dir)).cert_pem
        if spec.mesh:
            # No host reaches Tailscale's apt repository: they get the controller's
            # binaries, and tailscaled uploads no logs.
            binaries = ensure_mesh_binaries()
            variables["tailscale_install_method"] = "binaries"
            variables["tailscale_binaries_dir"] = str(binaries.tailscale.parent)
            variables["tailscale_daemon_flags"] = ["--no-logs-no-support"]
        return variables

    def mesh_server(self, spec: FleetSpec, state_dir: Path, log: Log) -> MeshServer:
        """The environment's Headscale and the controller's node (tailnet.py)."""
        document = read_hosts_file(StateFiles(Path(state_dir))) or {}
        subnet = (document.get("network") or {}).get("subnet")
        if not subnet:
            raise StateError(f"environment {spec.environment} of {spec.project} has no "
                             "network yet", hint="create its hosts first: stagecraft infra up")
        net = addressing.network_name(spec.project, spec.environment)
        return tailnet.ensure_tailnet(spec.project, spec.environment, Path(state_dir), net,
                                      IPv4Network(subnet), _env_labels(spec), log,
                                      tags=spec.mesh_tags)

    def mesh_route(self, spec: FleetSpec, state_dir: Path) -> MeshRoute:
        """Through the controller's node: ``docker exec -i <node> tailscale nc %h %p``."""
        return tailnet.route(spec.project, spec.environment)

    def registry_access(self, spec: FleetSpec, state_dir: Path) -> RegistryAccess:
        """Servers, credentials and CA of the environment's registry.

        ``push_server`` is ``127.0.0.1:<port>`` (for the controller), ``pull_server``
        ``<subnet>.128:5000`` (for hosts). Raises ProviderError when the registry is
        not running (the fleet is not up).
        """
        return registry.registry_access(spec, Path(state_dir))

    def publish_traefik_image(self, spec: FleetSpec, state_dir: Path, *,
                              log: Log | None = None) -> str:
        """Build (if needed) stagecraft/traefik and push it to the environment's registry.

        Returns ``<pull_server>/stagecraft/traefik:<version>@sha256:<digest>``.
        Idempotent: a second call pushes no layer and returns the same reference.
        The reference is kept in the state dir, keyed by the registry container and
        the Traefik binary: every deploy asks for it, and hashing the binary and
        pushing cost a second or more.
        """
        log = log or _quiet
        cache = Path(state_dir) / "traefik-image.json"
        key = _traefik_cache_key(spec, Path(state_dir))
        try:
            cached = json.loads(cache.read_text())
            if cached.get("key") == key and cached.get("reference"):
                return str(cached["reference"])
        except (OSError, ValueError):
            pass
        access = self.registry_access(spec, state_dir)
        image = ensure_traefik_image(log)
        reference = registry.push(access, image, TRAEFIK_REPO, traefik_version(), log=log)
        if key is not None:
            write_atomic(cache, json.dumps({"key": key, "reference": reference}) + "\n")
        return reference

    def ensure_base_image(self, name: str, log: Log | None = None) -> str:
        """Build stagecraft/runtime or stagecraft/postgres on this machine if needed."""
        builders = {RUNTIME_REPO: ensure_runtime_image, POSTGRES_REPO: ensure_postgres_image}
        if name not in builders:
            raise ProviderError(f"the local cloud builds no base image named {name}",
                                hint=f"use one of {', '.join(sorted(builders))}")
        return builders[name](log)

    def ssh_access(self, spec: FleetSpec, state_dir: Path) -> SshAccess:
        """The environment's key pair and pinned known_hosts, and the user (root)."""
        files = StateFiles(Path(state_dir))
        return SshAccess(user=SSH_USER, private_key=files.private_key,
                         known_hosts=files.known_hosts)

    def plan(self, spec: FleetSpec, state_dir: Path, *, prune: bool = False,
             down: bool = False, log: Log | None = None) -> CloudPlan:
        """What ``up`` (or ``down``) would do to each host, from ``status``."""
        records = self.status(spec, state_dir)
        if down:
            return CloudPlan(tuple(CloudChange("host", r.name, "delete", r.state)
                                   for r in records if r.state != MISSING))
        return plan_from_status(records)  # `up --prune` is refused here: see up

    def volume_device(self, spec: FleetSpec, host: str, volume: str) -> str | None:
        """None: the loop device is passed to the host at DigitalOcean's path of the
        volume's name (loopdev.py), which is where the volumes role looks by default."""
        return None

    def up(self, spec: FleetSpec, state_dir: Path, *, log: Log | None = None,
           confirm: Confirm | None = None, prune: bool = False,
           provisioner: Provisioner | None = None) -> list[HostRecord]:
        """Create, start and wait for every host of ``spec``; write hosts.json and known_hosts.

        ``confirm`` is never asked: the host keys are read through ``docker exec``, a
        channel this machine already trusts.

        Returns one record per spec host (change: created, started or unchanged)
        followed by orphans (containers of this environment no longer in the spec;
        change "orphaned", kept running, left out of hosts.json).
        """
        log = log or _quiet
        if prune:
            refuse_prune(KIND, [c.host for c in _list_containers(spec)
                                if spec.host(c.host) is None])
        files = StateFiles(Path(state_dir))
        net = addressing.network_name(spec.project, spec.environment)
        reserved = [h.name for h in spec.hosts if h.name in addressing.RESERVED_HOST_NAMES]
        if reserved:
            raise ProviderError(
                f"environment {spec.environment}: the local cloud keeps the host name "
                f"{reserved[0]!r} for itself (it names the environment's registry container)",
                hint="rename that host in stagecraft.yml",
            )
        with _env_lock(net, log):
            started = time.monotonic()
            image = self.image_tag or ensure_host_image(log=log, flavour=self.image)
            public_key = keys.ensure_key_pair(files, comment=net)
            subnet = self._ensure_network(spec, net, log)
            public_net = addressing.public_network_name(spec.project, spec.environment)
            public_subnet = self._ensure_network(spec, public_net, log, public=True)
            extra: dict[str, Any] = {}
            if self.registry:
                # Before the hosts: the registry's address is taken before anything
                # else attaches to the network.
                made = registry.ensure_registry(
                    spec, Path(state_dir), net, subnet, _env_labels(spec), _taken_ports(), log)
                extra["registry"] = {"container": made.container,
                                     "push_server": made.push_server,
                                     "pull_server": made.pull_server}
            existing = {c.host: c for c in _list_containers(spec)}
            _check_inotify_room(sum(1 for h in spec.hosts if h.name not in existing))
            changes: dict[str, str] = {}
            for index, host in enumerate(spec.hosts):
                found = existing.get(host.name)
                # Before a host (re)starts: its devices must exist when Docker resolves them.
                devices = self._attach_volumes(spec, host, Path(state_dir), found, log)
                if found is None:
                    self._create(spec, host, index, image, net, subnet, devices, log)
                    changes[host.name] = CREATED
                elif found.status == "running":
                    changes[host.name] = UNCHANGED
                else:
                    _start_container(found, log)
                    changes[host.name] = STARTED
                existing = {c.host: c for c in _list_containers(spec)}
                if existing[host.name].public_ip is None:
                    _connect_public(existing[host.name], public_net, public_subnet, index, log)
                    existing = {c.host: c for c in _list_containers(spec)}
            wanted = [existing[h.name] for h in spec.hosts]
            host_keys = self._wait_ready(wanted, public_key, log)
            records = [
                _record(existing[h.name], h.roles, h.size, changes[h.name]) for h in spec.hosts
            ]
            orphans = [
                replace(_record(c, c.roles, None, ORPHANED), in_spec=False)
                for c in existing.values() if spec.host(c.host) is None
            ]
            for orphan in orphans:
                log(f"host {orphan.name} is not in the environment any more; it keeps "
                    "running until `stagecraft infra down` (or remove it yourself: "
                    f"docker rm -fv {orphan.provider_id})")
            self._write_known_hosts(files, spec, records, host_keys)
            write_hosts_file(
                files, provider=KIND, spec=spec, records=records,
                ssh=self.ssh_access(spec, state_dir),
                extra={"network": {"name": net, "subnet": str(subnet),
                                   "gateway": str(addressing.gateway(subnet))},
                       "public_network": {"name": public_net, "subnet": str(public_subnet),
                                          "gateway": str(addressing.gateway(public_subnet))},
                       "image": image, **extra},
            )
            made = sum(1 for c in changes.values() if c != UNCHANGED)
            log(f"{len(records)} host(s) ready ({made} created or started) in "
                f"{time.monotonic() - started:.1f} s")
            return records + orphans

    def bootstrapped(self, spec: FleetSpec, state_dir: Path, names: Sequence[str],
                     deploy_user: str) -> None:
        """Nothing to record: the local cloud keeps connecting as root."""

    def status(self, spec: FleetSpec, state_dir: Path) -> list[HostRecord]:
        """Every spec host as Docker sees it (running/stopped/missing), then orphans.

        Roles come from the spec; a missing host keeps the addresses hosts.json
        last recorded for it, so a user sees what is gone.
        """
        files = StateFiles(Path(state_dir))
        document = read_hosts_file(files)
        recorded = {r.name: r for r in document["hosts"]} if document else {}
        containers = {c.host: c for c in _list_containers(spec)}
        records = []
        for host in spec.hosts:
            found = containers.get(host.name)
            if found is not None:
                records.append(_record(found, host.roles, host.size, None))
                continue
            before = recorded.get(host.name)
            records.append(HostRecord(
                name=host.name, roles=host.roles, state=MISSING,
                ssh_host=before.ssh_host if before else None,
                ssh_port=before.ssh_port if before else None,
                ssh_user=SSH_USER,
                private_ip=before.private_ip if before else None,
                provider_id=None, provider=KIND, size=host.size,
            ))
        records += [
            replace(_record(c, c.roles, None, None), in_spec=False)
            for c in containers.values() if spec.host(c.host) is None
        ]
        return records

    def resources(self, spec: FleetSpec, state_dir: Path) -> CloudResources:
        """The environment's volumes: files on loop devices (volumes.json); no cloud
        firewall (each host's own nftables is the firewall role's)."""
        record = loopdev.read_record(Path(state_dir))
        present = {host: {volume: entry for volume, entry in volumes.items()
                          if Path(str(entry.get("file"))).exists()}
                   for host, volumes in record.items()}
        return CloudResources(volumes=loopdev.volume_statuses(spec, present))

    def down(self, spec: FleetSpec, state_dir: Path, *, log: Log | None = None,
             provisioner: Provisioner | None = None) -> DownResult:
        """Remove the environment's containers (with their anonymous volumes), its named
        volumes, its network, and hosts.json, known_hosts and the key pair.

        The key pair goes too: it only ever authorized these hosts, and a new ``up``
        makes a new one. A second call finds nothing and returns ``changed == False``.
        """
        log = log or _quiet
        files = StateFiles(Path(state_dir))
        net = addressing.network_name(spec.project, spec.environment)
        removed: list[str] = []
        with _env_lock(net, log):
            # A list, not a dict by host name: every labelled container goes, even a
            # duplicate someone made by hand.
            containers = _list_containers(spec)
            hosts: list[HostRecord] = []
            for container in containers:
                name = container.host
                log(f"removing host {name} (container {container.name})")
                docker("rm", "-fv", container.id,
                       what=f"remove host {name} (container {container.name})", timeout=120)
                in_spec = spec.host(name) is not None
                hosts.append(replace(_record(container, container.roles, None, REMOVED),
                                     state=MISSING, in_spec=in_spec))
            gone = {c.host for c in containers}
            for host in spec.hosts:
                if host.name not in gone:
                    hosts.append(HostRecord(
                        name=host.name, roles=host.roles, state=MISSING, ssh_host=None,
                        ssh_port=None, ssh_user=SSH_USER, private_ip=None, provider_id=None,
                        provider=KIND, size=host.size, change=ABSENT,
                    ))
            removed += registry.remove_registry(spec, Path(state_dir), log)
            removed += tailnet.remove_tailnet(spec.project, spec.environment, Path(state_dir), log)
            # After the containers: a loop device in use by none detaches at once.
            removed += loopdev.detach_all(Path(state_dir), log=log)
            # Docker volumes of environments made before volumes were loop devices.
            for volume in _list_volumes(spec):
                docker("volume", "rm", volume, what=f"remove volume {volume}", timeout=60)
                removed.append(f"volume {volume}")
            if _remove_network(net):
                removed.append(f"network {net}")
            public_net = addressing.public_network_name(spec.project, spec.environment)
            if _remove_network(public_net):
                removed.append(f"network {public_net}")
            for path in remove_files([files.hosts, files.known_hosts, files.private_key,
                                     files.public_key]):
                removed.append(f"file {path}")
            # The CA was trusted only by the hosts just removed; the next `up` makes a new one.
            ca_dir = ca_directory(files.state_dir)
            for path in remove_files(sorted(ca_dir.glob("*"))):  # pathlib's * matches .lock too
                if not path.name.startswith("."):
                    removed.append(f"file {path}")
            with contextlib.suppress(OSError):
                ca_dir.rmdir()
            with contextlib.suppress(OSError):  # only when nothing else lives there
                files.state_dir.rmdir()
        order = {h.name: i for i, h in enumerate(spec.hosts)}
        hosts.sort(key=lambda r: (order.get(r.name, len(order)), r.name))
        result = DownResult(hosts=tuple(hosts), removed=tuple(removed))
        if not result.changed:
            log(f"nothing to remove: environment {spec.environment} of {spec.project} has no hosts")
        return result

    # ------------------------------------------------------------------ network

    def _ensure_network(self, spec: FleetSpec, net: str, log: Log, *,
                        public: bool = False) -> IPv4Network:
        found = _inspect_network(net)
        if found is not None:
            labels = found.get("Labels") or {}
            if labels.get(LABEL_CLOUD) != KIND:
                raise ProviderError(
                    f"a Docker network named {net} exists but was not made by stagecraft",
                    hint=f"remove or rename it (`docker network rm {net}`), then run again",
                )
            return _network_subnet(found, net)
        taken = _taken_subnets()
        key = f"{spec.project}/{spec.environment}" + ("/public" if public else "")
        what = "public" if public else "private"
        for _attempt in range(10):
            subnet = addressing.choose_subnet(key, taken)
            proc = docker(
                "network", "create", "--driver", "bridge",
                "--subnet", str(subnet), "--gateway", str(addressing.gateway(subnet)),
                "--ip-range", str(addressing.dynamic_range(subnet)),
                "--label", f"{LABEL_CLOUD}={KIND}",
                "--label", f"{LABEL_PROJECT}={spec.project}",
                "--label", f"{LABEL_ENV}={spec.environment}",
                net,
                what=f"create the {what} network {net}", check=False, timeout=60,
            )
            if proc.returncode == 0:
                log(f"created network {net} ({subnet})")
                return subnet
            if any(m in proc.stderr.lower() for m in _POOL_OVERLAP):
                # Another process took this subnet since we listed the networks.
                taken.append(subnet)
                continue
            if "already exists" in proc.stderr:
                # A concurrent `up` of the same environment on another lock dir: reuse.
                found = _inspect_network(net)
                if found is not None:
                    return _network_subnet(found, net)
            raise_for(proc, what=f"create the {what} network {net} ({subnet})",
                      hint="check `docker network ls` for a network that overlaps it")
        raise ProviderError(
            f"cannot create the {what} network {net}: every subnet tried overlapped another",
            hint="remove unused Docker networks (`docker network prune`)",
        )

    # ---------------------------------------------------------------- containers

    def _create(self, spec: FleetSpec, host: HostSpec, index: int, image: str, net: str,
                subnet: IPv4Network, devices: list[str], log: Log) -> None:
        name = addressing.container_name(spec.project, spec.environment, host.name)
        if exists("container", name):
            raise ProviderError(
                f"host {host.name}: a container named {name} exists but does not carry "
                f"the labels of {spec.project}/{spec.environment}",
                hint=f"it was not made by `stagecraft infra up`: remove it "
                f"(`docker rm -fv {name}`)",
            )
        ip = addressing.host_ip(subnet, index, _network_addresses(net))
        volumes: list[str] = []
        for device in devices:
            volumes += ["--device", device]
        if spec.mesh:  # tailscaled's interface (tailscale0) is a TUN device
            volumes += ["--device", TUN_DEVICE]
        taken_ports = _taken_ports()
        key = f"{spec.project}/{spec.environment}/{host.name}"
        for _attempt in range(10):
            port = addressing.choose_port(key, taken_ports)
            published = {22: port}
            if EDGE_ROLE in host.roles:
                for container_port, suffix in ((80, "http"), (443, "https")):
                    published[container_port] = addressing.choose_port(
                        f"{key}/{suffix}", taken_ports | set(published.values()),
                        addressing.PUBLISHED_PORT_RANGE)
            busy = {p for p in published.values() if not _port_free(p)}
            if busy:
                taken_ports |= busy
                continue
            port_args: list[str] = []
            for container_port, host_port in published.items():
                port_args += ["-p", f"{SSH_BIND}:{host_port}:{container_port}"]
            argv = [
                "run", "-d", "--name", name, "--hostname", host.name,
                "--label", f"{LABEL_CLOUD}={KIND}",
                "--label", f"{LABEL_PROJECT}={spec.project}",
                "--label", f"{LABEL_ENV}={spec.environment}",
                "--label", f"{LABEL_HOST}={host.name}",
                "--label", f"{LABEL_ROLES}={','.join(host.roles)}",
                *HOST_RUN_FLAGS,
                "--network", net, "--ip", str(ip),
                *port_args,
                *volumes,
                image, "/sbin/init",
            ]
            proc = docker(*argv, what=f"create host {host.name}", check=False, timeout=120)
            if proc.returncode == 0:
                web = (f", http {published[80]}, https {published[443]}"
                       if 80 in published else "")
                log(f"created host {host.name} ({ip}, ssh {SSH_BIND}:{port}{web})")
                return
            # A failed `docker run -d` can leave a created-but-not-started container.
            docker("rm", "-fv", name, what=f"clean up the failed host {host.name}",
                   check=False, timeout=60)
            if any(m in proc.stderr.lower() for m in _PORT_TAKEN):
                # Which of them was taken is not said: try other ones for all.
                taken_ports |= set(published.values())
                continue
            raise_for(proc, what=f"create host {host.name} (container {name})",
                      hint=f"check that the image {image} exists (`docker image ls "
                      f"stagecraft/host`) and that the engine allows {ENGINE_MUST_ALLOW}")
        raise ProviderError(
            f"host {host.name}: every port tried on {SSH_BIND} was taken",
            hint="free some ports in 22000-22999 (SSH) and 23000-25999 (web) or remove "
            "unused local environments",
        )

    def _attach_volumes(self, spec: FleetSpec, host: HostSpec, state_dir: Path,
                        found: _Container | None, log: Log) -> list[str]:
        """Attach the host's volume files to loop devices; the ``--device`` values.

        A running or stopped host made without one of these devices cannot get it
        (Docker fixes a container's devices when it is made): say how to recreate it.
        """
        devices = []
        for volume in host.volumes:
            size = spec.volume_sizes.get(volume, loopdev.DEFAULT_SIZE_GB)
            attached = loopdev.attach(state_dir, host.name, volume, size, log=log)
            devices.append(attached.device_arg)
        if found is not None and devices:
            missing = sorted(set(devices) - set(_devices_of(found.id)))
            if missing:
                log(f"host {host.name} was made without the device of "
                    f"{', '.join(d.rsplit('_', 1)[-1] for d in missing)}; recreate it to "
                    f"attach it: `docker rm -fv {found.name}` then `stagecraft infra up` "
                    "(volume files are kept until `infra down`)")
        return devices

    def _wait_ready(self, containers: list[_Container], public_key: str,
                    log: Log) -> dict[str, str]:
        """Wait until each host's sshd runs and answers on its port; authorize our key.

        Returns host name -> its ed25519 host key, read through ``docker exec`` (a
        channel we already trust), for known_hosts.
        """
        deadline = time.monotonic() + self.ready_timeout
        pending = {c.host: c for c in containers}
        host_keys: dict[str, str] = {}
        last_output: dict[str, str] = {}
        if not pending:
            return host_keys
        with steps.step(log, f"waiting for sshd on {', '.join(pending)}") as current:
            return self._poll_ready(pending, public_key, deadline, host_keys, last_output,
                                    current)

    def _poll_ready(self, pending: dict[str, _Container], public_key: str, deadline: float,
                    host_keys: dict[str, str], last_output: dict[str, str],
                    current: steps.Step) -> dict[str, str]:
        while pending:
            for name, container in list(pending.items()):
                proc = docker(
                    "exec", container.id, "sh", "-c",
                    "systemctl is-active --quiet ssh.service "
                    "&& cat /etc/ssh/ssh_host_ed25519_key.pub",
                    what=f"check sshd on host {name}", check=False, timeout=30,
                )
                if proc.returncode != 0:
                    last_output[name] = (proc.stderr or proc.stdout).strip()
                    if "is not running" in proc.stderr:
                        _raise_stopped(container)
                    continue
                if container.ssh_port is None or not sshd_answers(SSH_BIND, container.ssh_port):
                    last_output[name] = f"no SSH banner on {SSH_BIND}:{container.ssh_port} yet"
                    continue
                _authorize_key(container, public_key)
                host_keys[name] = " ".join(proc.stdout.split()[:2])
                del pending[name]
            if not pending:
                break
            if time.monotonic() > deadline:
                name, container = next(iter(pending.items()))
                raise ProviderError(
                    f"host {name}: sshd did not come up within {self.ready_timeout:g} s "
                    f"(last: {last_output.get(name) or 'no answer'})",
                    hint=f"look inside: `docker exec {container.name} systemctl status ssh` "
                    f"and `docker exec {container.name} journalctl -b --no-pager | tail`",
                )
            current.note("; ".join(f"{name}: {last_output.get(name) or 'booting'}"
                                   for name in pending))
            time.sleep(_POLL_SECONDS)
        return host_keys

    def _write_known_hosts(self, files: StateFiles, spec: FleetSpec, records: list[HostRecord],
                           host_keys: dict[str, str]) -> None:
        entries = []
        for record in records:
            assert record.ssh_host is not None and record.ssh_port is not None
            entries.append((host_key_names(record.ssh_host, record.ssh_port,
                                                record.private_ip), host_keys[record.name]))
        header = (f"Host keys of {spec.project}/{spec.environment} (local cloud), read from "
                  "each host by `stagecraft infra up`.\nRewritten by every `infra up`; "
                  "do not edit.")
        write_atomic(files.known_hosts, known_hosts_text(header, entries))


# ------------------------------------------------------------------- docker queries


def _quiet(_: str) -> None:
    pass


def _env_lock(net: str, log: Log) -> contextlib.AbstractContextManager[None]:
    """One `up`/`down` per environment at a time, machine-wide (the engine is machine-wide)."""
    return exclusive_lock(cache_dir() / "locks" / f"{net}.lock",
                          f"waiting for another `infra up/down` of {net} to finish", log)


def _check_inotify_room(new_hosts: int) -> None:
    """Refuse hosts the kernel's inotify limit has no room for (see inotify.py): they
    would boot, and their Traefik would then never load a servers file."""
    if new_hosts <= 0:
        return
    in_use = inotify.instances_in_use()
    if in_use is None:
        # Not root: the processes' descriptors are closed to us; count the hosts.
        running = docker("ps", "-q", "--filter", f"label={LABEL_CLOUD}={KIND}",
                         "--filter", f"label={LABEL_HOST}", what="count the local cloud's hosts",
                         timeout=60).stdout.split()
        in_use = len(running) * inotify.PER_HOST
    problem = inotify.room_problem(new_hosts, in_use, inotify.read_limit("max_user_instances"))
    if problem:
        raise ProviderError(problem, hint=inotify.fix_hint())


def _list_containers(spec: FleetSpec) -> list[_Container]:
    """Every container (running or not) labelled as a host of this environment."""
    proc = docker(
        "ps", "-a", "-q", "--no-trunc",
        "--filter", f"label={LABEL_CLOUD}={KIND}",
        "--filter", f"label={LABEL_PROJECT}={spec.project}",
        "--filter", f"label={LABEL_ENV}={spec.environment}",
        # Hosts only: the environment's registry carries the other labels too.
        "--filter", f"label={LABEL_HOST}",
        what=f"list the hosts of {spec.project}/{spec.environment}", timeout=60,
    )
    ids = proc.stdout.split()
    if not ids:
        return []
    net = addressing.network_name(spec.project, spec.environment)
    proc = docker("inspect", *ids, what=f"inspect the hosts of {spec.project}/{spec.environment}",
                  check=False, timeout=60)
    # A container removed between ps and inspect makes inspect fail for it alone:
    # stdout still has the others.
    try:
        data = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError as exc:
        raise ProviderError(
            f"`docker inspect` returned no JSON for the hosts of {spec.project}/{spec.environment}",
            hint="check `docker info`; run the command again",
        ) from exc
    containers = [_parse_container(item, net) for item in data]
    containers.sort(key=lambda c: c.host)
    return containers


def _parse_container(item: dict[str, Any], net: str) -> _Container:
    labels = item.get("Config", {}).get("Labels") or {}
    networks = item.get("NetworkSettings", {}).get("Networks") or {}
    endpoint = networks.get(net) or {}
    # The static address is in IPAMConfig even while the container is stopped.
    ip = (endpoint.get("IPAMConfig") or {}).get("IPv4Address") or endpoint.get("IPAddress") or None
    ports = _published_ports(item)
    roles = tuple(r for r in (labels.get(LABEL_ROLES) or "").split(",") if r)
    return _Container(
        id=item["Id"],
        name=item.get("Name", "").lstrip("/"),
        host=labels.get(LABEL_HOST, item.get("Name", "").lstrip("/")),
        roles=roles,
        status=item.get("State", {}).get("Status", "unknown"),
        ip=ip,
        ssh_port=ports.get(22),
        http_port=ports.get(80),
        https_port=ports.get(443),
        public_ip=_endpoint_ip(networks.get(net + addressing.PUBLIC_SUFFIX) or {}),
    )


def _published_ports(item: dict[str, Any]) -> dict[int, int]:
    """Container port -> the host port it is published on (TCP), from `docker inspect`."""
    ports: dict[int, int] = {}
    for key, bindings in (item.get("HostConfig", {}).get("PortBindings") or {}).items():
        number, _, protocol = key.partition("/")
        if protocol == "tcp" and bindings and bindings[0].get("HostPort"):
            ports[int(number)] = int(bindings[0]["HostPort"])
    return ports


def _env_labels(spec: FleetSpec) -> dict[str, str]:
    """The labels every container and volume of the environment carries."""
    return {LABEL_CLOUD: KIND, LABEL_PROJECT: spec.project, LABEL_ENV: spec.environment}


def _record(c: _Container, roles: tuple[str, ...], size: str | None,
            change: str | None) -> HostRecord:
    return HostRecord(
        name=c.host, roles=tuple(roles), state=c.state,
        ssh_host=SSH_BIND if c.ssh_port else None, ssh_port=c.ssh_port, ssh_user=SSH_USER,
        private_ip=c.ip, provider_id=c.id[:12], provider=KIND, size=size, change=change,
        http_port=c.http_port, https_port=c.https_port, public_ip=c.public_ip,
    )


def _endpoint_ip(endpoint: dict[str, Any]) -> str | None:
    # The static address is in IPAMConfig even while the container is stopped.
    return (endpoint.get("IPAMConfig") or {}).get("IPv4Address") or endpoint.get("IPAddress") or None


def _connect_public(container: _Container, net: str, subnet: IPv4Network, index: int,
                    log: Log) -> None:
    """Attach a host to the environment's public network at .10+index (a second
    interface, eth1). Attached after the private network, and named to sort after it,
    so the private network stays the gateway endpoint (see addressing.PUBLIC_SUFFIX)."""
    ip = addressing.host_ip(subnet, index, _network_addresses(net))
    docker("network", "connect", "--ip", str(ip), net, container.id,
           what=f"attach host {container.host} to the public network {net}", timeout=60)
    log(f"attached host {container.host} to {net} ({ip})")


def _start_container(container: _Container, log: Log) -> None:
    # A paused container cannot be started, only unpaused.
    verb = "unpause" if container.status == "paused" else "start"
    log(f"starting host {container.host} (was {container.status})")
    docker(verb, container.id, what=f"start host {container.host} (container {container.name})",
           timeout=120,
           hint=f"see `docker logs {container.name}`; `stagecraft infra down` then "
           "`infra up` makes it anew")


def _raise_stopped(container: _Container) -> None:
    logs = docker("logs", "--tail", "20", container.id, what=f"read the log of {container.name}",
                  check=False, timeout=30)
    raise ProviderError(
        f"host {container.host}: container {container.name} stopped while booting: "
        f"{tail(logs.stdout + logs.stderr, 400) or 'no log output'}",
        hint=f"see `docker logs {container.name}`; check that the engine allows "
        f"{ENGINE_MUST_ALLOW}",
    )


def _authorize_key(container: _Container, public_key: str) -> None:
    # The key arrives on stdin, so no quoting of it ever reaches a shell.
    script = (
        'umask 077; mkdir -p /root/.ssh; f=/root/.ssh/authorized_keys; touch "$f"; '
        'IFS= read -r key; grep -qxF "$key" "$f" || printf "%s\\n" "$key" >> "$f"'
    )
    docker("exec", "-i", container.id, "sh", "-c", script, input=public_key + "\n",
           what=f"authorize the environment's SSH key on host {container.host}", timeout=30)



def _inspect_network(net: str) -> dict[str, Any] | None:
    proc = docker("network", "inspect", net, what=f"inspect network {net}", check=False,
                  timeout=30)
    if proc.returncode != 0:
        if "No such network" in proc.stderr or "not found" in proc.stderr:
            return None
        raise_for(proc, what=f"inspect network {net}")
    data = json.loads(proc.stdout)
    return data[0] if data else None


def _network_subnet(found: dict[str, Any], net: str) -> IPv4Network:
    for config in (found.get("IPAM") or {}).get("Config") or []:
        subnet = config.get("Subnet")
        if subnet and ":" not in subnet:
            return IPv4Network(subnet)
    raise ProviderError(
        f"network {net} has no IPv4 subnet",
        hint=f"remove it (`docker network rm {net}`) and run `stagecraft infra up` again",
    )


def _network_addresses(net: str) -> list[IPv4Address]:
    """Addresses already used on the network: running containers and stopped hosts."""
    found = _inspect_network(net) or {}
    used = []
    for endpoint in (found.get("Containers") or {}).values():
        address = (endpoint.get("IPv4Address") or "").split("/")[0]
        if address:
            used.append(IPv4Address(address))
    # Stopped hosts are not in .Containers but keep their static address.
    proc = docker("ps", "-a", "-q", "--filter", f"network={net}", what=f"list containers on {net}",
                  timeout=60)
    ids = proc.stdout.split()
    if ids:
        inspected = docker("inspect", *ids, what=f"inspect containers on {net}", check=False,
                           timeout=60)
        for item in json.loads(inspected.stdout or "[]"):
            c = _parse_container(item, net)
            if c.ip:
                used.append(IPv4Address(c.ip))
    return used


def _taken_subnets() -> list[IPv4Network]:
    """Subnets of every Docker network plus this machine's routes."""
    taken: list[IPv4Network] = []
    ids = docker("network", "ls", "-q", what="list Docker networks", timeout=30).stdout.split()
    if ids:
        proc = docker("network", "inspect", *ids, what="inspect Docker networks", check=False,
                      timeout=60)
        for found in json.loads(proc.stdout or "[]"):
            for config in (found.get("IPAM") or {}).get("Config") or []:
                with contextlib.suppress(ValueError, TypeError):
                    network = ipaddress.ip_network(config.get("Subnet"), strict=False)
                    if isinstance(network, IPv4Network):
                        taken.append(network)
    with contextlib.suppress(OSError):
        taken += addressing.routes_from_proc(Path("/proc/net/route").read_text())
    return taken


def _taken_ports() -> set[int]:
    """Ports reserved by every local-cloud container (hosts, registries), stopped ones
    included: a stopped container gets its ports back when it starts."""
    proc = docker("ps", "-a", "-q", "--filter", f"label={LABEL_CLOUD}={KIND}",
                  what="list local-cloud containers", timeout=60)
    ids = proc.stdout.split()
    if not ids:
        return set()
    inspected = docker("inspect", *ids, what="inspect local-cloud containers", check=False,
                       timeout=60)
    ports: set[int] = set()
    for item in json.loads(inspected.stdout or "[]"):
        ports |= set(_published_ports(item).values())
    return ports


def _port_free(port: int) -> bool:
    """Whether nothing listens on SSH_BIND:port right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((SSH_BIND, port))
        except OSError:
            return False
    return True


def _devices_of(container_id: str) -> list[str]:
    """A container's ``--device`` mappings as ``host_path:container_path``."""
    proc = docker("inspect", "--format", "{{json .HostConfig.Devices}}", container_id,
                  what="inspect the devices of a host", check=False, timeout=30)
    try:
        items = json.loads(proc.stdout or "null") or []
    except json.JSONDecodeError:
        return []
    return [f"{d.get('PathOnHost')}:{d.get('PathInContainer')}" for d in items]


def _list_volumes(spec: FleetSpec) -> list[str]:
    proc = docker(
        "volume", "ls", "-q",
        "--filter", f"label={LABEL_CLOUD}={KIND}",
        "--filter", f"label={LABEL_PROJECT}={spec.project}",
        "--filter", f"label={LABEL_ENV}={spec.environment}",
        what=f"list the volumes of {spec.project}/{spec.environment}", timeout=60,
    )
    return sorted(proc.stdout.split())


def _remove_network(net: str) -> bool:
    """Remove the environment's network; False when there was none."""
    found = _inspect_network(net)
    if found is None:
        return False
    if (found.get("Labels") or {}).get(LABEL_CLOUD) != KIND:
        raise ProviderError(
            f"network {net} was not made by stagecraft; left in place",
            hint=f"remove it yourself if it is unused: `docker network rm {net}`",
        )
    attached = sorted(e.get("Name", "?") for e in (found.get("Containers") or {}).values())
    if attached:
        raise ProviderError(
            f"network {net} is still used by containers that `infra up` did not make: "
            f"{', '.join(attached)}",
            hint=f"remove them or `docker network disconnect {net} <container>`, then run "
            "`stagecraft infra down` again",
        )
    docker("network", "rm", net, what=f"remove network {net}", timeout=60)
    return True


def _traefik_cache_key(spec: FleetSpec, state_dir: Path) -> dict[str, Any] | None:
    """What the published Traefik image depends on: the registry container (a new one
    has an empty store), the Traefik binary (path, size, mtime) and the image recipe."""
    name = addressing.registry_container_name(spec.project, spec.environment)
    proc = docker("container", "inspect", "--format", "{{.Id}}", name, check=False,
                  what=f"inspect the registry {name}", timeout=30)
    if proc.returncode != 0:
        return None
    try:
        binary = traefik_binary()
        stat = binary.stat()
    except (OSError, EnvironmentMissing):
        return None
    return {"registry": proc.stdout.strip(),
            "binary": [str(binary), stat.st_size, stat.st_mtime_ns],
            "recipe": context_hash(TRAEFIK_DIR, {})}
