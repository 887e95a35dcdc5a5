"""The mesh's real parts, proven together before the role and the providers use them:

the tailscale and headscale binaries built here with Go (mesh_binaries) -> the
Headscale image -> a Headscale container on a fresh Docker network, serving TLS with a
certificate from a stagecraft CA, its embedded DERP relay and STUN server on -> a user
and a reusable pre-auth key made with its CLI -> two host containers (the local cloud's
host image and run flags, plus /dev/net/tun) trust the CA, run tailscaled under
systemd and join with `tailscale up` -> both online with tailnet addresses, a direct
path between them, TCP over the tailnet -> with the direct path blackholed, the same
through the embedded DERP relay.

Nothing here leaves the test's network: tailscaled runs with --no-logs-no-support and
the login server is an IP address (see stagecraft/providers/cloud/local/headscale.py).
Timings are printed (run with -s to see them).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from stagecraft.infra.tls import ensure_ca, issue
from stagecraft.providers.cloud.local import addressing, headscale
from stagecraft.providers.cloud.local.host_image import ensure_host_image
from stagecraft.providers.cloud.local.mesh_binaries import (
    HEADSCALE_VERSION,
    TAILSCALE_VERSION,
    MeshBinaries,
    ensure_mesh_binaries,
)
from stagecraft.providers.cloud.local.provider import HOST_RUN_FLAGS, _taken_subnets
from stagecraft.providers.cloud.local.service_images import ensure_headscale_image

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

LABEL = "org.stagecraft.test=mesh-binaries"
SOCKET = "/run/tailscale/tailscaled.sock"
#: What the tailscale role will install; here written by hand. --no-logs-no-support:
#: otherwise tailscaled uploads logs to log.tailscale.com (and asks Tailscale's DERP
#: servers for its address when DNS cannot find it).
TAILSCALED_UNIT = textwrap.dedent(f"""\
    [Unit]
    Description=Tailscale node agent
    Wants=network-pre.target
    After=network-pre.target

    [Service]
    ExecStart=/usr/local/sbin/tailscaled --state=/var/lib/tailscale/tailscaled.state \\
      --socket={SOCKET} --port=41641 --no-logs-no-support
    ExecStopPost=/usr/local/sbin/tailscaled --cleanup
    Type=notify
    Restart=on-failure
    RuntimeDirectory=tailscale
    RuntimeDirectoryMode=0755
    StateDirectory=tailscale
    StateDirectoryMode=0700

    [Install]
    WantedBy=multi-user.target
    """)
#: A TCP server on the tailnet address that greets each client with the client's address.
GREETER = textwrap.dedent("""\
    import socket, sys
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((sys.argv[1], int(sys.argv[2])))
    server.listen()
    while True:
        conn, (address, _port) = server.accept()
        conn.sendall(f"hello {address}\\n".encode())
        conn.close()
    """)
GREETER_PORT = 7070


def docker(*args: str, check: bool = True, input: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, input=input,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def on(container: str, command: str, *, check: bool = True, input: str | None = None,
       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return docker("exec", "-i", container, "sh", "-c", command, check=check, input=input,
                  timeout=timeout)


def wait_for(what: str, probe, timeout: float = 60.0, every: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


@dataclass
class Tailnet:
    network: str
    subnet: IPv4Network
    headscale: str
    headscale_ip: str
    hosts: list[str]
    binaries: MeshBinaries
    timings: dict[str, float] = field(default_factory=dict)

    def status(self, host: str) -> dict:
        return json.loads(on(host, f"tailscale --socket={SOCKET} status --json").stdout)

    def ip4(self, host: str) -> str:
        return on(host, f"tailscale --socket={SOCKET} ip -4").stdout.strip()


def _create_network(name: str) -> IPv4Network:
    taken = _taken_subnets()
    for _attempt in range(10):
        subnet = addressing.choose_subnet(name, taken)
        proc = docker("network", "create", "--driver", "bridge", "--subnet", str(subnet),
                      "--label", LABEL, name, check=False)
        if proc.returncode == 0:
            return subnet
        if "overlap" not in proc.stderr:
            raise AssertionError(proc.stderr)
        taken.append(subnet)
    raise AssertionError("no free subnet for the test network")


@pytest.fixture(scope="module")
def tailnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tailnet]:
    tmp = tmp_path_factory.mktemp("mesh")
    timings: dict[str, float] = {}

    def timed(name: str, started: float) -> None:
        timings[name] = time.monotonic() - started

    started = time.monotonic()
    binaries = ensure_mesh_binaries(print)
    timed("mesh binaries (cached or built)", started)
    started = time.monotonic()
    headscale_image = ensure_headscale_image(print)
    host_image = ensure_host_image(print)
    timed("headscale and host images (cached or built)", started)

    suffix = uuid.uuid4().hex[:6]
    network = f"stagecraft-meshtest-{suffix}"
    hs_name = f"stagecraft-meshtest-{suffix}-headscale"
    hosts = [f"stagecraft-meshtest-{suffix}-{n}" for n in ("a", "b")]
    try:
        started = time.monotonic()
        subnet = _create_network(network)
        hs_ip = str(subnet.network_address + addressing.REGISTRY_OFFSET + 1)
        url = headscale.server_url(hs_ip)
        ca = ensure_ca(tmp / "state", common_name="stagecraft mesh test CA")
        cert, key = issue(ca, dns_names=[hs_name], ip_addresses=[hs_ip])
        config = headscale.render_config(headscale.HeadscaleSettings(
            server_url=url, derp_ipv4=hs_ip))
        files = tmp / "headscale"
        (files / "tls").mkdir(parents=True)
        (files / "config.yaml").write_text(config)
        (files / "tls" / "headscale.crt").write_text(cert)
        (files / "tls" / "headscale.key").write_text(key)
        # Created, given its files, then started: as the local cloud does the registry.
        docker("create", "--name", hs_name, "--label", LABEL, "--network", network,
               "--ip", hs_ip, headscale_image)
        docker("cp", str(files / "config.yaml"), f"{hs_name}:{headscale.CONFIG_PATH}")
        docker("cp", f"{files / 'tls'}/.", f"{hs_name}:/etc/headscale/tls")
        docker("start", hs_name)
        wait_for("headscale to be healthy", lambda: docker(
            "inspect", "-f", "{{.State.Health.Status}}", hs_name).stdout.strip() == "healthy")
        timed("headscale up (network, CA, config, healthy)", started)

        started = time.monotonic()
        user_id = headscale.ensure_user(hs_name, "fleet")
        assert headscale.ensure_user(hs_name, "fleet") == user_id  # found, not made twice
        auth_key = headscale.create_auth_key(hs_name, user_id, reusable=True,
                                             expiration="1h")
        assert auth_key.startswith("hskey-auth-")
        timed("user and pre-auth key", started)

        started = time.monotonic()
        for host in hosts:
            short = host.rsplit("-", 1)[-1]
            docker("run", "-d", "--name", host, "--hostname", f"mesh-{short}",
                   "--label", LABEL, *HOST_RUN_FLAGS, "--device", "/dev/net/tun",
                   "--network", network, host_image, "/sbin/init")
        for host in hosts:
            wait_for(f"systemd in {host}", lambda h=host: on(
                h, "systemctl is-system-running", check=False).stdout.strip()
                in ("running", "degraded"))
        timed("two host containers booted", started)

        started = time.monotonic()
        for host in hosts:
            docker("cp", str(binaries.tailscale), f"{host}:/usr/local/bin/tailscale")
            docker("cp", str(binaries.tailscaled), f"{host}:/usr/local/sbin/tailscaled")
            docker("cp", str(ca.cert_path),
                   f"{host}:/usr/local/share/ca-certificates/stagecraft-mesh-test.crt")
            on(host, "update-ca-certificates >/dev/null 2>&1")
            on(host, "cat > /etc/systemd/system/tailscaled.service", input=TAILSCALED_UNIT)
            on(host, "systemctl daemon-reload && systemctl enable --now tailscaled.service")
        timed("tailscaled installed and started", started)

        started = time.monotonic()
        for host in hosts:
            short = host.rsplit("-", 1)[-1]
            on(host, f"tailscale --socket={SOCKET} up --login-server={url} "
               f"--auth-key={auth_key} --hostname=mesh-{short} --accept-dns=false "
               "--timeout=60s", timeout=90)
        timed("both hosts joined (tailscale up)", started)

        net = Tailnet(network, subnet, hs_name, hs_ip, hosts, binaries, timings)
        yield net
    finally:
        for name in (*hosts, hs_name):
            docker("rm", "-fv", name, check=False)
        docker("network", "rm", network, check=False)
        print("\nmesh spike timings:")
        for name, seconds in timings.items():
            print(f"  {name}: {seconds:.1f} s")


def test_the_binaries_are_the_pinned_versions(tailnet: Tailnet) -> None:
    host = tailnet.hosts[0]
    version = on(host, "tailscale version").stdout.splitlines()[0]
    assert version == TAILSCALE_VERSION.lstrip("v")
    assert on(host, "tailscaled --version").stdout.splitlines()[0] == version
    reported = docker("exec", tailnet.headscale, "headscale", "version").stdout
    assert f"headscale version {HEADSCALE_VERSION}" in reported


def test_both_hosts_are_online_with_tailnet_addresses(tailnet: Tailnet) -> None:
    started = time.monotonic()
    a, b = tailnet.hosts
    ipv4_range = ipaddress.ip_network(headscale.IPV4_PREFIX)

    def both_online() -> bool:
        status = tailnet.status(a)
        peers = list((status.get("Peer") or {}).values())
        return status["BackendState"] == "Running" and len(peers) == 1 and peers[0]["Online"]

    wait_for("both nodes online", both_online)
    tailnet.timings["both online as seen from A"] = time.monotonic() - started
    status_a, status_b = tailnet.status(a), tailnet.status(b)
    [peer] = status_a["Peer"].values()
    assert peer["HostName"] == "mesh-b"
    for status in (status_a, status_b):
        assert status["BackendState"] == "Running"
        assert status["Self"]["Online"] is True
        addresses = [ipaddress.ip_address(ip) for ip in status["Self"]["TailscaleIPs"]]
        assert any(ip.version == 4 and ip in ipv4_range for ip in addresses), addresses
        assert any(ip.version == 6 and ip in ipaddress.ip_network(headscale.IPV6_PREFIX)
                   for ip in addresses), addresses
        assert not status.get("Health"), status.get("Health")
    assert ipaddress.ip_address(tailnet.ip4(a)) in ipv4_range
    assert tailnet.ip4(a) != tailnet.ip4(b)
    nodes = json.loads(docker("exec", tailnet.headscale, "headscale", "nodes", "list",
                              "--output", "json").stdout)
    assert sorted(n["given_name"] for n in nodes) == ["mesh-a", "mesh-b"]


def test_tailscaled_talks_to_nothing_outside_the_network(tailnet: Tailnet) -> None:
    # No log upload, and no "bootstrap DNS" through Tailscale's public DERP servers
    # (which a login server given by name would set off).
    for host in tailnet.hosts:
        def journal(h: str = host) -> str:
            return on(h, "journalctl -u tailscaled --no-pager -o cat").stdout

        # Its home relay is Headscale's DERP, over TLS (plain http would never connect).
        wait_for(f"{host} to connect to DERP", lambda: "derp-999 connected" in journal(),
                 timeout=30)
        text = journal()
        for marker in ("bootstrapDNS", "log.tailscale.com", "controlplane.tailscale.com"):
            assert marker not in text, f"{host}: {marker}"


def test_a_reaches_b_directly_over_the_tailnet(tailnet: Tailnet) -> None:
    a, b = tailnet.hosts
    ip_a, ip_b = tailnet.ip4(a), tailnet.ip4(b)
    started = time.monotonic()
    ping = on(a, f"tailscale --socket={SOCKET} ping -c 10 --timeout 5s {ip_b}", timeout=90)
    tailnet.timings["tailscale ping (direct)"] = time.monotonic() - started
    last = ping.stdout.strip().splitlines()[-1]
    b_address = docker("inspect", "-f",
                       f"{{{{(index .NetworkSettings.Networks \"{tailnet.network}\").IPAddress}}}}",
                       b).stdout.strip()
    # Direct: the pong came from B's own address on the network, not through DERP.
    assert f"via {b_address}:" in last, ping.stdout
    _start_greeter(b, ip_b)
    greeting = _connect(a, ip_b)
    assert greeting == f"hello {ip_a}", greeting  # B saw A's tailnet address


def test_the_embedded_derp_relays_when_the_direct_path_is_blocked(tailnet: Tailnet) -> None:
    a, b = tailnet.hosts
    ip_a, ip_b = tailnet.ip4(a), tailnet.ip4(b)

    def address(host: str) -> IPv4Address:
        text = docker("inspect", "-f", f"{{{{(index .NetworkSettings.Networks "
                      f"\"{tailnet.network}\").IPAddress}}}}", host).stdout.strip()
        return IPv4Address(text)

    addr_a, addr_b = address(a), address(b)
    # Each host drops every packet to the other's network address; Headscale (control,
    # DERP, STUN) stays reachable.
    on(a, f"ip route add blackhole {addr_b}/32")
    on(b, f"ip route add blackhole {addr_a}/32")
    try:
        started = time.monotonic()
        ping = on(a, f"tailscale --socket={SOCKET} ping -c 5 --timeout 5s {ip_b}",
                  check=False, timeout=90)
        tailnet.timings["tailscale ping (relayed)"] = time.monotonic() - started
        pongs = [line for line in ping.stdout.splitlines() if line.startswith("pong")]
        assert pongs and all(f"via DERP({headscale.DERP_REGION_CODE})" in p for p in pongs), (
            ping.stdout + ping.stderr)
        _start_greeter(b, ip_b)
        assert _connect(a, ip_b) == f"hello {ip_a}"
    finally:
        on(a, f"ip route del blackhole {addr_b}/32", check=False)
        on(b, f"ip route del blackhole {addr_a}/32", check=False)


def _start_greeter(host: str, address: str) -> None:
    on(host, "cat > /tmp/greeter.py", input=GREETER)
    on(host, "systemctl is-active --quiet mesh-greeter || systemd-run --unit=mesh-greeter "
       f"python3 /tmp/greeter.py {address} {GREETER_PORT}")
    wait_for("the greeter to listen", lambda: f":{GREETER_PORT}" in on(
        host, "ss -ltn", check=False).stdout, timeout=15)


def _connect(host: str, address: str) -> str:
    script = ("import socket, sys; c = socket.create_connection((sys.argv[1], int(sys.argv[2])),"
              " timeout=10); print(c.recv(100).decode().strip())")
    return on(host, f"python3 -c '{script}' {address} {GREETER_PORT}").stdout.strip()
