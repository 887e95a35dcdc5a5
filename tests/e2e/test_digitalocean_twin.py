"""End to end on DigitalOcean's API twin: cloud `digitalocean`, production code path.

The DigitalOcean API cannot be reached from here, so the test starts the twin
(stagecraft_twins.digitalocean, a stand-in named as such: spec/providers/
digitalocean-twin.md) whose droplets are real containers with sshd and whose volumes
are loop devices. stagecraft drives it exactly as it drives the real API: the role
`digitalocean` through community.digitalocean, plans and status from API reads.
Every exchange the twin served is checked against DigitalOcean's OpenAPI document
(tests/do_openapi.py).

examples/shop as `staging`, rehearsed (`--rehearse`, so `staging-rehearsal`): infra
plan → infra up (a second up changes nothing) → bootstrap (the volume mounted by its
by-id path) → deploy → a second deploy under load with zero failed requests → a size
change planned and applied → infra down removes the environment's resources and
nothing of another environment on the same twin. On the way, `infra status` lists the
volume and the cloud firewalls, and a new droplet stuck in status `new` past
`wait_timeout` is an error naming it, with hosts.json left as it was, until a later
`infra up` waits for it. Then the API failing: a 429 is retried, a 422 is reported
naming the refused resource.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from shop_fleet import LOAD_REQUESTS, STAGECRAFT, Edge, copy_example, run_under_load, set_env_value
from tests.do_openapi import assert_recording_valid

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

ENVIRONMENT = "staging"
REHEARSED = f"{ENVIRONMENT}-rehearsal"
DOMAIN = "shop.test"
TRAEFIK_PUBLIC = "traefik:v3.6"


class Twin:
    """A running twin: its URL, token and recording."""

    def __init__(self, directory: Path, record: Path) -> None:
        self.directory, self.record = directory, record
        info = json.loads((directory / "twin.json").read_text())
        self.url, self.control, self.token = info["url"], info["control"], info["token"]

    def call(self, method: str, url: str, body: object = None) -> object:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return json.loads(raw) if raw else None

    def api(self, path: str) -> dict:
        return self.call("GET", f"{self.url}/{path}")  # type: ignore[return-value]

    def fault(self, **fault: object) -> None:
        self.call("POST", f"{self.control}/faults", fault)


def start_twin(directory: Path, record: Path, machines: str = "docker") -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "stagecraft_twins.digitalocean", "serve", "--state-dir",
         str(directory), "--record", str(record), "--machines", machines],
        stdout=subprocess.DEVNULL, stderr=open(directory.parent / f"{directory.name}.log", "wb"))
    deadline = time.monotonic() + 30
    while not (directory / "twin.json").exists():
        assert process.poll() is None, (directory.parent / f"{directory.name}.log").read_text()
        assert time.monotonic() < deadline, "the twin did not start"
        time.sleep(0.2)
    return process


def stop_twin(directory: Path, process: subprocess.Popen) -> None:
    subprocess.run([sys.executable, "-m", "stagecraft_twins.digitalocean", "stop",
                    "--state-dir", str(directory)], capture_output=True, timeout=300, check=False)
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twin]:
    base = tmp_path_factory.mktemp("do-twin")
    directory, record = base / "twin", base / "exchanges.jsonl"
    directory.mkdir()
    process = start_twin(directory, record)
    try:
        yield Twin(directory, record)
    finally:
        stop_twin(directory, process)
    # Every request and response of the whole module, against the OpenAPI document.
    if record.exists():
        assert_recording_valid(record, __name__)


def environment() -> str:
    return f"""  {ENVIRONMENT}:
    providers:
      cloud: {{ kind: digitalocean, token: "${{secret:DO_TOKEN}}", region: fra1 }}
    domain: {DOMAIN}
    services:
      web: {{ routes: [{{ host: "{{domain}}" }}] }}
      worker: {{ on: [app] }}
    hosts:
      - {{ name: edge-1, roles: [edge, app, db], volumes: [pgdata] }}
      - {{ name: app-1, roles: [app], size: s-1vcpu-1gb }}
    migrations: {{ host: edge-1 }}
    firewall: {{ ssh: public }}
    rollout: {{ batch: 1, health_timeout: 60s, drain: 2s }}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, twin: Twin) -> Path:
    built = subprocess.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                            "stagecraft/traefik"], capture_output=True, text=True, check=True)
    tags = [t for t in built.stdout.split() if not t.endswith(":latest")]
    assert tags, "the local cloud's Traefik image is missing: run `stagecraft doctor --fix`"
    # The droplets have no internet: Traefik travels over SSH like the app's images.
    subprocess.run(["docker", "image", "tag", tags[0], TRAEFIK_PUBLIC], check=True)
    edits = {
        "  pgdata: { size_gb: 20, filesystem: ext4 }": "  pgdata: { size_gb: 2, filesystem: ext4 }",
        # The example's own staging environment gives way to this test's.
        '  staging:\n    domain: staging.example.com\n    services:\n'
        '      web: { routes: [{ host: "{env}.example.com" }] }\n    hosts:\n'
        '      - { name: stg-1, roles: [edge, app, worker, db], volumes: [pgdata] }\n': "",
    }
    directory = copy_example(tmp_path_factory.mktemp("digitalocean"), "d", edits)
    config = directory / "stagecraft.yml"
    config.write_text(config.read_text().replace("\nenvironments:\n",
                                                 "\nenvironments:\n" + environment(), 1))
    secrets = (directory / ".env.local").read_text() + "DO_TOKEN=never-used-by-a-rehearsal\n"
    (directory / f".env.{ENVIRONMENT}").write_text(secrets)
    subprocess.run(["git", "commit", "-qam", "digitalocean"], cwd=directory, check=True)
    return directory


def run(project: Path, *args: str, twin: Twin | None = None,
        timeout: float = 1500) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("STAGECRAFT_")}
    env.update(STAGECRAFT_ENV=ENVIRONMENT)
    if twin is not None:
        env.update(STAGECRAFT_DO_TWIN_DIR=str(twin.directory), STAGECRAFT_REHEARSE="1")
    return subprocess.run([STAGECRAFT, *args], cwd=project, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env=env, check=False)


def records(project: Path) -> dict[str, dict]:
    path = project / ".stagecraft" / REHEARSED / "hosts.json"
    return {h["name"]: h for h in json.loads(path.read_text())["hosts"]}


def last_json(result: subprocess.CompletedProcess) -> dict:
    return json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])


def droplet_container(droplet_id: str) -> str:
    found = subprocess.run(["docker", "ps", "-q", "--filter",
                            f"label=org.stagecraft.twin.droplet={droplet_id}"],
                           capture_output=True, text=True, check=True)
    assert found.stdout.strip(), f"no container for droplet {droplet_id}"
    return found.stdout.split()[0]


def test_infra_plan_then_up_makes_the_droplets_volume_vpc_and_firewalls(project: Path, twin: Twin):
    planned = run(project, "infra", "plan", "--output", "json", twin=twin)
    assert planned.returncode == 0, planned.stderr[-3000:]
    changes = {(c["kind"], c["action"]) for c in last_json(planned)["changes"]}
    assert changes == {("ssh key", "create"), ("vpc", "create"), ("droplet", "create"),
                       ("volume", "create"), ("firewall", "create")}
    up = run(project, "infra", "up", twin=twin)
    assert up.returncode == 0, up.stderr[-4000:]
    found = records(project)
    assert set(found) == {"edge-1", "app-1"}
    assert found["app-1"]["size"] == "s-1vcpu-1gb" and found["edge-1"]["size"] == "s-1vcpu-2gb"
    droplets = twin.api(f"droplets?tag_name=stagecraft-{project.name}-x")["droplets"]
    assert droplets == []
    tagged = twin.api(f"droplets?tag_name=stagecraft-{config_name(project)}-{REHEARSED}")
    assert {d["name"] for d in tagged["droplets"]} == {
        f"{config_name(project)}-{REHEARSED}-edge-1", f"{config_name(project)}-{REHEARSED}-app-1"}
    firewalls = {f["name"]: f for f in twin.api("firewalls")["firewalls"]}
    edge_rules = firewalls[f"stagecraft-{config_name(project)}-{REHEARSED}--edge"]["inbound_rules"]
    assert {r["ports"] for r in edge_rules} == {"80", "443"}
    volume = twin.api("volumes?region=fra1")["volumes"][0]
    assert volume["droplet_ids"] == [int(found["edge-1"]["provider_id"])]

    again = run(project, "infra", "up", "--output", "json", twin=twin)
    assert again.returncode == 0, again.stderr[-3000:]
    assert last_json(again)["changed"] is False
    unchanged = run(project, "infra", "plan", "--output", "json", twin=twin)
    assert last_json(unchanged)["changes"] == []

    # infra status: the droplets, then the volume and the two cloud firewalls.
    status = run(project, "infra", "status", "--output", "json", twin=twin)
    assert status.returncode == 0, status.stderr[-3000:]
    report = last_json(status)
    name = f"{config_name(project)}-{REHEARSED}"
    assert {(h["name"], h["state"], h["public_ip"]) for h in report["hosts"]} == {
        (h, "running", found[h]["public_ip"]) for h in ("edge-1", "app-1")}
    assert [(v["name"], v["size_gb"], v["attached_to"], v["host"], v["volume"])
            for v in report["volumes"]] == [
        (f"{name}-edge-1-pgdata", 2, f"{name}-edge-1", "edge-1", "pgdata")]
    walls = {f["name"]: f for f in report["firewalls"]}
    assert set(walls) == {f"stagecraft-{name}", f"stagecraft-{name}--edge"}
    edge_wall = walls[f"stagecraft-{name}--edge"]
    assert (edge_wall["droplets"], edge_wall["tags"]) == (1, [f"stagecraft-{name}--edge"])
    assert edge_wall["inbound"] == ["tcp 80 from 0.0.0.0/0, ::/0", "tcp 443 from 0.0.0.0/0, ::/0"]
    assert walls[f"stagecraft-{name}"]["droplets"] == 2
    assert {f["status"] for f in walls.values()} <= {"waiting", "succeeded"}


def config_name(project: Path) -> str:
    text = (project / "stagecraft.yml").read_text()
    return text.split("name: ", 1)[1].split()[0]


def test_bootstrap_mounts_the_volume_by_its_digitalocean_path(project: Path, twin: Twin):
    done = run(project, "bootstrap", twin=twin)
    assert done.returncode == 0, done.stderr[-4000:]
    found = records(project)
    assert {h["ssh_user"] for h in found.values()} == {"deploy"}
    container = droplet_container(found["edge-1"]["provider_id"])
    mounted = subprocess.run(["docker", "exec", container, "findmnt", "-n", "-o",
                              "SOURCE,FSTYPE", "/mnt/pgdata"], capture_output=True, text=True)
    assert mounted.stdout.split()[1:] == ["ext4"], mounted.stdout + mounted.stderr


def edge_of(project: Path) -> Edge:
    return Edge(80, DOMAIN, address=records(project)["edge-1"]["public_ip"])


def test_deploy_serves_and_a_second_deploy_under_load_fails_nothing(project: Path, twin: Twin):
    done = run(project, "deploy", twin=twin)
    assert done.returncode == 0, done.stderr[-4000:]
    edge = edge_of(project)
    assert edge.version() == "1.0.0"
    set_env_value(project, "APP_VERSION", "2.0.0")
    result, loop = run_under_load(edge, "deploy", project=project,
                                  runner=lambda p, *a: run(p, *a, twin=twin))
    assert result.returncode == 0, result.stderr[-4000:]
    assert loop.sent >= LOAD_REQUESTS
    assert loop.failures == [], loop.failures[:10]
    assert edge.version() == "2.0.0"


def test_a_size_change_is_planned_alone_and_applied(project: Path, twin: Twin):
    config = project / "stagecraft.yml"
    config.write_text(config.read_text().replace("roles: [app], size: s-1vcpu-1gb",
                                                 "roles: [app], size: s-2vcpu-2gb"))
    planned = run(project, "infra", "plan", "--output", "json", twin=twin)
    assert planned.returncode == 0, planned.stderr[-3000:]
    changes = last_json(planned)["changes"]
    assert [(c["kind"], c["action"]) for c in changes] == [("droplet", "resize")], changes
    assert "s-1vcpu-1gb → s-2vcpu-2gb" in changes[0]["detail"]
    up = run(project, "infra", "up", twin=twin)
    assert up.returncode == 0, up.stderr[-4000:]
    assert records(project)["app-1"]["size"] == "s-2vcpu-2gb"
    assert last_json(run(project, "infra", "plan", "--output", "json", twin=twin))["changes"] == []


#: How long the twin keeps the stuck droplet `new` (from its creation): well past the
#: 15s that the first `infra up` waits, well within the 2m of the second.
STUCK_SECONDS = 40


def test_a_droplet_stuck_in_new_is_named_and_a_later_up_continues(project: Path, twin: Twin):
    """A new host whose droplet stays `new` past wait_timeout (the twin's droplet_stuck
    fault, for STUCK_SECONDS, as a droplet slow to be created): exit 8 naming it and
    what to do, hosts.json without it; `infra up` again, with a longer wait_timeout as
    the hint says, waits for it and records it."""
    config = project / "stagecraft.yml"
    config.write_text(config.read_text().replace(
        'token: "${secret:DO_TOKEN}", region: fra1 }',
        'token: "${secret:DO_TOKEN}", region: fra1, wait_timeout: 15s }').replace(
        "      - { name: app-1, roles: [app], size: s-2vcpu-2gb }\n",
        "      - { name: app-1, roles: [app], size: s-2vcpu-2gb }\n"
        "      - { name: app-2, roles: [app], size: s-1vcpu-1gb }\n"))
    assert "app-2" in config.read_text() and "wait_timeout: 15s" in config.read_text()
    before = records(project)
    droplet = f"{config_name(project)}-{REHEARSED}-app-2"
    twin.fault(droplet_stuck=True, seconds=STUCK_SECONDS)

    up = run(project, "infra", "up", twin=twin)
    assert up.returncode == 8, up.stderr[-4000:]
    assert (f"error: droplet {droplet} (host app-2) stayed in status `new` for more than "
            "15s: DigitalOcean has not finished creating it\n") in up.stderr, up.stderr[-4000:]
    hint = up.stderr.split("hint: ", 1)[1]
    assert hint.startswith("look at it in DigitalOcean's control panel (cloud.digitalocean.com)")
    assert "run `stagecraft infra up` again: it finds the droplet by its name" in hint
    assert "raise providers.cloud.wait_timeout, now 15s" in hint
    assert "Traceback" not in up.stderr
    assert records(project) == before  # nothing recorded for app-2
    (stuck,) = twin.api(f"droplets?name={droplet}")["droplets"]
    assert stuck["status"] == "new"

    planned = run(project, "infra", "plan", "--output", "json", twin=twin)
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert [(c["kind"], c["name"], c["action"]) for c in last_json(planned)["changes"]] == [
        ("droplet", droplet, "wait")]

    config.write_text(config.read_text().replace("wait_timeout: 15s", "wait_timeout: 2m"))
    again = run(project, "infra", "up", "--output", "json", twin=twin)
    assert again.returncode == 0, again.stderr[-4000:]
    assert twin.api(f"droplets/{stuck['id']}")["droplet"]["status"] == "active"
    found = records(project)
    assert found["app-2"]["state"] == "running" and found["app-2"]["provider_id"] == str(stuck["id"])
    assert {h: found[h] for h in before} == before


def test_infra_down_removes_the_environment_and_nothing_else(project: Path, twin: Twin):
    # Another environment's resources on the same account.
    twin.call("POST", f"{twin.url}/vpcs", {"name": "stagecraft-other-prod", "region": "fra1"})
    twin.call("POST", f"{twin.url}/tags", {"name": "stagecraft-other-prod"})
    down = run(project, "infra", "down", "--yes", twin=twin)
    assert down.returncode == 0, down.stderr[-4000:]
    name = f"{config_name(project)}-{REHEARSED}"
    assert twin.api(f"droplets?tag_name=stagecraft-{name}")["droplets"] == []
    assert [v for v in twin.api("volumes")["volumes"] if v["name"].startswith(name)] == []
    assert [f for f in twin.api("firewalls")["firewalls"] if name in f["name"]] == []
    vpcs = {v["name"] for v in twin.api("vpcs")["vpcs"]}
    assert f"stagecraft-{name}" not in vpcs and "stagecraft-other-prod" in vpcs
    tags = {t["name"] for t in twin.api("tags")["tags"]}
    assert "stagecraft-other-prod" in tags and not any(t.startswith(f"stagecraft-{name}")
                                                       for t in tags)
    assert not (project / ".stagecraft" / REHEARSED / "hosts.json").exists()


def test_api_failures_are_retried_or_reported(tmp_path: Path, project: Path):
    """The production path (api_url and a token from the secrets file) against a twin
    without machines: a 429 is retried; a 422 names the refused droplet."""
    directory, record = tmp_path / "twin", tmp_path / "exchanges.jsonl"
    directory.mkdir()
    process = start_twin(directory, record, machines="none")
    try:
        quiet = Twin(directory, record)
        config = project / "stagecraft.yml"
        text = config.read_text()
        config.write_text(text.replace(
            'token: "${secret:DO_TOKEN}", region: fra1',
            f'token: "${{secret:DO_TOKEN}}", region: fra1, api_url: "{quiet.url}"'))
        secrets = project / f".env.{ENVIRONMENT}"
        secrets.write_text(secrets.read_text().replace("never-used-by-a-rehearsal", quiet.token))
        quiet.fault(method="GET", path="^/v2/droplets$", status=429, times=1)
        planned = run(project, "infra", "plan")
        assert planned.returncode == 0, planned.stderr[-3000:]
        assert "got HTTP 429; trying again" in planned.stderr
        quiet.fault(method="POST", path="^/v2/droplets$", status=422, times=5,
                    body={"id": "unprocessable_entity",
                          "message": "creating this/these droplet(s) will exceed your droplet limit"})
        up = run(project, "infra", "up")
        assert up.returncode == 8, up.stderr[-3000:]
        assert "DigitalOcean refused to create droplet" in up.stderr
        assert "droplet limit" in up.stderr and "hint:" in up.stderr
        assert "Traceback" not in up.stderr
        assert quiet.token not in up.stderr + up.stdout
        assert not (project / ".stagecraft" / ENVIRONMENT / "hosts.json").exists()
    finally:
        stop_twin(directory, process)
    assert_recording_valid(record, "test_api_failures_are_retried_or_reported")
