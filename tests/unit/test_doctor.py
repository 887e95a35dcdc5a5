"""stagecraft doctor: the verdicts of each check, from recorded host answers and from
programs on a PATH the test controls. The fleet tier runs it against real hosts
(tests/integration/test_ops_fleet.py)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from stagecraft.doctor import Report, controller
from stagecraft.doctor.hosts import Answer, doctor_script, host_checks
from stagecraft.doctor.model import Status, version_tuple
from stagecraft.hosts.probe import MARK


def answer(sections: dict[str, str], *, sent: float = 1000.0, received: float = 1000.2) -> Answer:
    text = "".join(f"{MARK}{name}\n{body}\n" for name, body in sections.items())
    return Answer(text + f"{MARK}end\n", sent, received)


HEALTHY = {"docker": "26.1.5+dfsg1", "compose": "2.26.1", "traefik": "true",
           "current": "/opt/stagecraft/shop/local/releases/R1", "lock": "none",
           "clock": "1000.1"}


def verdicts(checks) -> dict[str, str]:
    return {c.name: str(c.status) for c in checks}


def test_a_healthy_primary_host_passes_every_check() -> None:
    checks = host_checks("web-1", answer(HEALTHY), env="prod", primary=True)
    assert verdicts(checks) == {"reachable": "ok", "docker engine": "ok",
                                "compose v2 plugin": "ok", "traefik": "ok",
                                "clock skew": "ok", "deploy lock": "ok"}
    assert not any(c.failing for c in checks)


def test_only_the_primary_host_reports_the_lock() -> None:
    checks = host_checks("web-2", answer(HEALTHY), env="prod", primary=False)
    assert "deploy lock" not in verdicts(checks)


def test_an_unreachable_host_is_one_missing_line_naming_what_to_run() -> None:
    checks = host_checks("web-2", Answer("", 0, 10, "ssh: connect to host 10.0.0.2 port 22: "
                                         "Connection refused"), env="prod", primary=False)
    assert len(checks) == 1 and checks[0].status is Status.MISSING
    assert "Connection refused" in checks[0].detail
    assert "stagecraft infra status -e prod" in checks[0].fix


def test_no_docker_on_a_host_says_to_bootstrap() -> None:
    sections = {**HEALTHY, "docker": "sh: 1: docker: not found", "compose": "sh: 1: docker: not found"}
    checks = {c.name: c for c in host_checks("web-1", answer(sections), env="prod", primary=False)}
    assert checks["docker engine"].status is Status.MISSING
    assert checks["compose v2 plugin"].status is Status.MISSING
    assert checks["docker engine"].fix == "run `stagecraft bootstrap -e prod`"


def test_an_old_compose_is_wrong() -> None:
    checks = {c.name: c for c in host_checks("web-1", answer({**HEALTHY, "compose": "2.17.3"}),
                                             env="prod", primary=False)}
    assert checks["compose v2 plugin"].status is Status.WRONG
    assert "older than 2.18" in checks["compose v2 plugin"].detail


def test_traefik_is_todo_before_the_first_deploy_and_missing_after() -> None:
    before = {**HEALTHY, "traefik": "", "current": ""}
    after = {**HEALTHY, "traefik": "false"}
    first = {c.name: c for c in host_checks("h", answer(before), env="e", primary=False)}
    later = {c.name: c for c in host_checks("h", answer(after), env="e", primary=False)}
    assert first["traefik"].status is Status.TODO and not first["traefik"].failing
    assert later["traefik"].status is Status.MISSING
    assert "docker logs stagecraft-traefik" in later["traefik"].fix


@pytest.mark.parametrize(("host_clock", "status"), [
    ("1000.1", Status.OK),     # in the middle of the round trip
    ("1002.0", Status.OK),     # 1.9 s ahead: under the limit
    ("1005.0", Status.WRONG),  # 4.9 s ahead
    ("994.0", Status.WRONG),   # 6.1 s behind
    ("soon", Status.MISSING),
])
def test_clock_skew_allows_for_the_round_trip(host_clock: str, status: Status) -> None:
    checks = {c.name: c for c in host_checks("h", answer({**HEALTHY, "clock": host_clock}),
                                             env="e", primary=False)}
    assert checks["clock skew"].status is status, checks["clock skew"]


def test_a_stale_lock_is_wrong_and_a_live_one_is_ok() -> None:
    dead = {"holder": f"ci@{socket.gethostname()}", "pid": 2**22 + 7,
            "time": "2026-01-01T00:00:00Z", "release": "R0", "message": "killed",
            "command": "deploy"}
    alive = {**dead, "pid": os.getpid()}
    stale = {c.name: c for c in host_checks("h", answer({**HEALTHY, "lock": json.dumps(dead)}),
                                            env="e", primary=True)}
    held = {c.name: c for c in host_checks("h", answer({**HEALTHY, "lock": json.dumps(alive)}),
                                           env="e", primary=True)}
    assert stale["deploy lock"].status is Status.WRONG
    assert "stagecraft lock release -e e" in stale["deploy lock"].fix
    assert held["deploy lock"].status is Status.OK and "killed" in held["deploy lock"].detail


def test_the_host_script_prints_every_section_host_checks_reads(tmp_path: Path) -> None:
    # Run the real script with sh, on this machine, without docker on PATH.
    script = doctor_script("shop", "prod")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("date", "head", "readlink", "cat"):
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True,
                               text=True, check=True).stdout.strip()
        (bin_dir / tool).symlink_to(found)
    proc = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=False,
                          env={"PATH": str(bin_dir)})
    assert proc.returncode == 0, proc.stderr
    checks = {c.name: c for c in host_checks("h", Answer(proc.stdout, 0, 1e12), env="prod",
                                             primary=True)}
    assert checks["docker engine"].status is Status.MISSING
    assert checks["clock skew"].status is Status.OK  # the slack covers any clock
    assert checks["deploy lock"].detail == "free"


@pytest.mark.parametrize(("text", "expected"), [
    ("20.10.24+dfsg1", (20, 10, 24)), ("v2.40.3", (2, 40, 3)), ("2.26.1-desktop.1", (2, 26, 1)),
    ("sh: docker: not found", ()), ("", ()), ("3", (3,)),
])
def test_version_tuple(text: str, expected: tuple[int, ...]) -> None:
    assert version_tuple(text) == expected


def fake_program(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_controller_checks_read_what_the_programs_answer(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # A docker CLI whose engine is down, and a compose plugin too old.
    fake_program(tmp_path, "docker", 'if [ "$1" = compose ]; then echo 2.17.0; exit 0; fi\n'
                 'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock" >&2\n'
                 "exit 1")
    monkeypatch.setenv("PATH", str(tmp_path))
    engine = controller.check_docker_engine()
    assert engine.status is Status.MISSING and "Cannot connect" in engine.detail
    assert "make docker" in engine.fix
    compose = controller.check_compose()
    assert compose.status is Status.WRONG and compose.detail == "2.17.0 is older than 2.18"
    git = controller.check_program("git", "release ids", "git")
    assert git.status is Status.MISSING and "apt-get install git" in git.fix


def test_low_disk_space_is_wrong(tmp_path: Path) -> None:
    [enough] = controller.check_disk({"project": tmp_path}, min_free_gib=0.0)
    [short] = controller.check_disk({"project": tmp_path / "not-made-yet"}, min_free_gib=1e9)
    assert enough.status is Status.OK
    assert short.status is Status.WRONG and "docker system prune" in short.fix


def test_the_local_cloud_names_debootstrap_when_it_cannot_build_its_images(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from stagecraft.providers.cloud.local import doctor as local_doctor

    monkeypatch.setattr(local_doctor.shutil, "which", lambda name: None)
    monkeypatch.setattr(local_doctor.dockercli, "exists", lambda kind, name: False)
    check = local_doctor._base_check(images_built=False)
    assert check.status is Status.MISSING
    assert "debootstrap is not installed" in check.detail
    assert "apt-get install debootstrap" in check.fix
    assert local_doctor._base_check(images_built=True).status is Status.OK


def test_report_fails_only_on_missing_or_wrong() -> None:
    from stagecraft.doctor.model import ok, todo, wrong

    assert Report([ok("c", "a", "x"), todo("c", "b", "y", "later")]).ok
    report = Report([ok("c", "a", "x"), wrong("c", "b", "y", "fix it")])
    assert not report.ok
    assert report.to_dict()["counts"] == {"ok": 1, "missing": 0, "wrong": 1, "todo": 0}


def test_doctor_without_a_config_checks_this_machine_and_exits_by_its_verdict(
        tmp_path: Path) -> None:
    # No stagecraft.yml here or above: the local cloud, the embedded default, is checked.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "stagecraft", "doctor", "--output", "json"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, check=False,
                          timeout=120)
    report = json.loads(proc.stdout.splitlines()[-1])
    names = [c["check"] for c in report["checks"]]
    assert names[:3] == ["python", "docker engine", "compose v2 plugin"]
    assert proc.returncode == (0 if report["ok"] else 10), proc.stderr
    assert "Traceback" not in proc.stderr


def test_on_a_tailnet_each_host_must_be_logged_in_and_online() -> None:
    import json

    def tailnet(state: str, online: bool) -> str:
        return json.dumps({"BackendState": state, "Self": {
            "TailscaleIPs": ["100.64.0.7"], "DNSName": "web-1.mesh.internal.", "Online": online}})

    assert "tailscale status --json" in doctor_script("shop", "prod")
    joined = {c.name: c for c in host_checks(
        "web-1", answer({**HEALTHY, "tailnet": tailnet("Running", True)}), env="prod",
        primary=False, mesh=True)}
    assert str(joined["tailnet"].status) == "ok"
    assert joined["tailnet"].detail == "100.64.0.7 (web-1.mesh.internal), connected"
    offline = {c.name: c for c in host_checks(
        "web-1", answer({**HEALTHY, "tailnet": tailnet("Running", False)}), env="prod",
        primary=False, mesh=True)}["tailnet"]
    assert offline.failing and "offline" in offline.detail and "bootstrap" in offline.fix
    logged_out = {c.name: c for c in host_checks(
        "web-1", answer({**HEALTHY, "tailnet": tailnet("NeedsLogin", False)}), env="prod",
        primary=False, mesh=True)}["tailnet"]
    assert logged_out.failing and "NeedsLogin" in logged_out.detail
    absent = {c.name: c for c in host_checks("web-1", answer({**HEALTHY, "tailnet": ""}),
                                             env="prod", primary=False, mesh=True)}["tailnet"]
    assert str(absent.status) == "missing"
    # Without a tailnet nothing is asked of it.
    assert "tailnet" not in verdicts(host_checks("web-1", answer(HEALTHY), env="prod",
                                                 primary=False))
