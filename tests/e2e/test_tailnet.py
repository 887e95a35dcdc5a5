"""End to end: the example app on a local fleet whose hosts talk over a tailnet
(network ``headscale``, PROVIDER_NETWORK_TAILSCALE), for real.

examples/shop on two hosts: edge-1 (edge) and app-1 (app and db: web, worker, db), with
`providers.network: headscale` and `firewall.ssh: private`. The local cloud runs the
environment's Headscale and the controller's tailnet node; bootstrap joins the hosts
(stagecraft.platform.mesh) and then runs over the tailnet. One fleet for the module:

1. after infra up and bootstrap, mesh.json, both hosts' tailscaled and Headscale agree
   that both hosts are online on 100.64.0.0/10; a second bootstrap changes nothing;
2. the edge's Traefik sends every request to app-1's tailnet address: its routes file
   names only tailnet backends, app-1 counts the requests arriving on tailscale0 (and
   none on another interface), and the edge cannot reach app-1's port 8000 at any
   address on the Docker networks while it can at the tailnet one;
3. a deploy under load fails no request;
4. no SSH banner answers on any address of the hosts outside the tailnet (their Docker
   networks, the ports published on 127.0.0.1), while `stagecraft ssh` works, over
   the tailnet;
5. a restarted tailscaled comes back with the same address and no key (there is none
   to be had), the fleet works again and the next bootstrap's mesh play changes nothing;
6. infra down removes the hosts, Headscale, the controller's node and their volumes.

Figures (timings, request counts, counters) are printed: run with -s.

Rerun: PYTHONPATH=. .venv/bin/pytest -s tests/e2e/test_tailnet.py
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import socket
import subprocess
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from shop_fleet import (
    ENV,
    LOAD_REQUESTS,
    REPO,
    STAGECRAFT,
    Edge,
    config_value,
    copy_example,
    host_records,
    project_name,
    run_under_load,
    set_env_value,
)

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

TAILNET = ipaddress.ip_network("100.64.0.0/10")
ENVIRONMENT = "local"
EDGE, APP = "edge-1", "app-1"
TRAEFIK_PRIVATE_PORT = 8000

# The shop's local environment as two hosts on a tailnet: an edge only, and the app
# host with the database (migrations run where the database is, from web's image,
# which only hosts that run web pull).
EDITS = {
    "  network:  { kind: none }": "  network:  { kind: headscale }",
    "      - { name: local-1, roles: [edge, app, db], volumes: [pgdata] }\n"
    "      - { name: local-2, roles: [app] }":
        f"      - {{ name: {EDGE}, roles: [edge] }}\n"
        f"      - {{ name: {APP}, roles: [app, db], volumes: [pgdata] }}",
    "    migrations: { host: local-1 }": f"    migrations: {{ host: {APP} }}",
}

# The CLI runs this worktree's code, whatever the venv's editable install points at.
CLI_ENV = {**ENV, "PYTHONPATH": os.pathsep.join(
    p for p in (str(REPO), ENV.get("PYTHONPATH", "")) if p)}


def cli(project: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([STAGECRAFT, *args], cwd=project, capture_output=True, text=True,
                          check=False, timeout=timeout, stdin=subprocess.DEVNULL, env=CLI_ENV)


def docker(*args: str, check: bool = True, input: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, input=input,
                          timeout=timeout, check=False)
    if check:
        assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stderr[-2000:]}"
    return proc


def on(container: str, *argv: str, check: bool = True, input: str | None = None,
       timeout: float = 120) -> subprocess.CompletedProcess:
    return docker("exec", "-i", container, *argv, check=check, input=input, timeout=timeout)


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
class MeshFleet:
    project: Path
    name: str
    figures: dict[str, float] = field(default_factory=dict)
    bootstrap: dict = field(default_factory=dict)
    down: subprocess.CompletedProcess | None = None

    @property
    def state_dir(self) -> Path:
        return self.project / ".stagecraft" / ENVIRONMENT

    @property
    def headscale(self) -> str:
        return f"stagecraft-{self.name}-{ENVIRONMENT}-headscale"

    @property
    def tailnode(self) -> str:
        return f"stagecraft-{self.name}-{ENVIRONMENT}-tailnode"

    def container(self, host: str) -> str:
        return host_records(self.project)[host]["provider_id"]

    def mesh(self) -> dict[str, dict]:
        return json.loads((self.state_dir / "mesh.json").read_text())["nodes"]

    def tailnet_ip(self, host: str) -> str:
        return self.mesh()[host]["ipv4"]

    def status(self, host: str) -> dict:
        """`tailscale status --json` on ``host``."""
        return json.loads(on(self.container(host), "tailscale", "status", "--json").stdout)

    def headscale_nodes(self) -> list[dict]:
        return json.loads(docker("exec", self.headscale, "headscale", "nodes", "list",
                                 "--output", "json").stdout) or []

    def docker_addresses(self, host: str) -> dict[str, str]:
        """Network -> the host container's address on that Docker network."""
        found = json.loads(docker("inspect", self.container(host)).stdout)[0]
        return {net: data["IPAddress"]
                for net, data in found["NetworkSettings"]["Networks"].items()
                if data.get("IPAddress")}

    def latest_run(self, kind: str) -> dict:
        """result.json of the newest `<kind>-local` run (mesh, bootstrap)."""
        runs = sorted((self.project / ".stagecraft" / "runs").glob(f"*Z-{kind}-{ENVIRONMENT}"))
        assert runs, f"no {kind} run recorded"
        return json.loads(next((runs[-1] / "artifacts").glob("*/result.json")).read_text())

    def leftovers(self) -> list[str]:
        """Containers and volumes of this project that are still there."""
        containers = docker("ps", "-a", "--filter", f"label=org.stagecraft.project={self.name}",
                            "--format", "{{.Names}}").stdout.split()
        named = docker("ps", "-a", "--filter", f"name=stagecraft-{self.name}-",
                       "--format", "{{.Names}}").stdout.split()
        volumes = docker("volume", "ls", "--filter", f"name=stagecraft-{self.name}-",
                         "--format", "{{.Name}}").stdout.split()
        return sorted({*(f"container {c}" for c in containers + named),
                       *(f"volume {v}" for v in volumes)})


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    project = copy_example(tmp_path_factory.mktemp("tailnet"), "tn", EDITS)
    text = (project / "stagecraft.yml").read_text()
    assert "kind: headscale" in text and f"name: {APP}" in text, "the edits did not apply"
    state = MeshFleet(project, project_name(project))
    try:
        started = time.monotonic()
        up = cli(project, "infra", "up")
        state.figures["infra up"] = time.monotonic() - started
        print(f"\ninfra up {state.figures['infra up']:.1f} s")
        assert up.returncode == 0, up.stderr[-4000:]
        started = time.monotonic()
        boot = cli(project, "bootstrap", "--output", "json")
        state.figures["bootstrap"] = time.monotonic() - started
        print(f"bootstrap (mesh + bootstrap) {state.figures['bootstrap']:.1f} s")
        assert boot.returncode == 0, boot.stderr[-6000:]
        state.bootstrap = json.loads(boot.stdout.splitlines()[-1])
        started = time.monotonic()
        set_env_value(project, "APP_VERSION", "v1")
        deploy = cli(project, "deploy", "--yes")
        state.figures["first deploy"] = time.monotonic() - started
        print(f"first deploy (images built) {state.figures['first deploy']:.1f} s")
        assert deploy.returncode == 0, deploy.stderr[-6000:]
        yield state
    finally:
        if state.down is None:
            state.down = cli(project, "infra", "down", "--yes")
        assert state.down.returncode == 0, state.down.stderr[-4000:]
        left = state.leftovers()
        assert left == [], f"infra down left these behind: {left}"


@pytest.fixture(scope="module")
def edge(fleet: MeshFleet) -> Edge:
    return Edge.of(fleet.project)


def node_online(status: dict, host: str) -> dict | None:
    """The peer called ``host`` in a `tailscale status --json`, when it is online."""
    for peer in (status.get("Peer") or {}).values():
        if peer.get("HostName") == host and peer.get("Online"):
            return peer
    return None


def test_1_both_hosts_join_and_a_second_bootstrap_changes_nothing(fleet: MeshFleet) -> None:
    nodes = fleet.mesh()
    assert sorted(nodes) == [APP, EDGE], nodes
    addresses = {name: node["ipv4"] for name, node in nodes.items()}
    for name, address in addresses.items():
        assert ipaddress.ip_address(address) in TAILNET, (name, address)
    assert len(set(addresses.values())) == 2, addresses
    print(f"\ntailnet addresses: {addresses}")

    # Each host's tailscaled: Running at the recorded address, the other host online.
    for host, other in ((EDGE, APP), (APP, EDGE)):
        status = fleet.status(host)
        assert status["BackendState"] == "Running", status["BackendState"]
        assert addresses[host] in status["Self"]["TailscaleIPs"], status["Self"]
        peer = node_online(status, other)
        assert peer is not None, f"{host} does not see {other} online: {status.get('Peer')}"
        assert addresses[other] in peer["TailscaleIPs"], peer

    # Headscale: the two hosts and the controller's node, all online.
    listed = {n["given_name"]: n for n in fleet.headscale_nodes()}
    assert set(listed) == {EDGE, APP, "stagecraft-controller"}, sorted(listed)
    assert all(n.get("online") for n in listed.values()), \
        {name: n.get("online") for name, n in listed.items()}
    for host in (EDGE, APP):
        assert addresses[host] in listed[host]["ip_addresses"], listed[host]

    # The first bootstrap did work; a second one changes nothing in either play.
    assert sum(h["changed"] for h in fleet.bootstrap["hosts"].values()) > 0, fleet.bootstrap
    started = time.monotonic()
    again = cli(fleet.project, "bootstrap", "--output", "json")
    seconds = time.monotonic() - started
    assert again.returncode == 0, again.stderr[-6000:]
    outcome = json.loads(again.stdout.splitlines()[-1])
    mesh = fleet.latest_run("mesh")
    changes = {"mesh": {h: s["changed"] for h, s in mesh["hosts"].items()},
               "bootstrap": {h: s["changed"] for h, s in outcome["hosts"].items()}}
    print(f"second bootstrap {seconds:.1f} s, changes {changes}")
    assert set(changes["mesh"]) == set(changes["bootstrap"]) == {EDGE, APP}, changes
    assert all(n == 0 for play in changes.values() for n in play.values()), changes
    # ... and it ran this worktree's playbooks, over the tailnet.
    assert mesh["status"] == "successful"
    assert fleet.mesh() == nodes


# Named nft counters on app-1, ahead of everything (before conntrack and Docker's
# DNAT): packets to port 8000 by the interface they arrive on.
COUNTERS = textwrap.dedent("""\
    table inet e2e_tailnet
    delete table inet e2e_tailnet
    table inet e2e_tailnet {
        counter via_tailnet { }
        counter via_other { }
        chain prerouting {
            type filter hook prerouting priority -400; policy accept;
            iifname "tailscale0" tcp dport 8000 counter name "via_tailnet"
            iifname != "tailscale0" tcp dport 8000 counter name "via_other"
        }
    }
    """)


def read_counters(container: str) -> dict[str, tuple[int, int]]:
    listed = json.loads(on(container, "nft", "-j", "list", "counters", "table", "inet",
                           "e2e_tailnet").stdout)
    return {item["counter"]["name"]: (item["counter"]["packets"], item["counter"]["bytes"])
            for item in listed["nftables"] if "counter" in item}


def link_bytes(container: str) -> tuple[int, int]:
    out = on(container, "cat", "/sys/class/net/tailscale0/statistics/rx_bytes",
             "/sys/class/net/tailscale0/statistics/tx_bytes").stdout.split()
    return int(out[0]), int(out[1])


# Run on the edge host itself: TCP connect to each target, then for the open ones a
# GET with the route's Host header.
PROBE = textwrap.dedent("""\
    import http.client, json, socket, sys
    from concurrent.futures import ThreadPoolExecutor
    host_header, targets = sys.argv[1], json.loads(sys.argv[2])
    def probe(target):
        address, port = target
        try:
            socket.create_connection((address, port), timeout=3).close()
        except socket.timeout:
            return [address, port, "timeout", None]
        except OSError as exc:
            return [address, port, type(exc).__name__, None]
        conn = http.client.HTTPConnection(address, port, timeout=5)
        try:
            conn.request("GET", "/version", headers={"Host": host_header})
            return [address, port, "open", conn.getresponse().status]
        except (OSError, http.client.HTTPException) as exc:
            return [address, port, "open", type(exc).__name__]
        finally:
            conn.close()
    with ThreadPoolExecutor(len(targets)) as pool:
        print(json.dumps(list(pool.map(probe, targets))))
    """)


def test_2_the_edge_reaches_the_app_host_only_over_the_tailnet(fleet: MeshFleet, edge: Edge) -> None:
    app_ip = fleet.tailnet_ip(APP)

    # (a) Every backend of the edge's Traefik is app-1's tailnet address.
    routes_file = f"/opt/stagecraft/{fleet.name}/{ENVIRONMENT}/traefik/dynamic/routes.yml"
    routes = yaml.safe_load(on(fleet.container(EDGE), "cat", routes_file).stdout)
    urls = [server["url"] for service in routes["http"]["services"].values()
            for server in service["loadBalancer"]["servers"]]
    assert urls, routes
    assert urls == [f"http://{app_ip}:{TRAEFIK_PRIVATE_PORT}"] * len(urls), urls

    # (b) Requests through the edge arrive at app-1 on tailscale0, and only there.
    app = fleet.container(APP)
    on(app, "nft", "-f", "-", input=COUNTERS)
    try:
        # The link's window holds the counters' window (link read first, then
        # counters; counters, then link), so a late packet of an earlier connection
        # landing between two reads cannot make the counters exceed the link.
        link_before = link_bytes(app)
        before = read_counters(app)
        requests = 200
        for _ in range(requests):
            status, body = edge.get("/version")
            assert status == 200, (status, body)
        after = read_counters(app)
        link_after = link_bytes(app)
        tailnet_packets = after["via_tailnet"][0] - before["via_tailnet"][0]
        tailnet_bytes = after["via_tailnet"][1] - before["via_tailnet"][1]
        other_packets = after["via_other"][0] - before["via_other"][0]
        rx, tx = (link_after[0] - link_before[0], link_after[1] - link_before[1])
        print(f"\n{requests} requests through the edge: app-1 counted {tailnet_packets} "
              f"packets / {tailnet_bytes} bytes to port 8000 on tailscale0, {other_packets} "
              f"on other interfaces; tailscale0 rx +{rx} B, tx +{tx} B")
        # Each request is at least its request line and Host header (~60 bytes).
        assert tailnet_bytes >= requests * 60, (tailnet_bytes, requests)
        assert rx >= tailnet_bytes and tx >= requests * 60, (rx, tx)
        assert other_packets == 0, after

        # From the edge host itself: app-1's port 8000 answers at its tailnet address
        # only, not at its addresses on the Docker networks.
        docker_ips = fleet.docker_addresses(APP)
        assert docker_ips, "app-1 has no address on a Docker network"
        targets = [[app_ip, TRAEFIK_PRIVATE_PORT]] + \
            [[ip, TRAEFIK_PRIVATE_PORT] for ip in docker_ips.values()]
        probed = json.loads(on(fleet.container(EDGE), "python3", "-c", PROBE,
                               config_value(fleet.project, "domain"),
                               json.dumps(targets)).stdout)
        print("from edge-1 to app-1:8000: " + ", ".join(
            f"{a} {state}" + (f" HTTP {code}" if code else "") for a, _p, state, code in probed))
        results = {a: (state, code) for a, _p, state, code in probed}
        assert results[app_ip] == ("open", 200), results
        for net, ip in docker_ips.items():
            assert results[ip][0] != "open", f"app-1's {net} address {ip}: {results[ip]}"
        # Those attempts did reach app-1 (on another interface) and were dropped there.
        assert read_counters(app)["via_other"][0] > after["via_other"][0]
    finally:
        on(app, "nft", "delete", "table", "inet", "e2e_tailnet", check=False)


def test_3_a_deploy_under_load_fails_no_request(fleet: MeshFleet, edge: Edge) -> None:
    set_env_value(fleet.project, "APP_VERSION", "v2")
    started = time.monotonic()
    result, loop = run_under_load(edge, "deploy", "--yes", project=fleet.project, runner=cli)
    seconds = time.monotonic() - started
    print(f"\ndeploy v2 under load: {seconds:.1f} s, {loop.sent} requests, "
          f"{len(loop.failures)} failed, versions {dict(loop.versions)}")
    assert result.returncode == 0, result.stderr[-6000:]
    assert loop.sent >= LOAD_REQUESTS
    assert loop.failures == [], loop.failures[:10]
    assert set(loop.versions) <= {"v1", "v2"} and loop.versions["v2"] > 0, loop.versions
    assert edge.version() == "v2"


def ssh_banner(address: str, port: int) -> str:
    """What answers at address:port in 5 s: the SSH banner, or why nothing does."""
    try:
        with socket.create_connection((address, port), timeout=5) as sock:
            sock.settimeout(5)
            data = sock.recv(64)
    except socket.timeout:
        return "timeout"
    except OSError as exc:
        return type(exc).__name__
    return data.decode(errors="replace").strip() if data else "closed"


def test_4_ssh_answers_only_over_the_tailnet(fleet: MeshFleet) -> None:
    records = host_records(fleet.project)
    targets = [(host, f"127.0.0.1:{records[host]['ssh_port']}", "127.0.0.1",
                records[host]["ssh_port"]) for host in (EDGE, APP)]
    for host in (EDGE, APP):
        targets += [(host, f"{net} {ip}:22", ip, 22)
                    for net, ip in fleet.docker_addresses(host).items()]
    with ThreadPoolExecutor(len(targets)) as pool:
        answers = list(pool.map(lambda t: ssh_banner(t[2], t[3]), targets))
    print()
    for (host, where, _a, _p), answer in zip(targets, answers):
        print(f"ssh {host} at {where}: {answer}")
    banners = [(host, where, a) for (host, where, _, _), a in zip(targets, answers)
               if a.startswith("SSH-")]
    assert banners == [], banners
    # The docker-proxy on 127.0.0.1 takes the connection: that is not SSH answering.
    assert all(r["ssh_port"] for r in records.values())

    for host in (EDGE, APP):
        result = cli(fleet.project, "ssh", host, "--", "hostname; echo $SSH_CONNECTION",
                     timeout=120)
        assert result.returncode == 0, f"ssh {host}: {result.stderr[-2000:]}"
        name, connection = result.stdout.split("\n")[:2]
        client, _cport, server, sport = connection.split()
        print(f"stagecraft ssh {host}: hostname {name}, from {client} to {server}:{sport}")
        assert name == host
        # The session came in over the tailnet: from the controller's node.
        assert server == fleet.tailnet_ip(host) and sport == "22", connection
        assert ipaddress.ip_address(client) in TAILNET, connection


def test_5_a_restarted_tailscaled_rejoins_without_a_key(fleet: MeshFleet, edge: Edge) -> None:
    app = fleet.container(APP)
    address = fleet.tailnet_ip(APP)
    node_ids = {n["given_name"]: n["id"] for n in fleet.headscale_nodes()}
    # No key anywhere: not on the host, not in the project's state.
    on(app, "test", "!", "-e", "/var/lib/tailscale/stagecraft-auth-key")
    assert on(app, "grep", "-rl", "hskey", "/etc/default/tailscaled",
              "/var/lib/tailscale/stagecraft-up-args.sha256", check=False).returncode == 1
    stored = subprocess.run(["grep", "-rl", "hskey-auth", str(fleet.project / ".stagecraft")],
                            capture_output=True, text=True, check=False)
    assert stored.returncode == 1, f"a key is stored in {stored.stdout}"

    started = time.monotonic()
    on(app, "systemctl", "restart", "tailscaled")

    def running_again() -> str | None:
        proc = on(app, "tailscale", "status", "--json", check=False)
        try:
            status = json.loads(proc.stdout)
        except ValueError:
            return None
        if status.get("BackendState") == "Running" and status["Self"].get("Online"):
            return status["Self"]["TailscaleIPs"][0]
        return None

    back = wait_for("app-1's tailscaled Running again", running_again, timeout=60)
    rejoined = time.monotonic() - started
    assert back == address, (back, address)
    assert {n["given_name"]: n["id"] for n in fleet.headscale_nodes()} == node_ids

    def through_edge() -> bool:
        try:
            return edge.get("/version", timeout=3)[0] == 200
        except (OSError, http.client.HTTPException):
            return False

    wait_for("a request through the edge to succeed", through_edge, timeout=60)
    serving = time.monotonic() - started
    ssh = cli(fleet.project, "ssh", APP, "--", "true", timeout=120)
    assert ssh.returncode == 0, ssh.stderr[-2000:]
    print(f"\ntailscaled restarted on app-1: Running at {back} after {rejoined:.1f} s, "
          f"serving through the edge after {serving:.1f} s")

    # The join finds the node Running with the arguments it was given: no `tailscale up`.
    started = time.monotonic()
    again = cli(fleet.project, "bootstrap", "--limit", APP, "--output", "json")
    assert again.returncode == 0, again.stderr[-6000:]
    mesh = fleet.latest_run("mesh")
    changes = {h: s["changed"] for h, s in mesh["hosts"].items()}
    boot = {h: s["changed"] for h, s in json.loads(again.stdout.splitlines()[-1])["hosts"].items()}
    print(f"bootstrap of app-1 after the restart {time.monotonic() - started:.1f} s: mesh "
          f"changes {changes}, bootstrap changes {boot}")
    assert changes == {APP: 0}, changes
    assert boot == {APP: 0}, boot
    assert fleet.tailnet_ip(APP) == address


def test_6_infra_down_removes_the_tailnet(fleet: MeshFleet) -> None:
    tailnet = {f"container {fleet.headscale}", f"container {fleet.tailnode}",
               f"volume {fleet.headscale}", f"volume {fleet.tailnode}-state"}
    before = fleet.leftovers()
    assert tailnet <= set(before), before
    started = time.monotonic()
    fleet.down = cli(fleet.project, "infra", "down", "--yes")
    seconds = time.monotonic() - started
    assert fleet.down.returncode == 0, fleet.down.stderr[-4000:]
    print(f"\ninfra down {seconds:.1f} s, removed {len(before)} containers and volumes:")
    print("\n".join(f"  {line}" for line in fleet.down.stdout.splitlines()
                    if "container" in line or "volume" in line))
    for container in (fleet.headscale, fleet.tailnode):
        assert docker("inspect", container, check=False).returncode != 0, container
    assert fleet.leftovers() == []
    assert not (fleet.state_dir / "mesh.json").exists()
    assert not (fleet.state_dir / "tailnet").exists()
