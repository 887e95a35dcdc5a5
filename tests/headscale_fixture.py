"""A real Headscale for tests: a fresh Docker network and a ``stagecraft/headscale``
container on it, serving TLS with a certificate from a CA made for the test.

Shared by tests/integration/test_mesh_binaries.py (which joins hosts by hand) and
tests/integration/test_molecule_tailscale.py (which lets the tailscale role join).
The server is set up the way the local cloud sets one up (see
stagecraft/providers/cloud/local/headscale.py): its address on the network is fixed
before it starts, ``server_url`` is that address (``https://<ip>:8080``), its embedded
DERP relay announces the same address, and the certificate names it.

Everything made here carries the label given by the caller and is removed on exit,
also when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from stagecraft.infra.tls import CertificateAuthority, ensure_ca, issue
from stagecraft.providers.cloud.local import addressing, headscale
from stagecraft.providers.cloud.local.provider import _taken_subnets
from stagecraft.providers.cloud.local.service_images import ensure_headscale_image


def docker(*args: str, check: bool = True, input: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``docker ARGS``; an AssertionError with its output when it fails and ``check``."""
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, input=input,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def on(container: str, command: str, *, check: bool = True, input: str | None = None,
       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``sh -c COMMAND`` in ``container``."""
    return docker("exec", "-i", container, "sh", "-c", command, check=check, input=input,
                  timeout=timeout)


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60.0,
             every: float = 0.5) -> Any:
    """The first true value ``probe`` returns; an AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


@dataclass(frozen=True)
class HeadscaleServer:
    """A running Headscale and the network it serves."""

    network: str
    subnet: IPv4Network
    container: str
    ip: str
    #: ``https://<ip>:8080``: what ``tailscale up --login-server`` is given.
    url: str
    ca: CertificateAuthority

    def cli_json(self, *args: str) -> Any:
        """``headscale ARGS --output json`` in the container, parsed (no secrets: use
        headscale.create_auth_key for keys)."""
        return json.loads(docker("exec", self.container, "headscale", *args,
                                 "--output", "json").stdout)

    def nodes(self) -> list[dict[str, Any]]:
        """``headscale nodes list``: one dict per node (``given_name``, ``online``,
        ``expiry``, ``tags``, ...)."""
        return self.cli_json("nodes", "list") or []

    def create_auth_key(self, user: str, *, tags: tuple[str, ...] = (),
                        expiration: str = "1h") -> str:
        """A reusable pre-auth key of ``user`` (made if missing), tagged with ``tags``."""
        user_id = headscale.ensure_user(self.container, user)
        return headscale.create_auth_key(self.container, user_id, reusable=True,
                                         expiration=expiration, tags=tags)


def create_network(name: str, label: str) -> IPv4Network:
    """A bridge network on a subnet no other network or route of this machine uses."""
    taken = _taken_subnets()
    for _attempt in range(10):
        subnet = addressing.choose_subnet(name, taken)
        proc = docker("network", "create", "--driver", "bridge", "--subnet", str(subnet),
                      "--label", label, name, check=False)
        if proc.returncode == 0:
            return subnet
        if "overlap" not in proc.stderr:
            raise AssertionError(proc.stderr)
        taken.append(subnet)
    raise AssertionError("no free subnet for the test network")


@contextlib.contextmanager
def headscale_server(tmp: Path, prefix: str, label: str,
                     timings: dict[str, float] | None = None,
                     log: Callable[[str], None] = print) -> Iterator[HeadscaleServer]:
    """Network ``<prefix>-<random>`` with Headscale ``<network>-headscale`` on it.

    ``tmp`` keeps the CA (``tmp/state/ca/``) and the server's files. ``timings`` (if
    given) gets how long the image and the server took. On exit the container and the
    network are removed; a network that still has containers attached (a test's own
    host that outlived it) is left with a message rather than torn from under them.
    """
    timings = {} if timings is None else timings
    started = time.monotonic()
    image = ensure_headscale_image(log)
    timings["headscale image (cached or built)"] = time.monotonic() - started

    network = f"{prefix}-{uuid.uuid4().hex[:6]}"
    container = f"{network}-headscale"
    created_network = False
    try:
        started = time.monotonic()
        subnet = create_network(network, label)
        created_network = True
        # The local cloud's registry sits at REGISTRY_OFFSET; Headscale just after it.
        ip = str(subnet.network_address + addressing.REGISTRY_OFFSET + 1)
        url = headscale.server_url(ip)
        ca = ensure_ca(tmp / "state", common_name=f"stagecraft test CA ({prefix})")
        cert, key = issue(ca, dns_names=[container], ip_addresses=[ip])
        config = headscale.render_config(headscale.HeadscaleSettings(
            server_url=url, derp_ipv4=ip))
        files = tmp / "headscale"
        (files / "tls").mkdir(parents=True)
        (files / "config.yaml").write_text(config)
        (files / "tls" / "headscale.crt").write_text(cert)
        (files / "tls" / "headscale.key").write_text(key)
        # Created, given its files, then started: as the local cloud does the registry.
        docker("create", "--name", container, "--label", label, "--network", network,
               "--ip", ip, image)
        docker("cp", str(files / "config.yaml"), f"{container}:{headscale.CONFIG_PATH}")
        docker("cp", f"{files / 'tls'}/.", f"{container}:/etc/headscale/tls")
        docker("start", container)
        wait_for("headscale to be healthy", lambda: docker(
            "inspect", "-f", "{{.State.Health.Status}}", container).stdout.strip()
            == "healthy")
        timings["headscale up (network, CA, config, healthy)"] = time.monotonic() - started
        yield HeadscaleServer(network, subnet, container, ip, url, ca)
    finally:
        docker("rm", "-fv", container, check=False)
        if created_network:
            removed = docker("network", "rm", network, check=False)
            if removed.returncode != 0:
                log(f"warning: cannot remove the test network {network}: "
                    f"{removed.stderr.strip()}")
