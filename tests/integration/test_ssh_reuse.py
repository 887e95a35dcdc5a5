"""One SSH connection per host, shared by the probe and the playbook that follows.

A two-host fleet of examples/shop. With every connection to the hosts closed,
`stagecraft status` (the probe, over hosts/remote.py) and then `stagecraft
bootstrap` (a playbook, over Ansible's ssh plugin) must log in once per host:
sshd's journal on each host counts the logins.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from shop_fleet import WITHOUT_DB, copy_example, fleet, host_records, project_name, stagecraft

from stagecraft.hosts import ssh

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

HOSTS = ("local-1", "local-2")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    directory = copy_example(tmp_path_factory.mktemp("ssh-reuse"), "r", WITHOUT_DB)
    with fleet(directory):
        yield directory


def host_container(project: Path, host: str) -> str:
    """The docker container that is the local cloud's host ``host``."""
    names = subprocess.run(["docker", "ps", "--format", "{{.Names}}"], capture_output=True,
                           text=True, check=True).stdout.split()
    matches = [n for n in names if project_name(project) in n and n.endswith(host)]
    assert len(matches) == 1, (host, names)
    return matches[0]


def in_container(container: str, command: str) -> str:
    return subprocess.run(["docker", "exec", container, "sh", "-c", command],
                          capture_output=True, text=True, check=True, timeout=60).stdout


def logins(container: str) -> int:
    """How many SSH logins sshd has accepted on the host since it started."""
    journal = in_container(container, "journalctl -u ssh --no-pager -o cat")
    return journal.count("Accepted publickey")


def open_connections(container: str) -> int:
    """TCP connections to sshd (port 22 = 0016) that are established (state 01)."""
    table = in_container(container, "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null || true")
    return sum(1 for line in table.splitlines()[1:]
               if len(line.split()) > 3 and line.split()[1].endswith(":0016")
               and line.split()[3] == "01")


def close_connections(project: Path) -> None:
    """Stop the shared connections the fleet's setup left open, then wait until the
    hosts see none (a connection on another socket ends when its ControlPersist does)."""
    state = project / ".stagecraft" / "local"
    user = json.loads((state / "hosts.json").read_text())["ssh"]["user"]
    for record in host_records(project).values():
        argv = ssh.ssh_argv(private_key=state / "id_ed25519", known_hosts=state / "known_hosts",
                            address=record["ssh_host"], port=record["ssh_port"], user=user,
                            flags=["-O", "exit"])
        subprocess.run(argv, capture_output=True, check=False, timeout=30)
    containers = [host_container(project, host) for host in HOSTS]
    deadline = time.monotonic() + 120
    while any(open_connections(c) for c in containers):
        assert time.monotonic() < deadline, "SSH connections to the hosts stay open"
        time.sleep(2)


def test_the_probe_and_the_playbook_after_it_log_in_once_per_host(project: Path) -> None:
    close_connections(project)
    containers = {host: host_container(project, host) for host in HOSTS}
    before = {host: logins(c) for host, c in containers.items()}
    assert all(count > 0 for count in before.values()), before  # the journal counts logins

    status = stagecraft(project, "status", "--output", "json")
    assert status.returncode == 0, status.stderr[-4000:]
    probed = {h["host"]: h for h in json.loads(status.stdout.splitlines()[-1])["hosts"]}
    assert all(probed[host]["reachable"] for host in HOSTS), probed
    bootstrap = stagecraft(project, "bootstrap")
    assert bootstrap.returncode == 0, bootstrap.stderr[-4000:]

    new_logins = {host: logins(c) - before[host] for host, c in containers.items()}
    assert new_logins == {host: 1 for host in HOSTS}
