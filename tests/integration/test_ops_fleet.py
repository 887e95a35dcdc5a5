"""The operator commands against a real two-host fleet of examples/shop.

One fleet for the module (infra up --bootstrap, one deploy), then status, logs,
ssh, exec, audit and lock, and last status with one host stopped.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
from shop_fleet import WITHOUT_DB, copy_example, fleet, project_name, stagecraft

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

APP_VERSION = "ops-v1"


def as_json(result: subprocess.CompletedProcess):
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    directory = copy_example(tmp_path_factory.mktemp("ops"), "o",
                             {**WITHOUT_DB, 'APP_VERSION: "1.0.0"': f'APP_VERSION: "{APP_VERSION}"'})
    with fleet(directory):
        deploy = stagecraft(directory, "deploy", "--yes")
        assert deploy.returncode == 0, deploy.stderr[-6000:]
        yield directory


@pytest.fixture(scope="module")
def release_id(project: Path) -> str:
    releases = as_json(stagecraft(project, "releases", "list", "--output", "json"))
    return releases[0]["id"]


def host_container(project: Path, host: str) -> str:
    """The docker container that is the local cloud's host ``host``."""
    names = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True,
                           text=True, check=True).stdout.split()
    matches = [n for n in names if project_name(project) in n and n.endswith(host)]
    assert len(matches) == 1, (host, names)
    return matches[0]


def test_status_reports_both_hosts(project: Path, release_id: str) -> None:
    report = as_json(stagecraft(project, "status", "--output", "json"))
    hosts = {h["host"]: h for h in report["hosts"]}
    assert set(hosts) == {"local-1", "local-2"}
    for host in hosts.values():
        assert host["reachable"] is True, host
        assert host["current_release"] == release_id
        assert host["traefik_running"] is True
        web = [c for c in host["containers"] if c["service"] == "web"]
        assert len(web) == 2 and all(c["state"] == "running" and c["health"] == "healthy"
                                     for c in web), web
        assert all(c["config_hash"] and c["strategy"] == "rolling" for c in web)
    edge_routes = hosts["local-1"]["routes"]
    assert any("shop.localhost" in r["rule"] and r["status"] == "enabled" for r in edge_routes), \
        edge_routes
    assert report["lock"] == {"held": False, "host": "local-1"}
    text = stagecraft(project, "status")
    assert text.returncode == 0, text.stderr
    assert f"local-1 (edge, app): release {release_id}" in text.stdout
    assert "lock: not held" in text.stdout


def doctor(project: Path) -> tuple[int, dict]:
    result = stagecraft(project, "doctor", "--output", "json")
    return result.returncode, json.loads(result.stdout.splitlines()[-1])


def checks_of(report: dict, scope: str) -> dict[str, dict]:
    return {c["check"]: c for c in report["checks"] if c["scope"] == scope}


def test_doctor_checks_the_controller_and_every_host(project: Path) -> None:
    code, report = doctor(project)
    assert code == 0 and report["ok"] is True, report
    for host in ("local-1", "local-2"):
        checks = checks_of(report, host)
        assert {name: c["status"] for name, c in checks.items()} == {
            "reachable": "ok", "docker engine": "ok", "compose v2 plugin": "ok",
            "traefik": "ok", "clock skew": "ok",
            **({"deploy lock": "ok"} if host == "local-1" else {})}, checks
        # Versions as the hosts' own tools print them (Debian trixie's docker.io, compose)
        assert checks["docker engine"]["detail"][0].isdigit()
        assert checks["compose v2 plugin"]["detail"][0].isdigit()
    assert checks_of(report, "local-1")["deploy lock"]["detail"] == "free"
    controller = checks_of(report, "controller")
    assert controller["docker engine"]["status"] == "ok"
    assert controller["local cloud: host image"]["status"] == "ok"
    text = stagecraft(project, "doctor")
    assert text.returncode == 0, text.stdout + text.stderr
    assert "0 missing, 0 wrong" in text.stderr


def test_logs_merge_both_hosts(project: Path) -> None:
    result = stagecraft(project, "logs", "web", "-n", "5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(" | " in line for line in lines)
    prefixes = {line.split()[0] for line in lines}
    assert prefixes == {"local-1", "local-2"}, lines
    # 2 containers per host, at most 5 lines each
    assert len(lines) <= 20
    unknown = stagecraft(project, "logs", "nope")
    assert unknown.returncode == 2 and "web, worker" in unknown.stderr


def test_ssh_runs_a_command_and_passes_its_exit_code(project: Path) -> None:
    result = stagecraft(project, "ssh", "local-1", "--", "hostname")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    failed = stagecraft(project, "ssh", "local-2", "--", "exit", "3")
    assert failed.returncode == 3
    unknown = stagecraft(project, "ssh", "nowhere", "--", "true")
    assert unknown.returncode == 2 and "local-1, local-2" in unknown.stderr


def test_exec_in_a_running_container_and_one_off(project: Path) -> None:
    result = stagecraft(project, "exec", "web", "--", "printenv", "APP_VERSION")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == APP_VERSION
    on_second = stagecraft(project, "exec", "web", "--host", "local-2", "--", "sh", "-c", "exit 5")
    assert on_second.returncode == 5
    one_off = stagecraft(project, "exec", "web", "--one-off", "--", "printenv", "APP_VERSION")
    assert one_off.returncode == 0, one_off.stderr
    assert one_off.stdout.strip().splitlines()[-1] == APP_VERSION
    # the one-off container is gone and was never a web container
    report = as_json(stagecraft(project, "status", "--output", "json"))
    for host in report["hosts"]:
        assert len([c for c in host["containers"] if c["service"] == "web"]) == 2


def test_audit_has_the_deploy_of_both_hosts(project: Path, release_id: str) -> None:
    records = as_json(stagecraft(project, "audit", "--output", "json"))
    deploys = [r for r in records if r.get("action") == "deploy" and r["release"] == release_id]
    assert {r["audit_host"] for r in deploys} == {"local-1", "local-2"}, records
    assert all(r["result"] == "ok" for r in deploys)
    text = stagecraft(project, "audit", "--host", "local-2", "-n", "1")
    assert text.returncode == 0 and len(text.stdout.splitlines()) == 1
    assert "local-2" in text.stdout and release_id in text.stdout


def test_lock_status_and_release(project: Path) -> None:
    assert as_json(stagecraft(project, "lock", "status", "--output", "json")) == {
        "held": False, "host": "local-1"}
    # A lock left by a process of this machine that is gone: a pid no process has.
    dead_pid = 2**22 + 7
    info = {"holder": f"someone@{socket.gethostname()}", "pid": dead_pid,
            "time": "2026-01-01T00:00:00Z", "release": "R-by-hand", "message": "killed deploy",
            "command": "deploy"}
    base = f"/opt/stagecraft/{project_name(project)}/local"
    made = stagecraft(project, "ssh", "local-1", "--",
                      f"mkdir {base}/lock && echo '{json.dumps(info)}' > {base}/lock/info.json")
    assert made.returncode == 0, made.stderr
    status = as_json(stagecraft(project, "lock", "status", "--output", "json"))
    assert status["held"] is True and status["stale"] is True
    assert status["holder"] == info["holder"] and status["pid"] == dead_pid
    assert status["message"] == "killed deploy" and status["age_seconds"] > 0
    text = stagecraft(project, "lock", "status")
    assert "killed deploy" in text.stdout and "stale:   yes" in text.stdout
    code, report = doctor(project)
    lock = checks_of(report, "local-1")["deploy lock"]
    assert code == 10 and report["ok"] is False
    assert lock["status"] == "wrong" and "killed deploy" in lock["detail"], lock
    assert "stagecraft lock release -e local" in lock["fix"]

    refused = stagecraft(project, "lock", "release")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert as_json(stagecraft(project, "lock", "status", "--output", "json"))["held"] is True
    released = stagecraft(project, "lock", "release", "--yes")
    assert released.returncode == 0, released.stderr
    assert "released" in released.stdout and info["holder"] in released.stdout
    assert as_json(stagecraft(project, "lock", "status", "--output", "json"))["held"] is False
    again = stagecraft(project, "lock", "release", "--yes")
    assert again.returncode == 0 and "not held" in again.stdout


def test_status_shows_a_stopped_host_as_unreachable(project: Path) -> None:
    container = host_container(project, "local-2")
    subprocess.run(["docker", "stop", container], check=True, capture_output=True, timeout=120)
    result = stagecraft(project, "status", "--output", "json")
    report = as_json(result)
    hosts = {h["host"]: h for h in report["hosts"]}
    assert hosts["local-1"]["reachable"] is True
    assert hosts["local-2"]["reachable"] is False and hosts["local-2"]["error"]
    text = stagecraft(project, "status")
    assert text.returncode == 0 and "local-2 (app): UNREACHABLE" in text.stdout
    code, report = doctor(project)
    assert code == 10
    assert checks_of(report, "local-1")["reachable"]["status"] == "ok"
    unreachable = checks_of(report, "local-2")
    assert list(unreachable) == ["reachable"], unreachable
    assert unreachable["reachable"]["status"] == "missing"
    assert "stagecraft infra status -e local" in unreachable["reachable"]["fix"]
