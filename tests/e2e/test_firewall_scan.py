"""The firewall with real packets on a local fleet (INFRA_FIREWALL).

One fleet of two hosts (`infra up --bootstrap`: the bootstrap playbook applies the
firewall): node-1 is an edge, node-2 is not. On every host the test publishes busybox
containers the way the traefik role publishes Traefik (80 and 443 on edge hosts,
8000 on the private address) plus one on 8099 that nothing allows (a Compose
`ports:` mapping by mistake), and runs a plain listener on 8081 outside Docker.

Then it scans every host's ports from the outside (the controller, on the public
network) and from the other host (the private network), asserts the open set exactly,
prints the open-port table (run with -s) and writes it to a file
($STAGECRAFT_FIREWALL_SCAN_REPORT, else firewall-scan.md in the test's temp dir).

Rerun: .venv/bin/pytest -s tests/e2e/test_firewall_scan.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stagecraft.infra import firewall
from stagecraft.config import load_config

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

STAGECRAFT = str(Path(sys.executable).with_name("stagecraft"))
PORTS = (22, 80, 443, 8000, 8081, 8099)
PROBE_IMAGE = "fw-scan-probe:1"

# What must answer; every other port of PORTS must not.
EXPECTED_OPEN = {
    ("node-1", "public"): {80, 443},
    ("node-2", "public"): set(),
    ("node-1", "private"): {22, 80, 443, 8000},
    ("node-2", "private"): {22, 8000},
}

# Probes a list of (address, port) from wherever it runs; prints JSON [[addr, port, state]].
PROBE = textwrap.dedent("""\
    import json, socket, sys
    from concurrent.futures import ThreadPoolExecutor
    def probe(target):
        address, port = target
        try:
            with socket.create_connection((address, port), timeout=1.5):
                return [address, port, "open"]
        except socket.timeout:
            return [address, port, "filtered"]
        except ConnectionRefusedError:
            return [address, port, "refused"]
        except OSError:
            return [address, port, "filtered"]
    targets = json.loads(sys.argv[1])
    with ThreadPoolExecutor(len(targets)) as pool:
        print(json.dumps(list(pool.map(probe, targets))))
    """)


def stagecraft(project: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([STAGECRAFT, *args], cwd=project, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, "STAGECRAFT_ENV": "local"})


def docker_exec(container: str, *argv: str, input: str | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", "exec", "-i", container, *argv], capture_output=True,
                            text=True, input=input, timeout=timeout)
    assert result.returncode == 0, f"{container}: {argv}: {result.stderr[-2000:]}"
    return result


def probe_from_controller(targets: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
    def one(target: tuple[str, int]) -> tuple[tuple[str, int], str]:
        try:
            with socket.create_connection(target, timeout=1.5):
                return target, "open"
        except socket.timeout:
            return target, "filtered"
        except ConnectionRefusedError:
            return target, "refused"
        except OSError:
            return target, "filtered"
    with ThreadPoolExecutor(len(targets)) as pool:
        return dict(pool.map(one, targets))


def probe_from_host(container: str, targets: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
    result = docker_exec(container, "python3", "-c", PROBE, json.dumps(targets))
    return {(a, p): s for a, p, s in json.loads(result.stdout)}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    name = f"fw{uuid.uuid4().hex[:8]}"
    directory = tmp_path_factory.mktemp("firewall-scan")
    (directory / "stagecraft.yml").write_text(textwrap.dedent(f"""\
        version: 1
        project: {{ name: {name} }}
        services:
          web:
            image: web:1
            port: 8080
            healthcheck: {{ path: /up }}
            on: [app]
            routes: [{{ host: "{{domain}}" }}]
        firewall: {{ public: [80, 443], ssh: private }}
        environments:
          local:
            providers: {{ cloud: {{ kind: local, image: docker }} }}
            domain: {name}.localhost
            hosts:
              - {{ name: node-1, roles: [edge, app] }}
              - {{ name: node-2, roles: [app] }}
        """))
    try:
        up = stagecraft(directory, "infra", "up", "--bootstrap")
        assert up.returncode == 0, up.stderr[-4000:] + up.stdout[-2000:]
        yield directory
    finally:
        down = stagecraft(directory, "infra", "down", "--yes")
        assert down.returncode == 0, down.stderr[-4000:]


def hosts_of(project: Path) -> tuple[dict, dict[str, dict]]:
    document = json.loads((project / ".stagecraft" / "local" / "hosts.json").read_text())
    return document, {h["name"]: h for h in document["hosts"]}


def start_listeners(container: str, private_ip: str, edge: bool) -> None:
    """busybox (Debian's static build) as an image of the host's Docker (nothing can be
    pulled) and as a plain listener on 8081."""
    published = [f"{private_ip}:8000:80", "8099:80"] + (["80:80", "443:80"] if edge else [])
    script = textwrap.dedent(f"""\
        set -e
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
        mkdir -p /opt/probe/bin /opt/probe/www
        cp /bin/busybox /opt/probe/bin/busybox
        echo probe > /opt/probe/www/index.html
        tar -C /opt/probe -c bin www | docker import -c 'ENTRYPOINT ["/bin/busybox"]' - {PROBE_IMAGE} >/dev/null
        i=0
        for mapping in {' '.join(published)}; do
          i=$((i+1))
          docker run -d --name fw-scan-probe-$i -p "$mapping" {PROBE_IMAGE} httpd -f -p 80 -h /www >/dev/null
        done
        systemd-run --unit fw-scan-plain /bin/busybox httpd -f -p 8081 -h /opt/probe/www >/dev/null
        """)
    docker_exec(container, "bash", "-s", input=script)


def table(rows: list[tuple[str, str, str, str, dict[int, str]]]) -> str:
    head = "| host | roles | scanned from | address | " + " | ".join(map(str, PORTS)) + " |"
    lines = [head, "|" + "---|" * (4 + len(PORTS))]
    for host, roles, side, address, states in rows:
        cells = ["**open**" if states[p] == "open" else states[p] for p in PORTS]
        lines.append(f"| {host} | {roles} | {side} | {address} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def test_scan_shows_exactly_the_allowed_ports_from_each_side(fleet: Path, tmp_path: Path) -> None:
    document, hosts = hosts_of(fleet)
    containers = {name: h["provider_id"] for name, h in hosts.items()}
    for name, record in hosts.items():
        assert record["public_ip"], f"{name} has no address on the public network: {record}"
        start_listeners(containers[name], record["private_ip"], "edge" in record["roles"])

    # The controller reaches hosts through its end of the public network's bridge
    # (outside); each host scans the other over the private network (inside).
    public = probe_from_controller([(h["public_ip"], p) for h in hosts.values() for p in PORTS])
    private = {
        **probe_from_host(containers["node-2"], [(hosts["node-1"]["private_ip"], p) for p in PORTS]),
        **probe_from_host(containers["node-1"], [(hosts["node-2"]["private_ip"], p) for p in PORTS]),
    }
    rows = []
    for name, record in hosts.items():
        roles = ",".join(record["roles"])
        rows.append((name, roles, "outside (controller, public network)", record["public_ip"],
                     {p: public[(record["public_ip"], p)] for p in PORTS}))
        other = "node-2" if name == "node-1" else "node-1"
        rows.append((name, roles, f"{other} (private network)", record["private_ip"],
                     {p: private[(record["private_ip"], p)] for p in PORTS}))
    report = table(rows)
    out = Path(os.environ.get("STAGECRAFT_FIREWALL_SCAN_REPORT") or tmp_path / "firewall-scan.md")
    out.write_text(report + "\n")
    print(f"\nfirewall scan ({out}):\n{report}")

    for name, _roles, side, _address, states in rows:
        key = (name, "public" if side.startswith("outside") else "private")
        opened = {p for p, state in states.items() if state == "open"}
        assert opened == EXPECTED_OPEN[key], f"{key}: open {sorted(opened)}\n{report}"

    # The controller's own SSH (127.0.0.1, published to the private address) still works.
    for name in hosts:
        ssh = stagecraft(fleet, "ssh", name, "--", "true", timeout=120)
        assert ssh.returncode == 0, f"ssh {name}: {ssh.stderr[-1000:]}"


def test_without_the_table_docker_publishes_to_the_outside_and_a_reload_closes_it(
        fleet: Path) -> None:
    _, hosts = hosts_of(fleet)
    node = hosts["node-2"]
    target = [(node["public_ip"], 8099)]
    assert probe_from_controller(target)[target[0]] == "filtered"

    # The hole the firewall closes: Docker's DNAT sends a published port past the
    # input chain. With stagecraft's table gone, 8099 answers the outside.
    docker_exec(node["provider_id"], "nft", "delete", "table", "inet", "stagecraft")
    assert probe_from_controller(target)[target[0]] == "open"

    # nftables.service loads /etc/nftables.conf again, without touching Docker's rules.
    docker_exec(node["provider_id"], "systemctl", "reload", "nftables.service")
    assert probe_from_controller(target)[target[0]] == "filtered"
    tables = docker_exec(node["provider_id"], "nft", "list", "tables").stdout.split("\n")
    assert "table inet stagecraft" in tables and "table ip nat" in tables, tables


def test_ruleset_on_each_host_is_the_one_python_renders(fleet: Path) -> None:
    # What `plan` can diff: stagecraft.infra.firewall renders the role's own template.
    document, hosts = hosts_of(fleet)
    env = load_config(fleet / "stagecraft.yml").environment("local")
    for host in env.hosts:
        expected = firewall.render_ruleset(
            firewall.host_vars(env, host, [document["network"]["subnet"]]))
        on_host = docker_exec(hosts[host.name]["provider_id"], "cat", firewall.RULES_FILE).stdout
        assert on_host == expected, host.name
