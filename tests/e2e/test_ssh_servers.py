"""End to end on servers stagecraft did not create: cloud `ssh`, for real.

Two plain Debian 13 servers as a team would rent them (tests/ssh_servers.py): sshd,
only root's authorized key, no Docker. vps1 listens on port 2222 and carries a
second disk; vps2 answers only vps1 (a bastion) and is adopted as `admin`, a user
with passwordless sudo. No registry anywhere: the images travel over SSH.

The commands are the ones docs/own-servers.md gives, in its order:

1. `infra up` refuses new host keys without confirmation, then adopts both with
   `--accept-new-host-keys` (OS, architecture, the bastion recorded);
2. `bootstrap`: Docker from Debian, the deploy user, root logins off (checked before
   sshd reloads) - from then on stagecraft connects as `deploy`, root cannot log in;
   the database's disk is formatted and mounted by its device path;
3. `deploy` of examples/shop: images loaded over SSH, migrations run, the route answers
   through vps1's port 80;
4. a second deploy under a load loop: zero failed requests, only the changed layers
   sent;
5. `rollback`: the first release serves again;
6. `status`, `logs`, `exec`, `ssh`, `audit`, `lock status`, `migrate plan` on the servers;
7. a server whose host key changed is refused.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shop_fleet import (
    LOAD_REQUESTS,
    STAGECRAFT,
    Edge,
    copy_example,
    run_under_load,
    set_env_value,
)
from ssh_servers import ServerSpec, Servers, ssh_servers

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

ENVIRONMENT = "servers"
DOMAIN = "shop.test"
# Docker Hub's Traefik, which edge hosts would pull: the same Traefik this machine
# built for the local cloud, tagged as the public name (the hosts have no internet).
TRAEFIK_PUBLIC = "traefik:v3.6"


def environment(servers: Servers) -> str:
    vps1, vps2 = servers["vps1"], servers["vps2"]
    return f"""  {ENVIRONMENT}:
    providers:
      cloud: {{ kind: ssh, docker_source: distro, ssh_key: {servers.key} }}
    domain: {DOMAIN}
    # No public CA reaches these servers: the environment's own CA signs the edge.
    tls: {{ mode: local }}
    services:
      web: {{ routes: [{{ host: "{{domain}}" }}] }}
      worker: {{ on: [app] }}
    hosts:
      - {{ name: vps1, roles: [edge, app, db], address: {vps1.address}, port: {vps1.port}, volumes: [pgdata] }}
      - {{ name: vps2, roles: [app], address: {vps2.address}, user: admin, proxy_jump: vps1 }}
    migrations: {{ host: vps1 }}
    firewall: {{ ssh: public }}
    rollout: {{ batch: 1, health_timeout: 60s, drain: 2s }}
"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with ssh_servers([ServerSpec("vps1", port=2222, disk_gb=2),
                      ServerSpec("vps2", users={"admin": True}, behind="vps1")],
                     tmp_path_factory.mktemp("vps")) as found:
        yield found


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, servers: Servers) -> Path:
    subprocess.run(["docker", "image", "tag", traefik_built_here(), TRAEFIK_PUBLIC], check=True)
    edits = {
        # No registry: images go to the servers over SSH.
        "  registry:                           # for clouds without a registry of their own\n"
        "    server: registry.example.com\n    username: deploy\n"
        "    password: ${secret:REGISTRY_PASSWORD}\n": "",
        # The servers' second disk, by the path they see it at.
        "  pgdata: { size_gb: 20, filesystem: ext4 }": "  pgdata: { size_gb: 2, filesystem: ext4, device: /dev/vdb }",
    }
    directory = copy_example(tmp_path_factory.mktemp("own-servers"), "o", edits)
    config = directory / "stagecraft.yml"
    text = config.read_text()
    assert "registry.example.com" not in text and "device: /dev/vdb" in text
    config.write_text(text.replace("\nenvironments:\n", "\nenvironments:\n" + environment(servers), 1))
    (directory / f".env.{ENVIRONMENT}").write_text((directory / ".env.local").read_text())
    subprocess.run(["git", "commit", "-qam", "own servers"], cwd=directory, check=True)
    home = directory.parent / "home"
    (home / ".ssh").mkdir(parents=True)
    return directory


def traefik_built_here() -> str:
    found = subprocess.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                            "stagecraft/traefik"], capture_output=True, text=True, check=True)
    tags = [t for t in found.stdout.split() if not t.endswith(":latest")]
    assert tags, "the local cloud's Traefik image is missing: run `stagecraft doctor --fix`"
    return tags[0]


def run(project: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    """The CLI with its own $HOME (so no known_hosts of the user vouches for anything)."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("STAGECRAFT_") and name != "SSH_AUTH_SOCK"}
    env.update(HOME=str(project.parent / "home"), STAGECRAFT_ENV=ENVIRONMENT)
    return subprocess.run([STAGECRAFT, *args], cwd=project, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env=env, check=False)


def records(project: Path) -> dict[str, dict]:
    path = project / ".stagecraft" / ENVIRONMENT / "hosts.json"
    return {h["name"]: h for h in json.loads(path.read_text())["hosts"]}


def edge_of(servers: Servers) -> Edge:
    return Edge(80, DOMAIN, address=servers["vps1"].address)


def ssh_as(servers: Servers, user: str, server: str = "vps1") -> subprocess.CompletedProcess:
    target = servers[server]
    return subprocess.run(
        ["ssh", "-i", str(servers.key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "ConnectTimeout=10", "-p", str(target.port), f"{user}@{target.address}", "true"],
        capture_output=True, text=True, timeout=60, check=False)


def test_infra_up_asks_before_trusting_and_adopts_with_the_flag(project: Path, servers: Servers):
    refused = run(project, "infra", "up")
    assert refused.returncode != 0
    assert servers["vps1"].host_key_fingerprint() in refused.stderr
    assert "--accept-new-host-keys" in refused.stderr
    assert not (project / ".stagecraft" / ENVIRONMENT / "hosts.json").exists()

    up = run(project, "infra", "up", "--accept-new-host-keys")
    assert up.returncode == 0, up.stderr[-3000:]
    found = records(project)
    assert found["vps1"]["ssh_port"] == 2222 and found["vps1"]["ssh_user"] == "root"
    assert found["vps2"]["ssh_user"] == "admin"
    assert found["vps2"]["ssh_proxy"] == f"root@{servers['vps1'].address}:2222"
    assert found["vps1"]["os"].startswith("debian") and found["vps1"]["arch"]


def test_bootstrap_switches_to_the_deploy_user_and_turns_root_logins_off(
        project: Path, servers: Servers):
    done = run(project, "bootstrap")
    assert done.returncode == 0, done.stderr[-4000:]
    found = records(project)
    assert {found[n]["ssh_user"] for n in ("vps1", "vps2")} == {"deploy"}
    assert found["vps2"]["ssh_proxy"] == f"deploy@{servers['vps1'].address}:2222"
    assert ssh_as(servers, "root").returncode != 0  # PermitRootLogin no
    assert ssh_as(servers, "deploy").returncode == 0
    mounted = servers["vps1"].exec("findmnt -n -o SOURCE,FSTYPE /mnt/pgdata").stdout.split()
    assert mounted == ["/dev/vdb", "ext4"]
    again = run(project, "bootstrap", "--output", "json")
    assert again.returncode == 0, again.stderr[-3000:]
    lines = [json.loads(line) for line in again.stdout.splitlines() if line.startswith("{")]
    changed = {name: h["changed"] for name, h in lines[-1]["hosts"].items()}
    changed_tasks = [f"{e['host']}: {e['task']}" for e in lines[:-1]
                     if e.get("event") == "result" and e.get("changed")]
    assert changed == {"vps1": 0, "vps2": 0}, changed_tasks


def test_deploy_sends_the_images_over_ssh_and_serves(project: Path, servers: Servers):
    done = run(project, "deploy")
    assert done.returncode == 0, done.stderr[-4000:]
    print("\n".join(line for line in done.stderr.splitlines() if line.startswith("images:")))
    assert re.search(r"images: vps1: loaded \d+ image", done.stderr), done.stderr[-3000:]
    assert re.search(r"images: vps2: loaded \d+ image", done.stderr), done.stderr[-3000:]
    assert "migrate-pre: applied 1" in done.stderr
    edge = edge_of(servers)
    assert edge.version() == "1.0.0"
    # Both servers' web containers answer behind the edge.
    hosts = {host for host in edge.versions_by_container(30)}
    assert len(hosts) >= 2, hosts


def test_a_second_deploy_under_load_fails_no_request_and_sends_few_layers(
        project: Path, servers: Servers):
    # A code change gives a new image whose base layers the servers have already.
    source = project / "app" / "shopapp" / "__init__.py"
    source.write_text(source.read_text() + "# release 2\n")
    set_env_value(project, "APP_VERSION", "2.0.0")  # commits both
    edge = edge_of(servers)
    result, loop = run_under_load(edge, "deploy", project=project, runner=run)
    assert result.returncode == 0, result.stderr[-4000:]
    assert loop.sent >= LOAD_REQUESTS
    assert loop.failures == [], loop.failures[:10]
    assert set(loop.versions) <= {"1.0.0", "2.0.0"}, loop.versions
    assert edge.version() == "2.0.0"
    print("\n".join(line for line in result.stderr.splitlines() if line.startswith("images:")))
    sent = [int(n) for n in re.findall(r"images: vps\d: loaded \d+ image\(s\), (\d+) layer",
                                       result.stderr)]
    kept = [int(n) for n in re.findall(r"(\d+) already there", result.stderr)]
    assert sent and kept and all(k > s for s, k in zip(sent, kept)), result.stderr[-3000:]


def test_rollback_brings_the_first_release_back(project: Path, servers: Servers):
    done = run(project, "rollback")
    assert done.returncode == 0, done.stderr[-4000:]
    assert edge_of(servers).version() == "1.0.0"
    # The first release's images are still on the servers: nothing travels.
    assert "images: vps1: had every image" in done.stderr, done.stderr[-3000:]


def test_ops_commands_work_on_the_servers(project: Path, servers: Servers):
    status = run(project, "status")
    assert status.returncode == 0, status.stderr[-3000:]
    assert "vps1" in status.stdout and "vps2" in status.stdout
    logs = run(project, "logs", "web", "--host", "vps2", "-n", "5")
    assert logs.returncode == 0, logs.stderr[-3000:]
    executed = run(project, "exec", "web", "--host", "vps2", "--", "cat", "/etc/hostname")
    assert executed.returncode == 0, executed.stderr[-3000:]
    shell = run(project, "ssh", "vps2", "--", "id", "-un")
    assert shell.returncode == 0 and shell.stdout.strip() == "deploy", shell.stderr[-2000:]
    audit = run(project, "audit", "-n", "3")
    assert audit.returncode == 0 and "rollback" in audit.stdout, audit.stderr[-2000:]
    lock = run(project, "lock", "status")
    assert lock.returncode == 0, lock.stderr[-2000:]
    pending = run(project, "migrate", "plan")
    assert pending.returncode == 0, pending.stderr[-2000:]


def test_a_changed_host_key_is_refused(project: Path, servers: Servers):
    servers["vps2"].regenerate_host_keys()
    refused = run(project, "infra", "up", "--accept-new-host-keys")
    assert refused.returncode != 0
    assert "vps2" in refused.stderr and "ssh-keygen -R" in refused.stderr, refused.stderr
    # Nothing re-pinned: the next command still refuses the server.
    again = run(project, "ssh", "vps2", "--", "true")
    assert again.returncode != 0
