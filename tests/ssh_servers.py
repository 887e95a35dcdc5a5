"""Plain SSH servers for the tests of cloud `ssh`: "rented VPSes" as containers.

Each server is a container of the local cloud's host image (Debian 13, systemd as
PID 1, sshd; Docker is not installed: bootstrap would do that) run with the same
flags as the local cloud's hosts, but without any of the local cloud's labels, so
the local provider never sees it. The harness makes its own Docker network, the
"internet" the test machine and the servers share. Only root's authorized_keys
holds the test key pair the harness makes with ssh-keygen; options add a port other
than 22, users with or without passwordless sudo (the same key), a place behind a
bastion (the server answers the bastion only) and a second disk (a loop device).
Everything goes away on exit, also when the setup fails half-way.

    with ssh_servers([ServerSpec("vps1", users={"admin": True})], tmp_path) as found:
        found["vps1"].address, found["vps1"].port, found.key
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from stagecraft.providers.cloud.local.host_image import ensure_host_image
from stagecraft.providers.cloud.local.loopdev import ensure_loop_support
from stagecraft.providers.cloud.local.provider import HOST_RUN_FLAGS

#: Seconds a server gets to boot and answer SSH.
BOOT_TIMEOUT = 90.0


@dataclass(frozen=True)
class ServerSpec:
    """One server to start."""

    name: str
    port: int = 22
    #: Users besides root, all with the test key: name -> passwordless sudo or not.
    users: Mapping[str, bool] = field(default_factory=dict)
    #: The server this one is reachable through only (another spec's name).
    behind: str | None = None
    #: A second disk, as a VPS's attached volume: its size in GiB and the device path
    #: the server sees (a loop device of the test machine).
    disk_gb: int = 0
    disk_device: str = "/dev/vdb"


@dataclass(frozen=True)
class Server:
    """A running server: where the test machine (or its bastion) reaches sshd."""

    name: str
    container: str
    address: str
    port: int
    behind: str | None = None

    def exec(self, script: str, *, input: str | None = None,
             check: bool = True) -> subprocess.CompletedProcess:
        """Run ``script`` with sh as root inside the server (not over SSH)."""
        return _docker("exec", "-i", self.container, "sh", "-c", script, input=input,
                       check=check)

    def host_key_fingerprint(self) -> str:
        """``SHA256:...`` of the server's ed25519 host key, as its console shows it."""
        return self.exec("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1]

    def regenerate_host_keys(self) -> None:
        """New host keys, as a reinstalled server has, and sshd restarted with them."""
        self.exec("rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null "
                  "&& systemctl restart ssh.service")
        # From inside: a server behind a bastion does not answer this machine.
        self.exec(f"for i in $(seq 1 {int(BOOT_TIMEOUT * 3)}); do "
                  f"ss -Htln 'sport = :{self.port}' | grep -q . && exit 0; sleep 0.3; done; "
                  "exit 1")


@dataclass
class Servers(Mapping[str, Server]):
    """The servers by name, and the key pair that logs in to all of them."""

    key: Path
    servers: dict[str, Server]
    networks: tuple[str, ...]

    def __getitem__(self, name: str) -> Server:
        return self.servers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.servers)

    def __len__(self) -> int:
        return len(self.servers)


@contextmanager
def ssh_servers(specs: Sequence[ServerSpec], workdir: Path) -> Iterator[Servers]:
    """Start ``specs`` (bastions before the servers behind them); remove the containers
    and networks afterwards, whatever happens."""
    prefix = f"sctest-ssh-{uuid.uuid4().hex[:6]}"
    # One network, the servers' "internet": it gives them the engine's NAT to the
    # Debian mirror, as a VPS behind a bastion still has its way out.
    public = prefix
    key = workdir / "id_test"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", prefix, "-f", str(key)],
                   check=True)
    containers: list[str] = []
    networks: list[str] = []
    loops: list[str] = []
    try:
        image = ensure_host_image()
        _docker("network", "create", public)
        networks.append(public)
        servers: dict[str, Server] = {}
        for spec in _bastions_first(specs):
            container = f"{prefix}-{spec.name}"
            disk: list[str] = []
            if spec.disk_gb:
                loop = _loop_device(workdir / f"{spec.name}-disk.img", spec.disk_gb)
                loops.append(loop)
                disk = ["--device", f"{loop}:{spec.disk_device}"]
            _docker("run", "-d", "--name", container, "--hostname", spec.name,
                    *HOST_RUN_FLAGS, *disk, "--network", public, image, "/sbin/init")
            containers.append(container)
            servers[spec.name] = Server(spec.name, container, _address(container, public),
                                        spec.port, spec.behind)
        for spec in specs:
            _set_up(servers[spec.name], spec, key.with_suffix(".pub").read_text())
        for spec in specs:
            server = servers[spec.name]
            if spec.behind is None:
                _wait_banner(server)
            else:
                _refuse_all_but(server, servers[spec.behind], public)
        yield Servers(key, servers, tuple(networks))
    finally:
        if containers:
            _docker("rm", "-fv", *containers, check=False)
        for network in networks:
            _docker("network", "rm", network, check=False)
        for loop in loops:
            subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)


def _loop_device(file: Path, size_gb: int) -> str:
    """A sparse file of ``size_gb`` GiB attached to a free loop device of this machine."""
    ensure_loop_support()
    with open(file, "wb") as handle:
        handle.truncate(size_gb * 1024 ** 3)
    found = subprocess.run(["losetup", "-f", "--show", str(file)], capture_output=True,
                           text=True, check=True, timeout=60)
    return found.stdout.strip()


def _bastions_first(specs: Sequence[ServerSpec]) -> list[ServerSpec]:
    return sorted(specs, key=lambda s: s.behind is not None)


def _set_up(server: Server, spec: ServerSpec, public_key: str) -> None:
    """Wait for sshd's first start, then authorize the key, add users, move the port."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    while server.exec("systemctl is-active --quiet ssh.service", check=False).returncode:
        if time.monotonic() > deadline:
            raise AssertionError(f"sshd of {server.name} did not start: "
                                 + server.exec("systemctl status ssh --no-pager",
                                               check=False).stdout[-2000:])
        time.sleep(0.5)
    lines = ['set -eu', 'IFS= read -r key',
             'printf "%s\\n" "$key" > /root/.ssh/authorized_keys',
             'chmod 600 /root/.ssh/authorized_keys']
    for user, sudo in spec.users.items():
        lines += [f"useradd -m -s /bin/bash {user}",
                  f"install -d -m 700 -o {user} -g {user} /home/{user}/.ssh",
                  f"install -m 600 -o {user} -g {user} /root/.ssh/authorized_keys "
                  f"/home/{user}/.ssh/authorized_keys"]
        if sudo:
            lines += [f"echo '{user} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/{user}",
                      f"chmod 440 /etc/sudoers.d/{user}"]
    # The servers are containers: their dockerd (once bootstrap installs it) needs what
    # the local cloud's hosts get too (docs/architecture.md, "The local cloud"). A
    # drop-in of the server's own, as a provider's image might carry one.
    lines += ["install -d /etc/systemd/system/docker.service.d",
              "printf '[Service]\\nEnvironment=DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1\\n' "
              "> /etc/systemd/system/docker.service.d/10-container-host.conf"]
    if spec.port != 22:
        lines += [f"echo 'Port {spec.port}' > /etc/ssh/sshd_config.d/test-port.conf",
                  "systemctl restart ssh.service"]
    server.exec("\n".join(lines), input=public_key)


def _refuse_all_but(server: Server, bastion: Server, network: str) -> None:
    """Make ``server`` reachable through ``bastion`` only.

    The test machine reaches the network through the bridge's gateway address; a
    route inside the server drops every answer to that address, as a firewall that
    admits only the bastion would. The bastion, on the same network, still gets in.
    """
    gateway = _network_gateway(network)
    server.exec(f"ip route add prohibit {gateway}/32")
    hop = _docker("exec", bastion.container, "bash", "-c",
                  f"for i in $(seq 1 {int(BOOT_TIMEOUT * 2)}); do "
                  f"(echo > /dev/tcp/{server.address}/{server.port}) 2>/dev/null && exit 0; "
                  "sleep 0.5; done; exit 1", check=False)
    assert hop.returncode == 0, f"bastion {bastion.name} cannot reach {server.name}"
    try:
        with socket.create_connection((server.address, server.port), timeout=3):
            pass
    except OSError:
        return
    raise AssertionError(f"{server.name} ({server.address}:{server.port}) is reachable "
                         "directly; it must be reachable through its bastion only")


def _wait_banner(server: Server) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while True:
        try:
            with socket.create_connection((server.address, server.port), timeout=2) as conn:
                conn.settimeout(2)
                if conn.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no SSH banner from {server.name} at "
                                 f"{server.address}:{server.port}")
        time.sleep(0.3)


def _address(container: str, network: str) -> str:
    data = json.loads(_docker("inspect", container).stdout)[0]
    return data["NetworkSettings"]["Networks"][network]["IPAddress"]


def _network_gateway(network: str) -> str:
    data = json.loads(_docker("network", "inspect", network).stdout)[0]
    return next(c["Gateway"] for c in data["IPAM"]["Config"] if "Gateway" in c)


def _docker(*args: str, input: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], input=input, capture_output=True, text=True,
                          timeout=180, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} failed: {proc.stderr.strip()}")
    return proc
