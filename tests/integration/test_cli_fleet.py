"""The CLI against the real local fleet: infra up/status/down and bootstrap.

These run the `stagecraft` console script as a user would, on containers that
boot systemd and are reached over SSH with pinned host keys. One module-scoped
project keeps the cost to one fleet and one first bootstrap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

STAGECRAFT = str(Path(sys.executable).with_name("stagecraft"))


def stagecraft(project: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([STAGECRAFT, *args], cwd=project, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "STAGECRAFT_ENV": "local"})


def last_json(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON on stdout:\n{stdout}"
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    name = f"t{uuid.uuid4().hex[:8]}"
    directory = tmp_path_factory.mktemp("fleet")
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
        environments:
          local:
            providers: {{ cloud: {{ kind: local }} }}
            domain: {name}.localhost
            hosts:
              - {{ name: node-1, roles: [edge, app] }}
              - {{ name: node-2, roles: [app] }}
        """))
    yield directory
    result = stagecraft(directory, "infra", "down", "--yes")
    assert result.returncode == 0, result.stderr


def test_infra_up_twice_then_status(project: Path) -> None:
    first = stagecraft(project, "infra", "up", "--output", "json")
    assert first.returncode == 0, first.stderr
    created = last_json(first.stdout)
    assert created["changed"] is True
    assert [h["change"] for h in created["hosts"]] == ["created", "created"]

    second = stagecraft(project, "infra", "up", "--output", "json")
    assert second.returncode == 0, second.stderr
    again = last_json(second.stdout)
    assert again["changed"] is False
    assert [h["change"] for h in again["hosts"]] == ["unchanged", "unchanged"]

    status = stagecraft(project, "infra", "status")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].split() == ["host", "roles", "state", "ssh", "private", "ip"]
    assert lines[1].split()[:3] == ["node-1", "edge,app", "running"]
    assert lines[2].split()[:3] == ["node-2", "app", "running"]


def test_bootstrap_twice_second_run_changes_nothing(project: Path) -> None:
    first = stagecraft(project, "bootstrap", "--output", "json")
    assert first.returncode == 0, first.stderr + first.stdout[-3000:]
    result = last_json(first.stdout)
    assert result["status"] == "successful"
    assert all(h["changed"] > 0 for h in result["hosts"].values())

    second = stagecraft(project, "bootstrap", "--output", "json")
    assert second.returncode == 0, second.stderr
    again = last_json(second.stdout)
    assert again["status"] == "successful"
    changed_tasks = [f"{e['host']}: {e['task']}" for e in _events(second.stdout)
                     if e.get("event") == "result" and e.get("changed")]
    assert {h: v["changed"] for h, v in again["hosts"].items()} == {"node-1": 0, "node-2": 0}, (
        "the second bootstrap changed: " + "; ".join(changed_tasks))
    assert {h: v["failed"] for h, v in again["hosts"].items()} == {"node-1": 0, "node-2": 0}


def test_bootstrap_names_the_host_that_went_away_and_recovers(project: Path) -> None:
    container = f"stagecraft-{_project_name(project)}-local-node-2"
    proc = subprocess.Popen([STAGECRAFT, "bootstrap", "--output", "json"], cwd=project,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "STAGECRAFT_ENV": "local"})
    # Stop the host once the role's tasks are running on it.
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("host") == "node-2" and event.get("event") == "result":
            subprocess.run(["docker", "stop", "-t", "0", container], check=True,
                           capture_output=True)
            break
        assert time.monotonic() < deadline, "bootstrap never reached node-2"
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 6, stderr
    assert "error: the Ansible run" in stderr
    assert "node-2: " in stderr  # names the host, then the task and message
    failed_line = next(line for line in stderr.splitlines() if line.startswith("node-2: "))
    assert "unreachable" in failed_line or "failed" in failed_line
    assert "node-1: " not in stderr

    up = stagecraft(project, "infra", "up", "--output", "json")
    assert up.returncode == 0, up.stderr
    assert {h["name"]: h["change"] for h in last_json(up.stdout)["hosts"]}["node-2"] == "started"
    again = stagecraft(project, "bootstrap", "--output", "json")
    assert again.returncode == 0, again.stderr
    assert last_json(again.stdout)["status"] == "successful"


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _project_name(project: Path) -> str:
    for line in (project / "stagecraft.yml").read_text().splitlines():
        if line.startswith("project:"):
            return line.split("name:")[1].strip(" }")
    raise AssertionError("no project name")
