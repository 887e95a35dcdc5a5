"""The host probe's script and its pure parser."""

from __future__ import annotations

import json
import subprocess

import pytest

from stagecraft.hosts.probe import (
    MARK,
    HostFacts,
    health_of,
    parse_probe_output,
    probe_host,
    probe_script,
)


def container_line(name: str, service: str, status: str, state: str = "running",
                   config_hash: str = "abc123", release: str = "") -> str:
    return json.dumps({"name": name, "state": state, "status": status, "image": "reg/shop-web:1",
                       "service": service, "config_hash": config_hash, "strategy": "rolling",
                       "release": release})


def output(*, current: str = "releases/20260101T000000Z-abc1234", containers: list[str] = (),
           traefik: str = "true", lock: str = "none", routes: str | None = None,
           end: bool = True) -> str:
    parts = [f"{MARK}current", current, f"{MARK}containers", *containers,
             f"{MARK}traefik", traefik, f"{MARK}lock", lock]
    if routes is not None:
        parts += [f"{MARK}routes", routes]
    if end:
        parts.append(f"{MARK}end")
    return "\n".join(parts) + "\n"


def test_parses_current_containers_traefik_and_no_lock() -> None:
    facts = parse_probe_output(output(containers=[
        container_line("p-local-worker-1", "worker", "Up 2 minutes"),
        container_line("p-local-web-2", "web", "Up 3 minutes (healthy)"),
        container_line("p-local-web-1", "web", "Up 1 second (health: starting)"),
        container_line("p-local-web-3", "web", "Exited (1) 2 minutes ago", state="exited"),
    ]), "h1")
    assert facts.host == "h1" and facts.reachable and facts.error == ""
    assert facts.current_release == "20260101T000000Z-abc1234"
    assert facts.traefik_running is True
    assert facts.lock is None
    assert [c.name for c in facts.service_containers("web")] == [
        "p-local-web-1", "p-local-web-2", "p-local-web-3"]
    web = {c.name: c for c in facts.service_containers("web")}
    assert web["p-local-web-1"].health == "starting"
    assert web["p-local-web-2"].health == "healthy"
    assert web["p-local-web-3"].state == "exited" and web["p-local-web-3"].health == ""
    assert facts.service_containers("worker")[0].config_hash == "abc123"
    assert facts.service_containers("db") == []


def test_no_current_no_containers_no_traefik() -> None:
    facts = parse_probe_output(output(current="", traefik=""))
    assert facts.current_release is None
    assert facts.containers == () and facts.traefik_running is False


def test_absolute_current_link_gives_the_release_id() -> None:
    facts = parse_probe_output(output(current="/opt/stagecraft/p/e/releases/R1/"))
    assert facts.current_release == "R1"


def test_lock_held_and_being_taken() -> None:
    info = {"holder": "me@box", "pid": 42, "time": "2026-01-01T00:00:00Z", "release": "R1",
            "message": "hot fix", "command": "deploy"}
    facts = parse_probe_output(output(lock=json.dumps(info)))
    assert facts.lock is not None
    assert (facts.lock.holder, facts.lock.pid, facts.lock.message) == ("me@box", 42, "hot fix")
    taken = parse_probe_output(output(lock="{}"))
    assert taken.lock is not None and taken.lock.holder == "unknown"
    broken = parse_probe_output(output(lock="{not json"))
    assert broken.lock is not None and "unreadable" in broken.lock.message


def test_routes_are_reduced_to_their_names_rules_and_status() -> None:
    routers = [{"name": "web-http@file", "rule": "Host(`shop.localhost`)", "status": "enabled",
                "service": "web-backends", "entryPoints": ["web"], "provider": "file",
                "using": ["web"]}]
    facts = parse_probe_output(output(routes=json.dumps(routers)))
    assert facts.routes == ({"name": "web-http@file", "rule": "Host(`shop.localhost`)",
                             "status": "enabled", "service": "web-backends",
                             "entrypoints": ["web"], "provider": "file"},)
    assert parse_probe_output(output(routes="")).routes == ()
    assert parse_probe_output(output(routes="<html>")).routes == ()


def test_docker_errors_and_truncated_output_are_reported() -> None:
    facts = parse_probe_output(output(containers=[
        "permission denied while trying to connect to the Docker daemon socket"], end=False))
    assert facts.reachable
    assert "permission denied" in facts.error and "incomplete" in facts.error


@pytest.mark.parametrize("status,health", [
    ("Up 5 minutes (healthy)", "healthy"), ("Up 5 minutes (unhealthy)", "unhealthy"),
    ("Up 1 second (health: starting)", "starting"), ("Up 5 minutes", ""), ("Created", ""),
])
def test_health_of_docker_status(status: str, health: str) -> None:
    assert health_of(status) == health


def test_to_dict_is_json() -> None:
    facts = parse_probe_output(output(containers=[container_line("c", "web", "Up (healthy)")]), "h")
    data = json.loads(json.dumps(facts.to_dict()))
    assert data["containers"][0]["health"] == "healthy"
    assert data["lock"] is None and data["current_release"] == "20260101T000000Z-abc1234"


def test_the_script_runs_in_sh_and_parses(tmp_path) -> None:
    # No docker, no current link: every section is still printed and parsed.
    script = probe_script("proj", "env", routes=True).replace("/opt/stagecraft", str(tmp_path))
    assert "python" not in script
    text = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                          env={"PATH": "/nonexistent"}).stdout
    facts = parse_probe_output(text, "h")
    assert facts.current_release is None and facts.lock is None and facts.routes == ()
    base = tmp_path / "proj" / "env"
    (base / "releases" / "R7").mkdir(parents=True)
    (base / "current").symlink_to("releases/R7")
    (base / "lock").mkdir()
    script = probe_script("proj", "env").replace("/opt/stagecraft", str(tmp_path))
    text = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}).stdout
    facts = parse_probe_output(text, "h")
    assert facts.current_release == "R7"
    assert facts.lock is not None and facts.lock.message == "being taken"


class _FakeHost:
    name = "h9"

    def __init__(self, completed=None, error=None) -> None:
        self.completed, self.error = completed, error

    def run(self, command, **kwargs):
        if self.error:
            raise self.error
        return self.completed


def test_unreachable_host_is_reported_not_raised() -> None:
    from stagecraft.errors import CommandFailed
    from stagecraft.execs import Completed

    refused = Completed(("ssh",), 255, "", "ssh: connect to host 10.0.0.9 port 22: "
                        "Connection refused", 0.1)
    facts = probe_host(_FakeHost(refused), "p", "e")  # type: ignore[arg-type]
    assert isinstance(facts, HostFacts)
    assert facts.reachable is False and "Connection refused" in facts.error
    timed_out = probe_host(_FakeHost(error=CommandFailed("`ssh` timed out after 15s")),  # type: ignore[arg-type]
                           "p", "e")
    assert timed_out.reachable is False and "timed out" in timed_out.error
