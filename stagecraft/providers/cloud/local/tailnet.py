"""The local cloud's tailnet (network ``headscale`` without a ``login_server``): a
Headscale control server on the environment's network, and a node for the controller.

- ``stagecraft-<project>-<env>-headscale``: the ``stagecraft/headscale`` image at a
  fixed address of the fleet network, serving TLS with a certificate from the
  environment's CA (its embedded DERP relay needs TLS; headscale.py says why), its
  state in a named volume, so nodes stay registered when the container is replaced.
- ``stagecraft-<project>-<env>-tailnode``: tailscaled in userspace networking (no TUN
  device, no route on this machine), logged in as ``stagecraft-controller``. The
  controller reaches hosts at their tailnet addresses through it:
  ``docker exec -i <tailnode> tailscale nc %h %p`` is the ProxyCommand of every SSH
  connection, as a laptop running Tailscale would reach them directly.

Each bootstrap asks for a fresh reusable pre-auth key (30 minutes): hosts that are
logged in need none, and no long-lived key is kept anywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shlex
import tarfile
import time
from collections.abc import Callable
from ipaddress import IPv4Network
from pathlib import Path

from stagecraft import steps
from stagecraft.errors import ProviderError
from stagecraft.fsutil import write_atomic
from stagecraft.infra.tls import ensure_ca, issue
from stagecraft.providers.cloud.base import Log, MeshRoute, MeshServer
from stagecraft.providers.cloud.local import addressing, headscale
from stagecraft.providers.cloud.local.dockercli import copy_tar, docker, exists
from stagecraft.providers.cloud.local.mesh_binaries import ensure_mesh_binaries
from stagecraft.providers.cloud.local.service_images import (
    ensure_headscale_image,
    ensure_runtime_image,
)

#: Fixed addresses at the top of the fleet network's /24 (Docker hands out its upper
#: half from the bottom, from .129 on, to containers attached without an address).
HEADSCALE_OFFSET = 250
TAILNODE_OFFSET = 251
#: The Headscale user every node of the environment belongs to.
USER = "fleet"
#: The controller's node name on the tailnet.
CONTROLLER_NODE = "stagecraft-controller"
LABEL_SERVICE = "org.stagecraft.service"
LABEL_CONFIG = "org.stagecraft.tailnet-config"
#: Where the tailnode container keeps things.
_NODE_SOCKET = "/run/tailscale/tailscaled.sock"
_NODE_CA = "/etc/stagecraft/tailnet-ca.pem"
_KEY_IN_NODE = "/var/lib/tailscale/stagecraft-auth-key"
_READY_TIMEOUT = 60.0


def headscale_name(project: str, environment: str) -> str:
    return f"{addressing.PREFIX}-{project}-{environment}-headscale"


def tailnode_name(project: str, environment: str) -> str:
    return f"{addressing.PREFIX}-{project}-{environment}-tailnode"


def _volume_name(project: str, environment: str, what: str) -> str:
    return f"{addressing.PREFIX}-{project}-{environment}-{what}"


def tailnet_dir(state_dir: Path) -> Path:
    """``<state_dir>/tailnet/``: the server's certificate and key."""
    return Path(state_dir) / "tailnet"


def route(project: str, environment: str) -> MeshRoute:
    """SSH to a tailnet address goes through the controller's node; sshd listens on 22."""
    node = shlex.quote(tailnode_name(project, environment))
    return MeshRoute(proxy_command=f"docker exec -i {node} tailscale nc %h %p", ssh_port=22)


def ensure_tailnet(project: str, environment: str, state_dir: Path, net: str,
                   subnet: IPv4Network, labels: dict[str, str], log: Log,
                   tags: tuple[str, ...] = ()) -> MeshServer:
    """Make the environment's Headscale and the controller's node run (idempotent), and
    return where hosts log in, a fresh reusable pre-auth key carrying ``tags`` (the
    nodes it registers get them) and the CA to trust."""
    ip = str(subnet.network_address + HEADSCALE_OFFSET)
    url = headscale.server_url(ip)
    ca = ensure_ca(state_dir, common_name=f"stagecraft {project}/{environment} CA")
    server = headscale_name(project, environment)
    node = tailnode_name(project, environment)
    directory = tailnet_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_pem, key_pem = _certificate(directory, ca.cert_pem, lambda: issue(ca, [server], [ip]))
    config = headscale.render_config(headscale.HeadscaleSettings(server_url=url, derp_ipv4=ip))
    image = ensure_headscale_image(log)
    fingerprint = _fingerprint(image, ip, net, config, cert_pem)
    env_labels = {**labels, LABEL_SERVICE: "headscale", LABEL_CONFIG: fingerprint}
    if not _current(server, env_labels, log):
        volume = _volume(_volume_name(project, environment, "headscale"), labels)
        with steps.step(log, f"starting the tailnet's Headscale {server} at {url}"):
            docker("create", "--name", server, "--hostname", "headscale",
                   *_label_args(env_labels), "--network", net, "--ip", ip,
                   "--restart", "unless-stopped",
                   "-v", f"{volume}:{headscale.DATA_DIR}", image,
                   what=f"create the Headscale {server}", timeout=60,
                   hint=f"is {ip} taken on {net}? `docker network inspect {net}`")
            _copy_in(server, {headscale.CONFIG_PATH: config,
                              headscale.TLS_CERT_PATH: cert_pem,
                              headscale.TLS_KEY_PATH: key_pem})
            docker("start", server, what=f"start the Headscale {server}", timeout=60,
                   hint=f"see `docker logs {server}`")
    _wait_healthy(server)
    user_id = headscale.ensure_user(server, USER)
    auth_key = headscale.create_auth_key(server, user_id, reusable=True, expiration="30m",
                                         tags=tags)
    # The controller's own node carries no tags: a key of its own, made when it must
    # log in.
    _ensure_tailnode(node, net, subnet, labels, url, ca.cert_pem, log, lambda: (
        headscale.create_auth_key(server, user_id, reusable=False, expiration="30m")))
    return MeshServer(login_server=url, auth_key=auth_key, ca_pem=ca.cert_pem)


def remove_tailnet(project: str, environment: str, state_dir: Path, log: Log) -> list[str]:
    """Remove both containers, their volumes and the server's files; what went, in words."""
    removed: list[str] = []
    for name in (tailnode_name(project, environment), headscale_name(project, environment)):
        if exists("container", name):
            log(f"removing {name}")
            docker("rm", "-fv", name, what=f"remove {name}", timeout=120)
            removed.append(f"container {name}")
    for what in ("headscale", "tailnode"):
        volume = _volume_name(project, environment, what)
        if exists("volume", volume):
            docker("volume", "rm", volume, what=f"remove volume {volume}", timeout=60)
            removed.append(f"volume {volume}")
    directory = tailnet_dir(state_dir)
    for path in sorted(directory.glob("*")):
        path.unlink()
        removed.append(f"file {path}")
    with contextlib.suppress(OSError):
        directory.rmdir()
    return removed


# --------------------------------------------------------------------- the node


def _ensure_tailnode(node: str, net: str, subnet: IPv4Network, labels: dict[str, str],
                     url: str, ca_pem: str, log: Log, make_key: Callable[[], str]) -> None:
    """The controller's node: tailscaled (userspace networking) in a runtime container
    with the controller's binaries, logged in to ``url``."""
    binaries = ensure_mesh_binaries(log)
    image = ensure_runtime_image(log)
    ip = str(subnet.network_address + TAILNODE_OFFSET)
    fingerprint = _fingerprint(image, ip, net, url, ca_pem, str(binaries.tailscaled),
                               str(binaries.tailscale))
    node_labels = {**labels, LABEL_SERVICE: "tailnode", LABEL_CONFIG: fingerprint}
    if not _current(node, node_labels, log):
        # Its login survives a replaced container: no new key for the same node.
        volume = _volume(f"{node}-state", labels)
        with steps.step(log, f"starting the controller's tailnet node {node}"):
            docker("create", "--name", node, "--hostname", CONTROLLER_NODE,
                   *_label_args(node_labels), "--network", net, "--ip", ip,
                   "--restart", "unless-stopped",
                   "-e", f"SSL_CERT_FILE={_NODE_CA}",
                   "-v", f"{binaries.tailscaled}:/usr/local/sbin/tailscaled:ro",
                   "-v", f"{binaries.tailscale}:/usr/local/bin/tailscale:ro",
                   "-v", f"{volume}:/var/lib/tailscale",
                   "--entrypoint", "/usr/local/sbin/tailscaled", image,
                   "--tun=userspace-networking", "--no-logs-no-support",
                   "--state=/var/lib/tailscale/tailscaled.state", f"--socket={_NODE_SOCKET}",
                   what=f"create the controller's tailnet node {node}", timeout=60,
                   hint=f"is {ip} taken on {net}? `docker network inspect {net}`")
            _copy_in(node, {_NODE_CA: ca_pem})
            docker("start", node, what=f"start the tailnet node {node}", timeout=60,
                   hint=f"see `docker logs {node}`")
    state = _node_state(node)
    if state != "Running":
        with steps.step(log, f"logging the controller's node in to {url}"):
            docker("exec", "-i", node, "sh", "-c",
                   f"umask 077; cat > {_KEY_IN_NODE}", input=make_key(),
                   what=f"hand the pre-auth key to {node}", timeout=30)
            try:
                docker("exec", node, "tailscale", f"--socket={_NODE_SOCKET}", "up",
                       f"--login-server={url}", f"--auth-key=file:{_KEY_IN_NODE}",
                       f"--hostname={CONTROLLER_NODE}", "--accept-dns=false", "--timeout=60s",
                       what=f"log the tailnet node {node} in", timeout=90,
                       hint=f"see `docker logs {node}` and `docker logs "
                            f"{node.removesuffix('-tailnode')}-headscale`")
            finally:
                docker("exec", node, "rm", "-f", _KEY_IN_NODE, check=False,
                       what=f"remove the key from {node}", timeout=30)


def _node_state(node: str) -> str:
    """tailscaled's BackendState in ``node`` (waits until it answers)."""
    deadline = time.monotonic() + _READY_TIMEOUT
    while True:
        proc = docker("exec", node, "tailscale", f"--socket={_NODE_SOCKET}", "status", "--json",
                      check=False, what=f"ask the tailnet node {node}", timeout=30)
        if proc.returncode == 0 or '"BackendState"' in proc.stdout:
            try:
                return str(json.loads(proc.stdout).get("BackendState") or "")
            except ValueError:
                pass
        if time.monotonic() > deadline:
            raise ProviderError(f"the tailnet node {node} does not answer: "
                                f"{(proc.stderr or proc.stdout).strip()[-300:]}",
                                hint=f"see `docker logs {node}`")
        time.sleep(0.5)


# -------------------------------------------------------------------- helpers


def _certificate(directory: Path, ca_pem: str, make) -> tuple[str, str]:
    """The server's certificate and key, made once per CA (kept in ``directory``)."""
    cert, key, signer = (directory / "headscale.crt", directory / "headscale.key",
                         directory / "ca.sha256")
    ca_hash = hashlib.sha256(ca_pem.encode()).hexdigest()
    with contextlib.suppress(FileNotFoundError):
        if signer.read_text().strip() == ca_hash:
            return cert.read_text(), key.read_text()
    cert_pem, key_pem = make()
    write_atomic(key, key_pem, mode=0o600)
    write_atomic(cert, cert_pem)
    write_atomic(signer, ca_hash + "\n")
    return cert_pem, key_pem


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _label_args(labels: dict[str, str]) -> list[str]:
    args: list[str] = []
    for label, value in labels.items():
        args += ["--label", f"{label}={value}"]
    return args


def _current(name: str, labels: dict[str, str], log: Log) -> bool:
    """Whether container ``name`` runs as ``labels`` say (started if it was stopped);
    removed when it is another configuration's. Refuses a container stagecraft did not
    make."""
    proc = docker("inspect", name, check=False, what=f"inspect {name}", timeout=30)
    if proc.returncode != 0:
        return False
    found = json.loads(proc.stdout)[0]
    have = found.get("Config", {}).get("Labels") or {}
    if have.get(LABEL_SERVICE) != labels[LABEL_SERVICE]:
        raise ProviderError(f"a container named {name} exists but stagecraft did not make it",
                            hint=f"remove it (`docker rm -f {name}`) and run the command again")
    if have.get(LABEL_CONFIG) != labels[LABEL_CONFIG]:
        log(f"replacing {name}: its image or settings changed")
        docker("rm", "-f", name, what=f"remove the old {name}", timeout=60)
        return False
    if found.get("State", {}).get("Status") != "running":
        docker("start", name, what=f"start {name}", timeout=60, hint=f"see `docker logs {name}`")
    return True


def _volume(name: str, labels: dict[str, str]) -> str:
    if not exists("volume", name):
        docker("volume", "create", *_label_args(labels), name,
               what=f"create volume {name}", timeout=60)
    return name


def _copy_in(container: str, files: dict[str, str]) -> None:
    """Write ``files`` (path -> text) into a created container, owned by root, 0644
    (``.key`` files 0600), their directories made as needed."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        made: set[str] = set()
        for path, text in files.items():
            parts = path.strip("/").split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if directory not in made:
                    made.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            data = text.encode()
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode = len(data), 0o600 if path.endswith(".key") else 0o644
            tar.addfile(info, io.BytesIO(data))
    copy_tar(container, "/", buffer.getvalue(), what=f"copy files into {container}",
             hint="check `docker info`")


def _wait_healthy(server: str) -> None:
    """Until ``headscale health`` answers in the container (its database is open)."""
    deadline = time.monotonic() + _READY_TIMEOUT
    while True:
        proc = docker("exec", server, "headscale", "health", check=False,
                      what=f"ask {server} for its health", timeout=30)
        if proc.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise ProviderError(f"the Headscale {server} did not become healthy within "
                                f"{_READY_TIMEOUT:g} s: {(proc.stderr or proc.stdout).strip()[-300:]}",
                                hint=f"see `docker logs {server}`")
        time.sleep(0.5)


__all__ = ["CONTROLLER_NODE", "ensure_tailnet", "headscale_name", "remove_tailnet", "route",
           "tailnet_dir", "tailnode_name"]
