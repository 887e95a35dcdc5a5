"""The local cloud's registry: one Distribution 2.8 container per environment.

Fleet hosts cannot pull from the internet, so each environment gets a real
registry on its private network, the way a droplet would use a private registry:

- container ``stagecraft-<project>-<env>-registry`` at ``<subnet>.128:5000`` on the
  fleet network (network alias ``registry``), published on ``127.0.0.1:<port>`` for
  the controller to push (the controller's dockerd treats 127.0.0.0/8 registries as
  insecure, so it needs no CA);
- TLS with a certificate from the environment's CA (stagecraft.infra.tls), which the
  bootstrap role installs on every host, so hosts verify it like any public one;
- basic auth (htpasswd, bcrypt): user ``stagecraft``, a generated password;
- storage on the named volume ``stagecraft-<project>-<env>_registry``.

Its files live in ``.stagecraft/<env>/registry/``: ``password``, ``htpasswd``,
``registry.key`` (0600), ``registry.crt`` and ``registry.json`` (servers). They are
copied into the container before it starts, so the project directory may move.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import secrets
import shutil
import socket
import ssl
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from stagecraft import steps
from stagecraft.errors import CommandFailed, ProviderError, StateError
from stagecraft.fsutil import write_atomic
from stagecraft.log import add_secrets
from stagecraft.providers.cloud.base import (
    CREATED,
    STARTED,
    UNCHANGED,
    FleetSpec,
    Log,
    RegistryAccess,
)
from stagecraft.providers.cloud.local import addressing
from stagecraft.providers.cloud.local.dockercli import (
    copy_tar,
    docker,
    exists,
    raise_for,
    tail,
)
from stagecraft.providers.cloud.local.service_images import REGISTRY_UID, ensure_registry_image
from stagecraft.infra.tls import CertificateAuthority, certificate_covers, ensure_ca, issue, load_ca

USERNAME = "stagecraft"
CONTAINER_PORT = 5000
BIND = "127.0.0.1"
NETWORK_ALIAS = "registry"
#: Where the image's config.yml expects the per-environment files.
CONFIG_DIR = "/etc/docker/registry"
#: ``up`` replaced the registry container because its files or image changed.
REPLACED = "replaced"

LABEL_SERVICE = "org.stagecraft.service"
LABEL_CONFIG = "org.stagecraft.registry-config"

_PORT_TAKEN = ("port is already allocated", "address already in use")
_READY_TIMEOUT = 60.0
_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class RegistryFiles:
    """The registry's files in ``.stagecraft/<env>/registry/``."""

    state_dir: Path
    directory: Path = field(init=False)
    password: Path = field(init=False)
    htpasswd: Path = field(init=False)
    cert: Path = field(init=False)
    key: Path = field(init=False)
    info: Path = field(init=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: derived paths are set once, here
        directory = Path(self.state_dir) / "registry"
        set_(self, "directory", directory)
        set_(self, "password", directory / "password")
        set_(self, "htpasswd", directory / "htpasswd")
        set_(self, "cert", directory / "registry.crt")
        set_(self, "key", directory / "registry.key")
        set_(self, "info", directory / "registry.json")

    def all(self) -> list[Path]:
        return [self.password, self.htpasswd, self.cert, self.key, self.info]


@dataclass(frozen=True)
class RegistryState:
    """What ``ensure_registry`` found or made."""

    container: str
    change: str  # created | started | unchanged | replaced
    push_server: str
    pull_server: str


def ensure_registry(spec: FleetSpec, state_dir: Path, net: str, subnet: IPv4Network,
                    labels: dict[str, str], taken_ports: set[int], log: Log) -> RegistryState:
    """Make the environment's registry run (idempotent); write its files and registry.json.

    ``labels`` are the environment's container labels (cloud, project, environment);
    ``taken_ports`` the ports other local-cloud containers publish. The container is
    replaced (its volume kept) when its image, certificate or password file changed.
    """
    files = RegistryFiles(Path(state_dir))
    name = addressing.registry_container_name(spec.project, spec.environment)
    ip = str(addressing.registry_ip(subnet))
    files.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca = ensure_ca(state_dir, common_name=f"stagecraft {spec.project}/{spec.environment} CA")
    image = ensure_registry_image(log)
    password = _ensure_password(files)
    htpasswd = _ensure_htpasswd(files, image, password)
    cert_pem, key_pem = _ensure_certificate(files, ca, name, ip)
    config = _fingerprint(image, ip, net, htpasswd, cert_pem, key_pem)

    found = _inspect(name)
    found_labels = (found or {}).get("Config", {}).get("Labels") or {}
    if found is not None:
        if any(found_labels.get(k) != v for k, v in labels.items()):
            raise ProviderError(
                f"a container named {name} exists but is not the registry of "
                f"{spec.project}/{spec.environment}",
                hint=f"it was not made by `stagecraft infra up`: remove it (`docker rm -f {name}`)",
            )
    port = _published_port(found) if found is not None else None
    change = UNCHANGED
    if found is not None and found_labels.get(LABEL_CONFIG) == config:
        if found.get("State", {}).get("Status") != "running":
            log(f"starting the registry {name}")
            docker("start", name, what=f"start the registry {name}", timeout=60,
                   hint=f"see `docker logs {name}`")
            change = STARTED
    else:
        if found is not None:
            log(f"replacing the registry {name}: its image, certificate or password changed")
            docker("rm", "-f", name, what=f"remove the old registry {name}", timeout=60)
            change = REPLACED
        else:
            change = CREATED
        volume = _ensure_volume(spec, labels)
        port = _create(name, image, net, ip, volume, labels, config, files, port,
                       taken_ports, f"{spec.project}/{spec.environment}/registry", log)
    if port is None:
        raise ProviderError(
            f"the registry {name} publishes no port on {BIND}",
            hint=f"remove it (`docker rm -f {name}`) and run `stagecraft infra up` again",
        )
    if change == UNCHANGED:
        _wait_ready(name, port, ca)
    else:
        with steps.step(log, f"waiting for the registry {name} to answer on {BIND}:{port}"):
            _wait_ready(name, port, ca)
    state = RegistryState(container=name, change=change, push_server=f"{BIND}:{port}",
                          pull_server=f"{ip}:{CONTAINER_PORT}")
    info = {"container": name, "image": image, "push_server": state.push_server,
            "pull_server": state.pull_server, "username": USERNAME,
            "dns_names": _dns_names(name), "volume": addressing.registry_volume_name(
                spec.project, spec.environment)}
    write_atomic(files.info, json.dumps(info, indent=2) + "\n")
    if change != UNCHANGED:
        log(f"registry {name}: {change} (push {state.push_server}, pull {state.pull_server})")
    return state


def remove_registry(spec: FleetSpec, state_dir: Path, log: Log) -> list[str]:
    """Remove the registry container, its volume and its files; what was removed, in words."""
    files = RegistryFiles(Path(state_dir))
    removed: list[str] = []
    name = addressing.registry_container_name(spec.project, spec.environment)
    if exists("container", name):
        log(f"removing the registry {name}")
        docker("rm", "-fv", name, what=f"remove the registry {name}", timeout=120)
        removed.append(f"container {name}")
    volume = addressing.registry_volume_name(spec.project, spec.environment)
    if exists("volume", volume):
        docker("volume", "rm", volume, what=f"remove the registry's volume {volume}", timeout=60)
        removed.append(f"volume {volume}")
    for path in files.all():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(f"file {path}")
    with contextlib.suppress(OSError):  # only when nothing else lives there
        files.directory.rmdir()
    return removed


def read_info(state_dir: Path) -> dict[str, Any] | None:
    """registry.json as ``up`` last wrote it; None when there is none."""
    files = RegistryFiles(Path(state_dir))
    try:
        data = json.loads(files.info.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise StateError(f"cannot read {files.info}: {exc}",
                         hint="run `stagecraft infra up` to rewrite it") from exc
    return data if isinstance(data, dict) else None


def registry_access(spec: FleetSpec, state_dir: Path) -> RegistryAccess:
    """Servers, credentials and CA of the running registry; ProviderError when it is not
    running (the fleet is not up)."""
    files = RegistryFiles(Path(state_dir))
    name = addressing.registry_container_name(spec.project, spec.environment)
    hint = f"bring the environment up first: stagecraft infra up --env {spec.environment}"
    info = read_info(state_dir)
    found = _inspect(name) if info is not None else None
    if info is None or found is None:
        raise ProviderError(
            f"environment {spec.environment} of {spec.project} has no registry: "
            "its fleet is not up", hint=hint)
    if found.get("State", {}).get("Status") != "running":
        raise ProviderError(f"the registry {name} is not running", hint=hint)
    port = _published_port(found)
    try:
        password = files.password.read_text().strip()
    except FileNotFoundError as exc:
        raise StateError(f"the registry's password file {files.password} is missing",
                         hint="run `stagecraft infra up` to make a new password") from exc
    add_secrets(password)
    return RegistryAccess(
        push_server=f"{BIND}:{port}" if port else str(info["push_server"]),
        pull_server=str(info["pull_server"]),
        username=str(info.get("username", USERNAME)),
        password=password,
        ca_pem=load_ca(state_dir).cert_pem,
    )


def push(access: RegistryAccess, source: str, repository: str, tag: str, *,
         log: Log) -> str:
    """Push the local image ``source`` as ``<push_server>/<repository>:<tag>`` and return its
    pull reference with digest (``<pull_server>/<repository>:<tag>@sha256:...``).

    Logs in with a throwaway docker config directory, so the credentials never land
    in ~/.docker. Pushing what the registry has already transfers nothing.
    """
    target = access.push_reference(repository, tag)
    config_dir = Path(tempfile.mkdtemp(prefix="stagecraft-docker-config-"))
    try:
        docker("tag", source, target, what=f"tag {source} as {target}", timeout=30)
        docker("--config", str(config_dir), "login", access.push_server,
               "--username", access.username, "--password-stdin",
               input=access.password + "\n", what=f"log in to the registry {access.push_server}",
               timeout=60, hint="check that the registry runs: `stagecraft infra up`")
        log(f"pushing {target}")
        proc = docker("--config", str(config_dir), "push", target,
                      what=f"push {target}", timeout=900)
    finally:
        shutil.rmtree(config_dir, ignore_errors=True)
        docker("rmi", target, what=f"untag {target}", check=False, timeout=60)
    match = re.search(r"digest: (sha256:[0-9a-f]{64})", proc.stdout)
    if match is None:
        raise CommandFailed(f"`docker push {target}` printed no digest",
                            argv=["docker", "push", target], returncode=0,
                            output_tail=tail(proc.stdout), hint="run the push again")
    return access.pull_reference(repository, tag, match.group(1))


# --------------------------------------------------------------------- files


def _ensure_password(files: RegistryFiles) -> str:
    try:
        password = files.password.read_text().strip()
    except FileNotFoundError:
        password = ""
    if not password:
        password = secrets.token_urlsafe(32)
        write_atomic(files.password, password + "\n", mode=0o600)
        # A new password makes the old htpasswd wrong.
        with contextlib.suppress(FileNotFoundError):
            files.htpasswd.unlink()
    add_secrets(password)
    return password


def _ensure_htpasswd(files: RegistryFiles, image: str, password: str) -> str:
    """The bcrypt htpasswd line for the password, made by the image's own htpasswd
    (bcrypt salts: the same password gives another line each time, so it is kept)."""
    # Older than the password file: the password was edited since; hash it again.
    if (files.htpasswd.is_file()
            and files.htpasswd.stat().st_mtime >= files.password.stat().st_mtime):
        return files.htpasswd.read_text()
    # The password goes on stdin, never on a command line. Cost 5: the password is 256
    # random bits, so a slower hash would add nothing but latency to every request.
    proc = docker("run", "--rm", "-i", "--network", "none", "--entrypoint", "htpasswd",
                  image, "-niB", "-C", "5", USERNAME, input=password + "\n",
                  what="hash the registry password with htpasswd", timeout=60)
    line = proc.stdout.strip()
    if not line.startswith(f"{USERNAME}:$2"):
        raise ProviderError("htpasswd did not print a bcrypt entry",
                            hint=f"check the image {image}: `docker run --rm --entrypoint "
                            f"htpasswd {image} -h`")
    write_atomic(files.htpasswd, line + "\n", mode=0o600)
    return line + "\n"


def _dns_names(container: str) -> list[str]:
    return [NETWORK_ALIAS, container, "localhost"]


def _ensure_certificate(files: RegistryFiles, ca: CertificateAuthority, container: str,
                        ip: str) -> tuple[str, str]:
    """The registry's certificate and key: reissued when missing, for other names, from
    another CA, or near expiry."""
    dns_names, addresses = _dns_names(container), [ip, BIND]
    with contextlib.suppress(FileNotFoundError):
        cert_pem, key_pem = files.cert.read_text(), files.key.read_text()
        if certificate_covers(cert_pem, dns_names, addresses, ca):
            return cert_pem, key_pem
    cert_pem, key_pem = issue(ca, dns_names, addresses)
    write_atomic(files.key, key_pem, mode=0o600)
    write_atomic(files.cert, cert_pem, mode=0o644)
    return cert_pem, key_pem


def _fingerprint(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


def _config_tar(files: RegistryFiles) -> bytes:
    """The per-environment files as a tar owned by the registry's user, for `docker cp`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        tls_dir = tarfile.TarInfo("tls")
        tls_dir.type, tls_dir.mode = tarfile.DIRTYPE, 0o750
        tls_dir.uid = tls_dir.gid = REGISTRY_UID
        archive.addfile(tls_dir)
        for name, path, mode in (("htpasswd", files.htpasswd, 0o600),
                                 ("tls/registry.crt", files.cert, 0o644),
                                 ("tls/registry.key", files.key, 0o600)):
            data = path.read_bytes()
            member = tarfile.TarInfo(name)
            member.size, member.mode, member.mtime = len(data), mode, int(time.time())
            member.uid = member.gid = REGISTRY_UID
            archive.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


# ---------------------------------------------------------------- container


def _inspect(name: str) -> dict[str, Any] | None:
    proc = docker("container", "inspect", name, what=f"inspect the registry {name}",
                  check=False, timeout=30)
    if proc.returncode != 0:
        if "No such" in proc.stderr or "not found" in proc.stderr.lower():
            return None
        raise_for(proc, what=f"inspect the registry {name}")
    data = json.loads(proc.stdout or "[]")
    return data[0] if data else None


def _published_port(found: dict[str, Any]) -> int | None:
    bindings = (found.get("HostConfig", {}).get("PortBindings") or {}).get(
        f"{CONTAINER_PORT}/tcp") or []
    port = bindings[0].get("HostPort") if bindings else None
    return int(port) if port else None


def _ensure_volume(spec: FleetSpec, labels: dict[str, str]) -> str:
    volume = addressing.registry_volume_name(spec.project, spec.environment)
    if not exists("volume", volume):
        argv = ["volume", "create"]
        for key, value in labels.items():
            argv += ["--label", f"{key}={value}"]
        docker(*argv, "--label", f"{LABEL_SERVICE}=registry", volume,
               what=f"create the registry's volume {volume}", timeout=60)
    return volume


def _create(name: str, image: str, net: str, ip: str, volume: str, labels: dict[str, str],
            config: str, files: RegistryFiles, preferred_port: int | None,
            taken_ports: set[int], key: str, log: Log) -> int:
    """Create, fill and start the registry container; return the port it publishes."""
    label_args: list[str] = []
    for label, value in {**labels, LABEL_SERVICE: "registry", LABEL_CONFIG: config}.items():
        label_args += ["--label", f"{label}={value}"]
    # The old container's port is among the taken ones; it is free again now.
    taken = set(taken_ports) - {preferred_port}
    for _attempt in range(10):
        if preferred_port is not None and preferred_port not in taken:
            port = preferred_port
        else:
            port = addressing.choose_port(key, taken, addressing.PUBLISHED_PORT_RANGE)
        if not _port_free(port):
            taken.add(port)
            continue
        docker("create", "--name", name, "--hostname", NETWORK_ALIAS, *label_args,
               "--network", net, "--ip", ip, "--network-alias", NETWORK_ALIAS,
               "-p", f"{BIND}:{port}:{CONTAINER_PORT}",
               "-v", f"{volume}:/var/lib/docker-registry", image,
               what=f"create the registry {name}", timeout=60,
               hint=f"is {ip} taken on {net}? `docker network inspect {net}`")
        try:
            _copy_config(name, files)
            proc = docker("start", name, what=f"start the registry {name}", check=False,
                          timeout=60)
        except BaseException:
            docker("rm", "-f", name, what=f"clean up the failed registry {name}", check=False,
                   timeout=60)
            raise
        if proc.returncode == 0:
            return port
        docker("rm", "-f", name, what=f"clean up the failed registry {name}", check=False,
               timeout=60)
        if any(m in proc.stderr.lower() for m in _PORT_TAKEN):
            taken.add(port)
            continue
        raise_for(proc, what=f"start the registry {name}",
                  hint=f"is {ip} free on {net}? `docker network inspect {net}`")
    raise ProviderError(
        f"the registry {name}: every port tried on {BIND} was taken",
        hint="free some ports in 23000-25999 or remove unused local environments",
    )


def _copy_config(name: str, files: RegistryFiles) -> None:
    copy_tar(name, CONFIG_DIR, _config_tar(files), what=f"copy the registry's files into {name}",
             hint="check `docker info`, then run `stagecraft infra up` again")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((BIND, port))
        except OSError:
            return False
    return True


def _wait_ready(name: str, port: int, ca: CertificateAuthority) -> None:
    """Wait until the registry answers /v2/ over TLS verified with the CA, asking for
    credentials (401): then it serves, with TLS and auth on."""
    context = ssl.create_default_context(cafile=str(ca.cert_path))
    # Straight to 127.0.0.1: an https_proxy in the environment must not be asked.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    url = f"https://{BIND}:{port}/v2/"
    deadline = time.monotonic() + _READY_TIMEOUT
    last = "no answer"
    while True:
        try:
            with opener.open(url, timeout=5) as response:
                last = f"HTTP {response.status} without credentials (auth is off?)"
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                return
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        if time.monotonic() > deadline:
            logs = docker("logs", "--tail", "20", name, what=f"read the log of {name}",
                          check=False, timeout=30)
            raise ProviderError(
                f"the registry {name} did not answer {url} with 401 within "
                f"{_READY_TIMEOUT:g} s (last: {last}); log: "
                f"{tail(logs.stdout + logs.stderr, 600) or 'empty'}",
                hint=f"see `docker logs {name}`",
            )
        time.sleep(_POLL_SECONDS)
