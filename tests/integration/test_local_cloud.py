"""The local cloud against the real Docker Engine: systemd hosts, real sshd, real ssh,
the environment's registry, and the edge host's published web ports.

One fleet of two hosts is made for the module; the tests run in file order (up,
inspect, restart, orphan, down) and the fixture's finalizer removes whatever is
left, even when a test failed half-way. The registry's own end-to-end test (push,
verified pulls on a bootstrapped host) is tests/integration/test_local_registry.py.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stagecraft.errors import ProviderError
from stagecraft.providers.cloud import (
    CREATED,
    MISSING,
    ORPHANED,
    RUNNING,
    STARTED,
    STOPPED,
    UNCHANGED,
    FleetSpec,
    HostSpec,
    get_cloud_provider,
)
from stagecraft.providers.cloud.local import addressing
from stagecraft.providers.cloud.local.provider import LABEL_HOST, LABEL_PROJECT

pytestmark = pytest.mark.fleet


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check,
                          timeout=120)


def ssh(access, record, command: str, known_hosts: Path | None = None):
    """Run ``command`` on a host with the real ssh client, host key checking on."""
    options = access.ssh_options()
    if known_hosts is not None:
        options[options.index(f"UserKnownHostsFile={access.known_hosts}")] = (
            f"UserKnownHostsFile={known_hosts}")
    return subprocess.run(
        ["ssh", *options, "-o", "ConnectTimeout=10", "-p", str(record.ssh_port),
         f"{record.ssh_user}@{record.ssh_host}", command],
        capture_output=True, text=True, timeout=60,
    )


class Fleet:
    def __init__(self, tmp: Path) -> None:
        self.project = f"it-{secrets.token_hex(3)}"
        self.spec = FleetSpec(self.project, "test", (
            HostSpec("web-1", ("edge", "app")),
            HostSpec("db-1", ("db",), size="s-2vcpu-4gb", volumes=("pgdata",)),
        ))
        self.state_dir = tmp / ".stagecraft" / "test"
        self.cloud = get_cloud_provider("local")
        self.log: list[str] = []
        self.records = self.cloud.up(self.spec, self.state_dir, log=self.log.append)
        self.access = self.cloud.ssh_access(self.spec, self.state_dir)
        self.container_ids = {r.name: r.provider_id for r in self.records}
        self.anonymous_volumes = [
            m["Name"]
            for cid in self.container_ids.values()
            for m in json.loads(docker("inspect", "-f", "{{json .Mounts}}", cid).stdout)
            if m["Type"] == "volume" and m["Destination"] == "/var/lib/docker"
        ]

    def by_name(self, records):
        return {r.name: r for r in records}

    def labelled_containers(self) -> list[str]:
        """Every container of the project: hosts and the registry."""
        label = f"label={LABEL_PROJECT}={self.project}"
        return docker("ps", "-aq", "--filter", label).stdout.split()

    def host_containers(self) -> list[str]:
        label = f"label={LABEL_PROJECT}={self.project}"
        return docker("ps", "-aq", "--filter", label,
                      "--filter", f"label={LABEL_HOST}").stdout.split()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    made = Fleet(tmp_path_factory.mktemp("local-cloud"))
    try:
        yield made
    finally:
        made.cloud.down(made.spec, made.state_dir)
        # A safety net in case down itself is what broke.
        leftover = made.labelled_containers()
        if leftover:
            docker("rm", "-fv", *leftover, check=False)
        docker("volume", "rm", addressing.registry_volume_name(made.project, "test"), check=False)
        docker("network", "rm", addressing.network_name(made.project, "test"), check=False)


def test_up_creates_every_host_running_systemd(fleet):
    records = fleet.by_name(fleet.records)
    assert list(records) == ["web-1", "db-1"]
    assert {r.change for r in records.values()} == {CREATED}
    for name, record in records.items():
        assert record.state == RUNNING
        state = docker("exec", record.provider_id, "systemctl", "is-system-running", "--wait")
        assert state.stdout.strip() == "running", f"{name}: {state.stdout}{state.stderr}"
        assert docker("exec", record.provider_id, "hostname").stdout.strip() == name
        host_config = json.loads(docker("inspect", "-f", "{{json .HostConfig}}",
                                        record.provider_id).stdout)
        assert host_config["Privileged"] is False
        assert host_config["CgroupnsMode"] == "host"
        assert host_config["PortBindings"]["22/tcp"] == [
            {"HostIp": "127.0.0.1", "HostPort": str(record.ssh_port)}
        ]
    assert records["web-1"].roles == ("edge", "app")
    assert records["db-1"].size == "s-2vcpu-4gb"


def test_edge_host_publishes_its_web_ports_on_localhost_only(fleet):
    records = fleet.by_name(fleet.records)
    web, db = records["web-1"], records["db-1"]
    assert web.http_port and web.https_port and web.http_port != web.https_port
    assert db.http_port is None and db.https_port is None, "not an edge host"
    bindings = json.loads(docker("inspect", "-f", "{{json .HostConfig.PortBindings}}",
                                 web.provider_id).stdout)
    assert bindings["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(web.http_port)}]
    assert bindings["443/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(web.https_port)}]
    # Something listening on the host's port 80 answers on the controller's port.
    docker("exec", "-d", web.provider_id, "python3", "-m", "http.server", "80",
           "--directory", "/etc")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web.http_port}/hostname",
                                            timeout=5) as response:
                    assert response.read().decode().strip() == "web-1"
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "port 80 of web-1 never answered"
                time.sleep(0.5)
    finally:
        docker("exec", web.provider_id, "pkill", "-f", "http.server", check=False)


def test_registry_runs_on_the_network_with_tls_from_the_environment_ca(fleet):
    name = addressing.registry_container_name(fleet.project, "test")
    container = json.loads(docker("inspect", name).stdout)[0]
    assert container["State"]["Status"] == "running"
    assert container["HostConfig"]["Privileged"] is False
    net = addressing.network_name(fleet.project, "test")
    address = container["NetworkSettings"]["Networks"][net]["IPAddress"]
    assert address.endswith(".128")
    access = fleet.cloud.registry_access(fleet.spec, fleet.state_dir)
    assert access.pull_server == f"{address}:5000"
    assert container["HostConfig"]["PortBindings"]["5000/tcp"] == [
        {"HostIp": "127.0.0.1", "HostPort": access.push_server.split(":")[1]}]
    # Verified with the CA alone; asks for credentials, accepts the right ones only.
    context = ssl.create_default_context(cadata=access.ca_pem)
    url = f"https://{access.push_server}/v2/"

    def status(auth: tuple[str, str] | None) -> int:
        request = urllib.request.Request(url)
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert status(None) == 401
    assert status((access.username, "wrong")) == 401
    assert status((access.username, access.password)) == 200
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(url, context=ssl.create_default_context(), timeout=10)
    # The bootstrap role gets the registry and the CA.
    variables = fleet.cloud.bootstrap_vars(fleet.spec, fleet.state_dir)
    assert variables["bootstrap_registry_server"] == access.pull_server
    assert variables["bootstrap_registry_ca_pem"] == access.ca_pem


def test_hosts_share_a_private_network_with_stable_addresses(fleet):
    records = fleet.by_name(fleet.records)
    net = addressing.network_name(fleet.project, "test")
    network = json.loads(docker("network", "inspect", net).stdout)[0]
    subnet = network["IPAM"]["Config"][0]["Subnet"]
    assert subnet.startswith("10.")
    prefix = subnet.rsplit(".", 1)[0]
    assert records["web-1"].private_ip == f"{prefix}.10"
    assert records["db-1"].private_ip == f"{prefix}.11"
    ping = docker("exec", records["web-1"].provider_id, "bash", "-c",
                  f"exec 3<>/dev/tcp/{records['db-1'].private_ip}/22 && head -c 4 <&3")
    assert ping.stdout == "SSH-"


def test_ssh_works_with_the_generated_key_and_pinned_host_keys(fleet):
    for record in fleet.records:
        result = ssh(fleet.access, record, "hostname && systemctl is-active ssh")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [record.name, "active"]


def test_ssh_refuses_a_host_whose_key_is_not_pinned(fleet, tmp_path):
    # Proves host key checking is on: the same connection fails without our known_hosts.
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    result = ssh(fleet.access, fleet.records[0], "true", known_hosts=empty)
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr


def test_state_dir_holds_the_key_pair_known_hosts_hosts_json_ca_and_registry(fleet):
    files = {p.name for p in fleet.state_dir.iterdir()}
    # volumes/: db-1's pgdata as a loop-device file (loopdev), recorded in volumes.json.
    assert files == {"hosts.json", "known_hosts", "id_ed25519", "id_ed25519.pub", "ca",
                     "registry", "volumes", "volumes.json"}
    assert (fleet.state_dir / "id_ed25519").stat().st_mode & 0o077 == 0
    for secret in ("ca/ca.key", "registry/password", "registry/htpasswd",
                   "registry/registry.key"):
        assert (fleet.state_dir / secret).stat().st_mode & 0o077 == 0, secret
    document = json.loads((fleet.state_dir / "hosts.json").read_text())
    assert document["provider"] == "local"
    assert document["project"] == fleet.project and document["environment"] == "test"
    assert document["ssh"]["private_key"] == "id_ed25519"
    hosts = {h["name"]: h for h in document["hosts"]}
    assert hosts["web-1"] == {k: v for k, v in fleet.records[0].to_dict().items() if k != "change"}
    access = fleet.cloud.registry_access(fleet.spec, fleet.state_dir)
    assert document["registry"]["pull_server"] == access.pull_server
    assert document["registry"]["push_server"] == access.push_server
    known = (fleet.state_dir / "known_hosts").read_text()
    for record in fleet.records:
        assert f"[127.0.0.1]:{record.ssh_port},{record.private_ip} ssh-ed25519 " in known


def test_second_up_changes_nothing(fleet):
    registry = addressing.registry_container_name(fleet.project, "test")
    registry_id = docker("inspect", "-f", "{{.Id}}", registry).stdout.strip()
    access = fleet.cloud.registry_access(fleet.spec, fleet.state_dir)
    again = fleet.cloud.up(fleet.spec, fleet.state_dir)
    assert [r.change for r in again] == [UNCHANGED, UNCHANGED]
    assert [r.provider_id for r in again] == [r.provider_id for r in fleet.records]
    assert [r.ssh_port for r in again] == [r.ssh_port for r in fleet.records]
    assert [r.http_port for r in again] == [r.http_port for r in fleet.records]
    assert docker("inspect", "-f", "{{.Id}}", registry).stdout.strip() == registry_id
    assert fleet.cloud.registry_access(fleet.spec, fleet.state_dir) == access


def test_a_stopped_registry_is_started_by_up_on_its_port(fleet):
    registry = addressing.registry_container_name(fleet.project, "test")
    access = fleet.cloud.registry_access(fleet.spec, fleet.state_dir)
    docker("stop", registry)
    with pytest.raises(ProviderError, match="is not running"):
        fleet.cloud.registry_access(fleet.spec, fleet.state_dir)
    fleet.cloud.up(fleet.spec, fleet.state_dir)
    assert fleet.cloud.registry_access(fleet.spec, fleet.state_dir) == access


def test_status_lists_hosts_and_a_stopped_host_comes_back_on_its_port(fleet):
    db = fleet.by_name(fleet.records)["db-1"]
    docker("stop", db.provider_id)
    status = fleet.by_name(fleet.cloud.status(fleet.spec, fleet.state_dir))
    assert status["web-1"].state == RUNNING and status["db-1"].state == STOPPED
    assert status["db-1"].ssh_port == db.ssh_port and status["db-1"].private_ip == db.private_ip

    records = fleet.by_name(fleet.cloud.up(fleet.spec, fleet.state_dir))
    assert records["db-1"].change == STARTED and records["web-1"].change == UNCHANGED
    assert records["db-1"].ssh_port == db.ssh_port
    result = ssh(fleet.access, records["db-1"],
                 "test -b /dev/disk/by-id/scsi-0DO_Volume_pgdata && hostname")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "db-1"


def test_host_removed_from_the_spec_is_reported_not_deleted(fleet):
    smaller = FleetSpec(fleet.project, "test", (fleet.spec.hosts[0],))
    records = fleet.cloud.up(smaller, fleet.state_dir)
    assert [(r.name, r.change, r.in_spec) for r in records] == [
        ("web-1", UNCHANGED, True), ("db-1", ORPHANED, False)
    ]
    assert len(fleet.host_containers()) == 2
    document = json.loads((fleet.state_dir / "hosts.json").read_text())
    assert [h["name"] for h in document["hosts"]] == ["web-1"]
    status = fleet.cloud.status(smaller, fleet.state_dir)
    assert [(r.name, r.in_spec) for r in status] == [("web-1", True), ("db-1", False)]


def test_down_removes_hosts_volumes_network_and_files_and_is_idempotent(fleet):
    net = addressing.network_name(fleet.project, "test")
    named_volume = addressing.volume_name(fleet.project, "test", "pgdata")
    registry_volume = addressing.registry_volume_name(fleet.project, "test")
    assert fleet.anonymous_volumes, "each host has an anonymous /var/lib/docker volume"
    assert docker("volume", "inspect", registry_volume, check=False).returncode == 0

    result = fleet.cloud.down(fleet.spec, fleet.state_dir)
    assert result.changed
    assert sorted((h.name, h.change, h.state) for h in result.hosts) == [
        ("db-1", "removed", MISSING), ("web-1", "removed", MISSING)
    ]
    assert fleet.labelled_containers() == []
    for volume in [*fleet.anonymous_volumes, named_volume, registry_volume]:
        assert docker("volume", "inspect", volume, check=False).returncode != 0, volume
    assert docker("network", "inspect", net, check=False).returncode != 0
    assert not fleet.state_dir.exists()
    assert any(r.startswith("container ") and r.endswith("-registry") for r in result.removed)
    with pytest.raises(ProviderError, match="has no registry"):
        fleet.cloud.registry_access(fleet.spec, fleet.state_dir)

    again = fleet.cloud.down(fleet.spec, fleet.state_dir)
    assert not again.changed
    assert {h.change for h in again.hosts} == {"absent"}
    assert {r.state for r in fleet.cloud.status(fleet.spec, fleet.state_dir)} == {MISSING}


def test_network_of_the_same_name_not_made_by_stagecraft_stops_up(tmp_path):
    project = f"it-{secrets.token_hex(3)}"
    spec = FleetSpec(project, "clash", (HostSpec("web-1"),))
    net = addressing.network_name(project, "clash")
    docker("network", "create", net)
    cloud = get_cloud_provider("local")
    try:
        with pytest.raises(ProviderError, match=f"network named {net} exists but was not") as info:
            cloud.up(spec, tmp_path / "clash")
        assert f"docker network rm {net}" in info.value.hint
        assert docker("ps", "-aq", "--filter", f"label={LABEL_PROJECT}={project}").stdout == ""
        # down refuses to delete it as well, and says so.
        with pytest.raises(ProviderError, match="not made by stagecraft"):
            cloud.down(spec, tmp_path / "clash")
    finally:
        docker("network", "rm", net, check=False)
