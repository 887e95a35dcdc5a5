"""The DigitalOcean twin's machines (DockerMachines) without the API: real droplets.

Two droplets in one VPC are shared by the module's tests (booting is the slow part);
the tests run in file order and the last one removes everything. Whatever happens,
the fixture calls ``remove_all`` at the end.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stagecraft_twins.digitalocean.docker_machines import LABEL_TWIN, DockerMachines
from stagecraft_twins.digitalocean.machines import Addresses, FirewallRule, MachineError

pytestmark = pytest.mark.fleet

READY_TIMEOUT = 120.0
ONE, TWO = 7001, 7002
GIB = 1024 ** 3


@dataclass
class Twin:
    """The machines under test, their droplets' addresses and the SSH key they take."""

    machines: DockerMachines
    key: Path
    addresses: dict[int, Addresses]
    boot_seconds: dict[int, float]
    vpc_range: str
    state_dir: Path

    def exec(self, droplet_id: int, script: str, *, input: str | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess:
        """Run ``script`` with sh as root inside the droplet (not over SSH)."""
        return subprocess.run(["docker", "exec", "-i", self.machines.container_name(droplet_id),
                               "sh", "-c", script], input=input, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def ssh(self, droplet_id: int, command: str = "true") -> subprocess.CompletedProcess:
        """SSH from this machine to the droplet's public address as root."""
        return subprocess.run(
            ["ssh", "-i", str(self.key), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
             "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
             f"root@{self.addresses[droplet_id].public_ipv4}", command],
            capture_output=True, text=True, timeout=60, check=False)


def wait_ready(machines: DockerMachines, droplet_id: int) -> float:
    """Seconds until ``ready`` says yes; fails after READY_TIMEOUT."""
    started = time.monotonic()
    while not machines.ready(droplet_id):
        assert time.monotonic() - started < READY_TIMEOUT, f"droplet {droplet_id} not ready"
        time.sleep(0.3)
    return time.monotonic() - started


def answers(address: str, port: int, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to address:port opens from this machine."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twin]:
    workdir = tmp_path_factory.mktemp("do-twin-machines")
    key = workdir / "id_test"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "twin-test",
                    "-f", str(key)], check=True)
    public_key = key.with_suffix(".pub").read_text().strip()
    state_dir = workdir / "state"
    machines = DockerMachines(state_dir, f"t{uuid.uuid4().hex[:8]}")
    try:
        vpc_range = machines.vpc_range(None, [])
        vpc_uuid = str(uuid.uuid4())
        addresses: dict[int, Addresses] = {}
        started: dict[int, float] = {}
        for droplet_id, name in ((ONE, "one"), (TWO, "two")):
            started[droplet_id] = time.monotonic()
            addresses[droplet_id] = machines.create_droplet(
                droplet_id, name, vpc_uuid=vpc_uuid, vpc_range=vpc_range,
                public_keys=[public_key], vcpus=1, memory_mb=1024)
        boot = {}
        for droplet_id in (ONE, TWO):
            wait_ready(machines, droplet_id)
            boot[droplet_id] = time.monotonic() - started[droplet_id]
        print(f"\ndroplets ready after {', '.join(f'{s:.1f} s' for s in boot.values())}")
        yield Twin(machines, key, addresses, boot, vpc_range, state_dir)
    finally:
        machines.remove_all()


def test_droplets_boot_and_take_ssh_from_this_machine(twin: Twin) -> None:
    assert all(seconds < READY_TIMEOUT for seconds in twin.boot_seconds.values())
    one = twin.addresses[ONE]
    assert one.public_ipv4 != twin.addresses[TWO].public_ipv4
    assert one.public_gateway.endswith(".1") and one.private_netmask == "255.255.240.0"
    proc = twin.ssh(ONE, "hostname")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "one"
    # The public network is the default route; the VPC address is on the other side.
    route = twin.exec(ONE, "ip -4 route show default; ip -4 -o addr").stdout
    assert f"via {one.public_gateway}" in route
    assert one.private_ipv4 in route


def test_droplets_reach_each_other_on_the_vpc(twin: Twin) -> None:
    twin.exec(ONE, "umask 077; cat > /root/.ssh/id_test", input=twin.key.read_text())
    private = twin.addresses[TWO].private_ipv4
    proc = twin.exec(ONE, "ssh -i /root/.ssh/id_test -o StrictHostKeyChecking=no "
                     "-o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR "
                     f"root@{private} hostname")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "two"


def test_a_requested_vpc_range_must_be_free_here(twin: Twin) -> None:
    with pytest.raises(MachineError, match="overlaps Docker network"):
        twin.machines.vpc_range(twin.vpc_range, [])
    chosen = twin.machines.vpc_range(None, ["10.0.0.0/9"])
    assert chosen.startswith("10.") and chosen.endswith("/20")
    assert int(chosen.split(".")[1]) >= 128


def test_a_volume_is_a_block_device_in_its_droplet(twin: Twin) -> None:
    machines = twin.machines
    device = "/dev/disk/by-id/scsi-0DO_Volume_data-one"
    machines.create_volume("vol-1", "data-one", 1)
    machines.attach_volume("vol-1", "data-one", ONE)
    assert twin.exec(ONE, f"test -b {device}").returncode == 0
    assert twin.exec(ONE, f"blockdev --getsize64 {device}").stdout.strip() == str(GIB)
    # What is written on it survives the growth and the power cycle below.
    proc = twin.exec(ONE, f"printf kept | dd of={device} bs=4 count=1 conv=fsync 2>&1")
    assert proc.returncode == 0, proc.stdout

    machines.resize_volume("vol-1", 2)
    assert twin.exec(ONE, f"blockdev --getsize64 {device}").stdout.strip() == str(2 * GIB)
    with pytest.raises(MachineError, match="cannot shrink"):
        machines.resize_volume("vol-1", 1)

    machines.power_off(ONE)
    assert not machines.ready(ONE)
    machines.power_on(ONE)
    wait_ready(machines, ONE)
    assert twin.exec(ONE, f"blockdev --getsize64 {device}").stdout.strip() == str(2 * GIB)
    proc = twin.exec(ONE, f"head -c 4 {device}")
    assert proc.stdout == "kept", proc.stderr
    assert twin.ssh(ONE).returncode == 0

    machines.detach_volume("vol-1", "data-one", ONE)
    assert twin.exec(ONE, f"test -e {device}").returncode != 0
    file = twin.state_dir / "volumes" / "vol-1.img"
    loop = json.loads((twin.state_dir / "machines.json").read_text())["volumes"]["vol-1"]["loop"]
    machines.delete_volume("vol-1")
    assert not file.exists()
    assert str(file) not in subprocess.run(["losetup", "-a"], capture_output=True,
                                           text=True).stdout
    assert loop not in subprocess.run(["losetup", "-j", str(file)], capture_output=True,
                                      text=True).stdout


def test_attaching_to_a_droplet_without_a_machine_is_an_error(twin: Twin) -> None:
    twin.machines.create_volume("vol-2", "data-two", 1)
    with pytest.raises(MachineError, match="droplet 9999 has no machine"):
        twin.machines.attach_volume("vol-2", "data-two", 9999)


def test_resize_gives_the_container_the_size(twin: Twin) -> None:
    twin.machines.resize(TWO, vcpus=1, memory_mb=2048)
    found = json.loads(subprocess.run(
        ["docker", "inspect", twin.machines.container_name(TWO)], capture_output=True,
        text=True, check=True).stdout)[0]["HostConfig"]
    assert found["NanoCpus"] == 1_000_000_000
    assert found["Memory"] in (2048 * 1024 * 1024, 0)  # 0: the engine has no memory cgroup


def test_a_firewall_drops_what_no_rule_allows(twin: Twin) -> None:
    machines = twin.machines
    one, two = twin.addresses[ONE], twin.addresses[TWO]
    twin.exec(ONE, "systemd-run --unit web -p WorkingDirectory=/tmp python3 -m http.server 80")
    deadline = time.monotonic() + 30
    while not answers(one.public_ipv4, 80):
        assert time.monotonic() < deadline, "the web server in droplet one did not start"
        time.sleep(0.3)

    machines.apply_firewall(ONE, [FirewallRule("tcp", "22", ("0.0.0.0/0", "::/0")),
                                  FirewallRule("tcp", "80", droplet_ids=(TWO,))])
    machines.apply_firewall(ONE, [FirewallRule("tcp", "22", ("0.0.0.0/0", "::/0")),
                                  FirewallRule("tcp", "80", droplet_ids=(TWO,))])  # idempotent
    assert not answers(one.public_ipv4, 80)
    assert twin.ssh(ONE).returncode == 0
    # Droplet two is named by id: it reaches port 80 on both addresses of one.
    for address in (one.private_ipv4, one.public_ipv4):
        proc = twin.exec(TWO, f"python3 -c \"import urllib.request; "
                         f"urllib.request.urlopen('http://{address}/', timeout=5)\"")
        assert proc.returncode == 0, proc.stderr
    # Answers to the droplet's own connections pass (established).
    proc = twin.exec(ONE, f"timeout 10 bash -c 'exec 3<>/dev/tcp/{two.private_ipv4}/22 "
                     "&& head -c 4 <&3'")
    assert proc.stdout == "SSH-", proc.stderr

    machines.power_off(ONE)
    machines.power_on(ONE)  # the firewall comes back with the new network namespace
    wait_ready(machines, ONE)
    twin.exec(ONE, "systemd-run --unit web -p WorkingDirectory=/tmp python3 -m http.server 80")
    time.sleep(1)
    assert not answers(one.public_ipv4, 80)

    machines.apply_firewall(ONE, None)
    machines.apply_firewall(ONE, None)
    deadline = time.monotonic() + 30
    while not answers(one.public_ipv4, 80):
        assert time.monotonic() < deadline, "port 80 stayed closed without a firewall"
        time.sleep(0.3)


def test_delete_and_remove_all_leave_nothing(twin: Twin) -> None:
    machines = twin.machines
    machines.delete_droplet(TWO)
    assert subprocess.run(["docker", "inspect", machines.container_name(TWO)],
                          capture_output=True).returncode != 0
    machines.create_volume("vol-3", "data-three", 1)
    machines.attach_volume("vol-3", "data-three", ONE)
    # As after a crash: no record, another instance. Labels and files are enough.
    (twin.state_dir / "machines.json").unlink()
    removed = DockerMachines(twin.state_dir, machines.twin_id).remove_all()
    assert f"container {machines.container_name(ONE)}" in removed
    assert f"network {machines.public_network}" in removed
    assert any(r.startswith("loop device ") for r in removed)
    label = f"label={LABEL_TWIN}={machines.twin_id}"
    for kind in (["ps", "-a"], ["network", "ls"]):
        listed = subprocess.run(["docker", *kind, "-q", "--filter", label],
                                capture_output=True, text=True, check=True).stdout
        assert listed.strip() == "", kind
    volumes = twin.state_dir / "volumes"
    assert not volumes.exists() or not list(volumes.iterdir())
    assert str(volumes) not in subprocess.run(["losetup", "-a"], capture_output=True,
                                              text=True).stdout
    assert machines.remove_all() == []
