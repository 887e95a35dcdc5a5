"""End to end on servers stagecraft did not create: cloud `ssh`, for real.

Two plain Debian 13 servers as a team would rent them (tests/ssh_servers.py): sshd,
only root's authorized key, no Docker. vps1 listens on port 2222 and carries a
second disk; vps2 answers only vps1 (a bastion) and is adopted as `admin`, a user
with passwordless sudo. No registry at first: the images travel over SSH.

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
7. `project.registry` set to a registry whose certificate a private CA signed:
   `bootstrap` makes the servers trust the CA, a deploy pushes there and the servers
   log in and pull;
8. a server whose host key changed is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shop_fleet import (
    LOAD_REQUESTS,
    STAGECRAFT,
    Edge,
    config_value,
    copy_example,
    run_under_load,
    set_env_value,
)
from ssh_servers import ServerSpec, Servers, ssh_servers
from stagecraft.infra.tls import ensure_ca, issue
from stagecraft.providers.cloud.local.service_images import REGISTRY_UID, ensure_registry_image

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


@dataclass(frozen=True)
class Registry:
    """A registry on the servers' network, as a team would run one with a private CA."""

    server: str  # ip:port, as image names spell it
    username: str
    password: str
    ca_pem: str
    ca_file: Path

    def get(self, path: str) -> tuple[int, str]:
        """GET https://<server><path> with basic auth, the certificate checked with the CA."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        # Straight to the registry: an https_proxy in the environment must not be asked.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=context))
        token = b64encode(f"{self.username}:{self.password}".encode()).decode()
        request = urllib.request.Request(f"https://{self.server}{path}",
                                         headers={"Authorization": f"Basic {token}"})
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")


@pytest.fixture
def registry(servers: Servers, tmp_path: Path) -> Iterator[Registry]:
    """The local cloud's Distribution registry image on the servers' network: TLS with a
    certificate from a test CA, basic auth. This machine's Docker trusts the CA while
    the registry runs (it pushes there); the container and the trust go afterwards."""
    image = ensure_registry_image()
    name = f"{servers.networks[0]}-registry"
    username, password = "deploy", uuid.uuid4().hex
    tls = tmp_path / "tls"
    tls.mkdir()
    os.chown(tls, REGISTRY_UID, REGISTRY_UID)
    hashed = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint",
                             "htpasswd", image, "-Bbn", username, password],
                            capture_output=True, text=True, check=True, timeout=60)
    htpasswd = tmp_path / "htpasswd"
    place(htpasswd, hashed.stdout.strip() + "\n", 0o600)
    trusted: Path | None = None
    try:
        # The certificate names the container's address, known once it runs: the
        # registry starts when its certificate appears.
        subprocess.run(
            ["docker", "run", "-d", "--name", name, "--network", servers.networks[0],
             "-v", f"{htpasswd}:/etc/docker/registry/htpasswd:ro",
             "-v", f"{tls}:/etc/docker/registry/tls:ro", "--entrypoint", "sh", image, "-c",
             "until [ -e /etc/docker/registry/tls/registry.crt ]; do sleep 0.2; done; "
             "exec /usr/bin/docker-registry serve /etc/docker/registry/config.yml"],
            capture_output=True, text=True, check=True, timeout=60)
        found = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}"
                                "{{.IPAddress}}{{end}}", name],
                               capture_output=True, text=True, check=True, timeout=30)
        address = found.stdout.strip()
        ca = ensure_ca(tmp_path / "ca", common_name="stagecraft test registry CA")
        cert_pem, key_pem = issue(ca, ip_addresses=[address])
        place(tls / "registry.key", key_pem, 0o600)
        place(tls / "registry.crt", cert_pem, 0o644)
        server = f"{address}:5000"
        trusted = Path("/etc/docker/certs.d") / server
        trusted.mkdir(parents=True, exist_ok=True)
        (trusted / "ca.crt").write_text(ca.cert_pem)
        running = Registry(server, username, password, ca.cert_pem, ca.cert_path)
        deadline = time.monotonic() + 60
        while True:
            try:
                answer: object = running.get("/v2/")
            except (urllib.error.URLError, OSError) as exc:
                answer = exc
            if isinstance(answer, tuple) and answer[0] == 200:
                break
            assert time.monotonic() < deadline, f"the registry {name} does not answer: {answer}"
            time.sleep(0.5)
        yield running
    finally:
        subprocess.run(["docker", "rm", "-fv", name], capture_output=True, check=False)
        if trusted is not None:
            shutil.rmtree(trusted, ignore_errors=True)


def place(path: Path, text: str, mode: int) -> None:
    """Write ``path`` for the registry's user, whole or not at all (the registry waits for it)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.chmod(mode)
    os.chown(partial, REGISTRY_UID, REGISTRY_UID)
    partial.replace(path)


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


def test_a_deploy_through_a_registry_with_a_private_ca(
        project: Path, servers: Servers, registry: Registry):
    # The CA goes with the project, the password with the environment's secrets.
    (project / "registry-ca.pem").write_text(registry.ca_pem)
    config = project / "stagecraft.yml"
    entry = (f'  registry:\n    server: "{registry.server}"\n    username: {registry.username}\n'
             "    password: ${secret:REGISTRY_PASSWORD}\n    ca_file: registry-ca.pem\n")
    text = re.sub(r"^project:\n  name: .+\n", lambda m: m.group(0) + entry,
                  config.read_text(), count=1, flags=re.M)
    assert entry in text
    config.write_text(text)
    with open(project / f".env.{ENVIRONMENT}", "a") as secrets:
        secrets.write(f"REGISTRY_PASSWORD={registry.password}\n")
    subprocess.run(["git", "add", "registry-ca.pem"], cwd=project, check=True)
    subprocess.run(["git", "commit", "-qam", "a registry"], cwd=project, check=True)

    trusted = run(project, "bootstrap", "--output", "json")
    assert trusted.returncode == 0, trusted.stderr[-4000:]
    events = [json.loads(line) for line in trusted.stdout.splitlines() if line.startswith("{")]
    installed = {e["host"] for e in events if e.get("event") == "result" and e.get("changed")
                 and "Install the registry's CA for Docker" in e.get("task", "")}
    assert installed == {"vps1", "vps2"}, events[-1]
    for name in ("vps1", "vps2"):
        found = servers[name].exec(f"cat /etc/docker/certs.d/{registry.server}/ca.crt").stdout
        assert found.strip() == registry.ca_pem.strip()

    source = project / "app" / "shopapp" / "__init__.py"
    source.write_text(source.read_text() + "# release 3\n")
    set_env_value(project, "APP_VERSION", "3.0.0")  # commits both
    done = run(project, "deploy")
    assert done.returncode == 0, done.stderr[-4000:]
    # Through the registry, not over SSH.
    assert not re.search(r"images: \S+: loaded", done.stderr), done.stderr[-3000:]
    name = config_value(project, "name")
    status, body = registry.get("/v2/_catalog")
    assert status == 200, body
    assert {f"{name}-web", f"{name}-db"} <= set(json.loads(body)["repositories"]), body
    listed = run(project, "releases", "list", "--output", "json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    latest = json.loads(listed.stdout)[0]
    assert (latest["action"], latest["result"]) == ("deploy", "succeeded"), latest
    for service in ("web", "worker"):
        assert latest["images"][service]["ref"].startswith(f"{registry.server}/{name}-web:"), \
            latest["images"]
    assert edge_of(servers).version() == "3.0.0"
    # vps2 pulled with the credentials it logged in with (it has no image of it otherwise).
    pulled = servers["vps2"].exec("docker image ls --format '{{.Repository}}'").stdout.split()
    assert f"{registry.server}/{name}-web" in pulled, pulled


def test_a_changed_host_key_is_refused(project: Path, servers: Servers):
    servers["vps2"].regenerate_host_keys()
    refused = run(project, "infra", "up", "--accept-new-host-keys")
    assert refused.returncode != 0
    assert "vps2" in refused.stderr and "ssh-keygen -R" in refused.stderr, refused.stderr
    # Nothing re-pinned: the next command still refuses the server.
    again = run(project, "ssh", "vps2", "--", "true")
    assert again.returncode != 0
