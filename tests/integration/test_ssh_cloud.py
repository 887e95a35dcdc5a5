"""Cloud `ssh` through the CLI, against plain SSH servers (tests/ssh_servers.py):
`stagecraft infra up|status|down` of servers that exist already.

One set of servers serves the whole module: vps1 (port 22, users `admin` with
passwordless sudo and `plain` without), vps2 (port 2222) and db (reachable only
through vps1). Each test has its own project, state and $HOME, so its pins start
from nothing. The test that changes a host key does it on vps2 and runs last among
the tests that use vps2's key.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shop_fleet import STAGECRAFT
from ssh_servers import ServerSpec, Servers, ssh_servers

pytestmark = pytest.mark.fleet


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with ssh_servers([ServerSpec("vps1", users={"admin": True, "plain": False}),
                      ServerSpec("vps2", port=2222),
                      ServerSpec("db", behind="vps1")],
                     tmp_path_factory.mktemp("ssh-servers")) as found:
        yield found


class Project:
    """A project of cloud `ssh` with environment `prod`, its own $HOME, run by the CLI."""

    def __init__(self, root: Path, servers: Servers) -> None:
        self.dir = root / "project"
        self.dir.mkdir()
        self.home = root / "home"
        (self.home / ".ssh").mkdir(parents=True)
        self.servers = servers
        self.state = self.dir / ".stagecraft" / "prod"

    def configure(self, *hosts: str) -> Project:
        """stagecraft.yml with these host lines (``name: .., roles: .., ...`` without braces)."""
        lines = "".join(f"      - {{ {host} }}\n" for host in hosts)
        (self.dir / "stagecraft.yml").write_text(
            "version: 1\n"
            "project: { name: vps }\n"
            "providers:\n"
            f"  cloud: {{ kind: ssh, docker_source: distro, ssh_key: {self.servers.key} }}\n"
            "services:\n"
            '  web: { image: "nginx:1", on: [app] }\n'
            "environments:\n"
            "  prod:\n"
            "    hosts:\n" + lines)
        return self

    def the_three(self) -> Project:
        vps1, vps2, db = (self.servers[n] for n in ("vps1", "vps2", "db"))
        return self.configure(
            f"name: web-1, roles: [app], address: {vps1.address}",
            f"name: web-2, roles: [app], address: {vps2.address}, port: 2222",
            f"name: db-1, roles: [app], address: {db.address}, proxy_jump: web-1")

    def run(self, *args: str) -> subprocess.CompletedProcess:
        env = {name: value for name, value in os.environ.items()
               if not name.startswith("STAGECRAFT_") and name != "SSH_AUTH_SOCK"}
        env.update(HOME=str(self.home), STAGECRAFT_ENV="prod")
        # stdin is not a terminal: nothing can be asked.
        return subprocess.run([STAGECRAFT, *args], cwd=self.dir, capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL, env=env, check=False)

    def hosts(self) -> dict[str, dict]:
        return {h["name"]: h for h in json.loads((self.state / "hosts.json").read_text())["hosts"]}


@pytest.fixture
def project(tmp_path: Path, servers: Servers) -> Project:
    return Project(tmp_path, servers)


def refused(proc: subprocess.CompletedProcess) -> str:
    """stderr of a run refused with a plain error (exit 8, no traceback)."""
    assert proc.returncode == 8, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "\nhint: " in proc.stderr
    return proc.stderr


def test_new_host_keys_are_refused_without_a_terminal_and_nothing_is_written(
        project: Project, servers: Servers) -> None:
    proc = project.the_three().run("infra", "up")
    stderr = refused(proc)
    vps1, vps2 = servers["vps1"], servers["vps2"]
    assert stderr.startswith(
        "error: 2 host keys that nothing vouches for yet, and no terminal is there to ask "
        "about them:\n"
        f"  host web-1 ({vps1.address}:22) offers ED25519 key {vps1.host_key_fingerprint()}\n"
        f"  host web-2 ({vps2.address}:2222) offers ED25519 key {vps2.host_key_fingerprint()}\n")
    assert "run `stagecraft infra up --accept-new-host-keys`" in stderr
    assert not (project.dir / ".stagecraft").exists()


def test_accepted_hosts_are_recorded_and_a_second_up_changes_nothing(
        project: Project, servers: Servers) -> None:
    up = project.the_three().run("infra", "up", "--accept-new-host-keys")
    assert up.returncode == 0, up.stderr
    vps1, vps2, db = (servers[n] for n in ("vps1", "vps2", "db"))
    for name in ("web-1", "web-2", "db-1"):
        assert f"adopted host {name}: debian 13, x86_64" in up.stderr
    hosts = project.hosts()
    assert {name: (h["ssh_host"], h["ssh_port"], h["ssh_user"], h["ssh_proxy"], h["os"],
                   h["arch"], h["provider"], h["private_ip"], h["state"])
            for name, h in hosts.items()} == {
        "web-1": (vps1.address, 22, "root", None, "debian 13", "x86_64", "ssh", vps1.address,
                  "running"),
        "web-2": (vps2.address, 2222, "root", None, "debian 13", "x86_64", "ssh", vps2.address,
                  "running"),
        "db-1": (db.address, 22, "root", f"root@{vps1.address}:22", "debian 13", "x86_64",
                 "ssh", db.address, "running"),
    }
    # The pins are the servers' own keys: ssh itself checks them with this file.
    known_hosts = project.state / "known_hosts"
    for address, port, server in ((vps1.address, 22, vps1), (vps2.address, 2222, vps2)):
        check = subprocess.run(
            ["ssh", "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
             "-o", "BatchMode=yes", "-i", str(servers.key), "-p", str(port),
             f"root@{address}", "hostname"], capture_output=True, text=True, timeout=60)
        assert check.stdout.strip() == server.name, check.stderr

    again = project.run("infra", "up", "--output", "json")
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["changed"] is False
    assert {h["name"]: h["change"] for h in data["hosts"]} == {
        "web-1": "unchanged", "web-2": "unchanged", "db-1": "unchanged"}
    assert "adopted" not in again.stderr.replace("(0 adopted)", "")


def test_status_says_which_hosts_answer(project: Project, servers: Servers) -> None:
    vps1 = servers["vps1"]
    project.configure(f"name: web-1, roles: [app], address: {vps1.address}")
    assert project.run("infra", "up", "--accept-new-host-keys").returncode == 0
    # A recorded host whose sshd stopped answering, and one the spec added since.
    records = json.loads((project.state / "hosts.json").read_text())
    records["hosts"].append({**records["hosts"][0], "name": "web-3", "ssh_port": 2999})
    (project.state / "hosts.json").write_text(json.dumps(records))
    project.configure(f"name: web-1, roles: [app], address: {vps1.address}",
                      f"name: web-2, roles: [app], address: {servers['vps2'].address}, "
                      "port: 2222",
                      f"name: web-3, roles: [app], address: {vps1.address}, port: 2999")
    status = project.run("infra", "status", "--output", "json")
    assert status.returncode == 0, status.stderr
    assert {h["name"]: h["state"] for h in json.loads(status.stdout)["hosts"]} == {
        "web-1": "running", "web-2": "missing", "web-3": "unreachable"}
    rows = [line.split() for line in project.run("infra", "status").stdout.splitlines()]
    assert ["web-1", "app", "running", f"root@{vps1.address}:22", vps1.address] in rows


@pytest.mark.parametrize(("host", "message", "hint"), [
    ("name: web-1, roles: [app], address: {vps1}, ssh_key: {wrong}",
     "host web-1 (root@{vps1}:22): the server refused the key {wrong} for user root: "
     "Permission denied (publickey)", "ssh-copy-id -i {wrong} -p 22 root@{vps1}"),
    ("name: web-1, roles: [app], address: {vps1}, port: 2999",
     "host web-1 (root@{vps1}:2999): nothing accepts connections on {vps1}:2999 "
     "(Connection refused)", "check the address and port in stagecraft.yml"),
    ("name: web-1, roles: [app], address: {vps1}, user: plain",
     "host web-1 (plain@{vps1}:22): user plain has no passwordless sudo (`sudo -n true` "
     "failed): sudo: a password is required", "/etc/sudoers.d/plain"),
], ids=["wrong-key", "closed-port", "no-sudo"])
def test_servers_that_cannot_be_adopted_are_refused_plainly(
        project: Project, servers: Servers, tmp_path: Path, host: str, message: str,
        hint: str) -> None:
    wrong = tmp_path / "id_wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    values = {"vps1": servers["vps1"].address, "db": servers["db"].address, "wrong": wrong}
    stderr = refused(project.configure(host.format(**values)).run(
        "infra", "up", "--accept-new-host-keys"))
    error = next(line for line in stderr.splitlines() if line.startswith("error: "))
    assert error.startswith("error: " + message.format(**values))
    assert hint.format(**values) in stderr
    assert not (project.state / "hosts.json").exists()


def test_a_sudo_user_adopts_and_the_users_known_hosts_vouches_for_the_key(
        project: Project, servers: Servers) -> None:
    vps1 = servers["vps1"]
    kind, blob = vps1.exec("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2]
    (project.home / ".ssh" / "known_hosts").write_text(f"{vps1.address} {kind} {blob}\n")
    up = project.configure(f"name: web-1, roles: [app], address: {vps1.address}, user: admin"
                           ).run("infra", "up")  # no flag, no terminal: nothing is asked
    assert up.returncode == 0, up.stderr
    assert (f"host web-1: host key {vps1.host_key_fingerprint()} is in ~/.ssh/known_hosts; "
            "pinned") in up.stderr
    assert project.hosts()["web-1"]["ssh_user"] == "admin"


def test_down_forgets_the_hosts_and_leaves_the_servers_running(
        project: Project, servers: Servers) -> None:
    assert project.the_three().run("infra", "up", "--accept-new-host-keys").returncode == 0
    down = project.run("infra", "down", "--yes")
    assert down.returncode == 0, down.stderr
    assert down.stdout.splitlines() == [
        "web-1  removed", "web-2  removed", "db-1  removed",
        f"removed file {project.state / 'hosts.json'}",
        f"removed file {project.state / 'known_hosts'}"]
    assert "forgot host db-1" in down.stderr
    for server in servers.values():
        running = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}",
                                  server.container], capture_output=True, text=True)
        assert running.stdout.strip() == "true"
    again = project.run("infra", "down", "--yes")
    assert again.returncode == 0 and "nothing to remove" in again.stdout


def test_a_changed_host_key_is_refused_until_it_is_repinned(
        project: Project, servers: Servers) -> None:
    vps2 = servers["vps2"]
    project.configure(f"name: web-2, roles: [app], address: {vps2.address}, port: 2222")
    assert project.run("infra", "up", "--accept-new-host-keys").returncode == 0
    pinned = (project.state / "known_hosts").read_text()
    old = vps2.host_key_fingerprint()
    vps2.regenerate_host_keys()
    new = vps2.host_key_fingerprint()
    assert new != old
    stderr = refused(project.run("infra", "up", "--accept-new-host-keys"))
    assert stderr == (
        f"error: host web-2 ({vps2.address}:2222) offers ED25519 key {new}, but "
        f".stagecraft/prod/known_hosts has {old} for it: the server was reinstalled, or "
        "someone is in the middle; refusing to connect\n"
        "hint: check the server's real key on its console: `ssh-keygen -lf "
        f"/etc/ssh/ssh_host_ed25519_key.pub`; if it shows {new}, forget the old key with "
        f"`ssh-keygen -R '[{vps2.address}]:2222' -f .stagecraft/prod/known_hosts` and run "
        "`stagecraft infra up` again\n")
    assert (project.state / "known_hosts").read_text() == pinned
    # The hint's commands work as written.
    subprocess.run(["ssh-keygen", "-R", f"[{vps2.address}]:2222", "-f",
                    ".stagecraft/prod/known_hosts"], cwd=project.dir, check=True,
                   capture_output=True)
    again = project.run("infra", "up", "--accept-new-host-keys")
    assert again.returncode == 0, again.stderr
    assert f"host web-2: trusting ED25519 key {new} from now on" in again.stderr
