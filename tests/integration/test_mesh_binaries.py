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

import contextlib
import ipaddress
import json
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

import pytest
from headscale_fixture import docker, headscale_server, on, wait_for

from stagecraft.providers.cloud.local import headscale
from stagecraft.providers.cloud.local.host_image import ensure_host_image
from stagecraft.providers.cloud.local.mesh_binaries import (
    HEADSCALE_VERSION,
    TAILSCALE_VERSION,
    MeshBinaries,
    ensure_mesh_binaries,
)
from stagecraft.providers.cloud.local.provider import HOST_RUN_FLAGS

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

LABEL = "org.stagecraft.test=mesh-binaries"
SOCKET = "/run/tailscale/tailscaled.sock"
#: What the tailscale role will install; here written by hand. --no-logs-no-support:
#: otherwise tailscaled uploads logs to log.tailscale.com (and asks Tailscale's DERP
#: servers for its address when DNS cannot find it); the --cleanup run at stop too.
TAILSCALED_UNIT = textwrap.dedent(f"""\
    [Unit]
    Description=Tailscale node agent
    Wants=network-pre.target
    After=network-pre.target

    [Service]
    ExecStart=/usr/local/sbin/tailscaled --state=/var/lib/tailscale/tailscaled.state \\
      --socket={SOCKET} --port=41641 --no-logs-no-support
    ExecStopPost=/usr/local/sbin/tailscaled --cleanup --no-logs-no-support
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
    host_image = ensure_host_image(print)
    timed("host image (cached or built)", started)

    with contextlib.ExitStack() as cleanup:
        # Undone in reverse: the hosts, then Headscale and the network, then the report.
        cleanup.callback(_print_timings, timings)
        server = cleanup.enter_context(
            headscale_server(tmp, "stagecraft-meshtest", LABEL, timings))
        hs_name, url = server.container, server.url
        hosts = [f"{server.network}-{n}" for n in ("a", "b")]
        cleanup.callback(_remove_containers, hosts)
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
                   "--network", server.network, host_image, "/sbin/init")
        for host in hosts:
            wait_for(f"systemd in {host}", lambda h=host: on(
                h, "systemctl is-system-running", check=False).stdout.strip()
                in ("running", "degraded"))
        timed("two host containers booted", started)

        started = time.monotonic()
        for host in hosts:
            docker("cp", str(binaries.tailscale), f"{host}:/usr/local/bin/tailscale")
            docker("cp", str(binaries.tailscaled), f"{host}:/usr/local/sbin/tailscaled")
            docker("cp", str(server.ca.cert_path),
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

        yield Tailnet(server.network, server.subnet, hs_name, server.ip, hosts,
                      binaries, timings)


def _remove_containers(names: list[str]) -> None:
    for name in names:
        docker("rm", "-fv", name, check=False)


def _print_timings(timings: dict[str, float]) -> None:
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
