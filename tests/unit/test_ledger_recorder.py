"""The release recorder: the ledger record of a deploy or rollback after each step."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from stagecraft.deploy.outcome import HostOutcome
from stagecraft.errors import Interrupted, MigrationFailed, RunFailed
from stagecraft.ledger import (
    HostStatus,
    ImageRecord,
    Ledger,
    MigrationRecord,
    PhaseHostRecord,
    PhaseStatus,
    Release,
    ReleaseAction,
    ReleaseHost,
    ReleaseResult,
    RolloutResult,
)
from stagecraft.ledger.recorder import ReleaseRecorder
from stagecraft.render.state import HostState, ServiceState

RID = "20261121T101500Z-3f9c2ab"
EARLIER = "20261121T100000Z-3f9c2ab"


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger.for_project(tmp_path)


def start(ledger: Ledger, *, dry_run: bool = False, said: list[str] | None = None,
          action: ReleaseAction = ReleaseAction.DEPLOY,
          rollback_of: str | None = None) -> ReleaseRecorder:
    return ReleaseRecorder.start(
        ledger, "production", ledger.path.parent.parent, action=action, release_id=RID,
        config_hash="c0ffee", message="hotfix", rollback_of=rollback_of, dry_run=dry_run,
        say=(said.append if said is not None else lambda _: None))


def host_state(image: str) -> dict:
    return HostState(services={"web": ServiceState("web", image, "c0ffee", "rolling", 2)},
                     traefik_hash="t1").to_dict()


def settled(ledger: Ledger) -> ReleaseRecorder:
    recorder = start(ledger)
    recorder.settle({"web": ImageRecord(ref="reg/shop-web:1", digest="sha256:" + "a" * 64)},
                    {host: ReleaseHost(state=host_state("reg/shop-web:1"))
                     for host in ("app-1", "app-2")})
    return recorder


def stored(ledger: Ledger) -> Release:
    return ledger.get(RID, "production")


def test_start_records_a_running_release(ledger: Ledger) -> None:
    recorder = start(ledger)
    release = stored(ledger)
    assert recorder.release == release and recorder.release_id == RID
    assert release.result == ReleaseResult.RUNNING and release.action == ReleaseAction.DEPLOY
    assert (release.message, release.config_hash, release.pid) == ("hotfix", "c0ffee",
                                                                   os.getpid())
    assert release.git.sha is None  # the project dir is no git work tree


def test_a_second_start_in_the_same_second_gets_the_next_id(ledger: Ledger) -> None:
    start(ledger)
    assert start(ledger).release_id == "20261121T101501Z-3f9c2ab"


def test_a_rollback_gets_a_record_id_of_its_own(ledger: Ledger) -> None:
    recorder = start(ledger, action=ReleaseAction.ROLLBACK, rollback_of=EARLIER)
    assert recorder.release is not None and recorder.release_id != RID
    assert recorder.release.action == ReleaseAction.ROLLBACK
    assert recorder.release.rollback_of == EARLIER


def test_start_marks_releases_of_gone_processes_interrupted(ledger: Ledger) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    ledger.record(Release(id=EARLIER, environment="production", pid=gone.pid,
                          performer=f"someone@{socket.gethostname()}"))
    said: list[str] = []
    start(ledger, said=said)
    assert ledger.get(EARLIER).result == ReleaseResult.INTERRUPTED
    assert said == [(f"release {EARLIER} was left running by a process that is gone: "
                     "recorded as interrupted")]


def test_a_dry_run_records_nothing(ledger: Ledger) -> None:
    recorder = start(ledger, dry_run=True)
    recorder.settle({}, {"app-1": ReleaseHost(state=host_state("reg/shop-web:1"))})
    recorder.phase_started("lock")
    recorder.phase_finished("lock")
    recorder.record_hosts({"rollout": {"app-1": HostOutcome()}}, {"app-1"})
    recorder.record_migration(MigrationRecord(phase="pre", engine="raw"))
    recorder.fail(RunFailed("no"), phase="rollout")
    recorder.finish(ReleaseResult.SUCCEEDED)
    recorder.discard()
    assert recorder.release is None and recorder.release_id is None
    assert recorder.switched_hosts() == set()
    assert not ledger.path.exists()


def test_settle_records_images_and_host_states(ledger: Ledger) -> None:
    settled(ledger)
    release = stored(ledger)
    assert release.images["web"].ref == "reg/shop-web:1"
    assert set(release.hosts) == {"app-1", "app-2"}
    assert release.hosts["app-1"].status == HostStatus.PENDING
    assert not release.hosts["app-1"].switched


def test_a_phase_records_when_it_started_and_how_it_ended(ledger: Ledger) -> None:
    recorder = start(ledger)
    recorder.phase_started("lock")
    lock = stored(ledger).phase("lock")
    assert lock.status == PhaseStatus.RUNNING and lock.started and lock.finished is None
    recorder.phase_finished("lock")
    recorder.phase_finished("build", PhaseStatus.FAILED)
    release = stored(ledger)
    assert release.phase("lock").status == PhaseStatus.OK and release.phase("lock").finished
    build = release.phase("build")
    assert build.status == PhaseStatus.FAILED and build.started == build.finished


def test_record_hosts_records_each_phase_per_host_and_the_switch(ledger: Ledger) -> None:
    recorder = settled(ledger)
    services = {"web": {"action": "rolled", "containers": ["shop-web-3"], "seconds": 3.5}}
    recorder.record_hosts({
        "pull": {"app-1": HostOutcome(status="ok", seconds=1.234, changed=True),
                 "app-2": HostOutcome(status="skipped")},
        "rollout": {"app-1": HostOutcome(status="ok", seconds=4.0, changed=True,
                                         services=services, current=RID),
                    "app-2": HostOutcome(status="unreachable", detail="x" * 900)},
        "check": {"app-1": HostOutcome()},  # a play that is no ledger phase
    }, {"app-1"})
    release = stored(ledger)
    assert [p.name for p in release.phases] == ["pull", "rollout"]
    assert release.phase("pull").status == PhaseStatus.OK
    assert release.phase("pull").hosts == {
        "app-1": PhaseHostRecord(status=PhaseStatus.OK, seconds=1.23, changed=True),
        "app-2": PhaseHostRecord(status=PhaseStatus.SKIPPED, seconds=0.0)}
    rollout = release.phase("rollout")
    assert rollout.status == PhaseStatus.FAILED and rollout.finished is not None
    assert rollout.hosts["app-2"].status == PhaseStatus.FAILED
    assert rollout.hosts["app-2"].detail == "x" * 500
    assert recorder.switched_hosts() == {"app-1"}
    assert release.hosts["app-1"].status == HostStatus.OK and release.hosts["app-1"].switched
    assert release.hosts["app-1"].result == RolloutResult(services=services, current=RID)
    assert release.hosts["app-2"].status == HostStatus.FAILED
    assert release.hosts["app-2"].result is None


def test_record_migration_appends_it(ledger: Ledger) -> None:
    recorder = start(ledger)
    record = MigrationRecord(phase="pre", engine="raw", host="app-1", status=PhaseStatus.OK,
                             applied=["0001_init.sql"], output="applied 1", seconds=0.5)
    recorder.record_migration(record)
    assert stored(ledger).migrations == [record]


def test_finish_ends_the_release_and_its_running_phase(ledger: Ledger) -> None:
    recorder = start(ledger)
    recorder.phase_started("finalize")
    recorder.finish(ReleaseResult.SUCCEEDED)
    release = stored(ledger)
    assert release.result == ReleaseResult.SUCCEEDED and release.finished is not None
    assert release.phase("finalize").status == PhaseStatus.OK
    assert release.error is None


def test_a_failure_records_the_error_its_phase_and_host(ledger: Ledger) -> None:
    recorder = start(ledger)
    recorder.phase_started("rollout")
    recorder.finish(ReleaseResult.FAILED, RunFailed("m" * 3000, hint="see the log"),
                    phase="rollout", host="app-2")
    release = stored(ledger)
    assert release.result == ReleaseResult.FAILED
    assert release.phase("rollout").status == PhaseStatus.FAILED
    assert release.error is not None
    assert (release.error.phase, release.error.host, release.error.hint) == (
        "rollout", "app-2", "see the log")
    assert release.error.message == "m" * 2000


def test_an_unknown_phase_name_is_left_out_of_the_error(ledger: Ledger) -> None:
    recorder = start(ledger)
    recorder.finish(ReleaseResult.FAILED, RunFailed("no"), phase="check")
    release = stored(ledger)
    assert release.error is not None and release.error.phase is None


@pytest.mark.parametrize("exc, result, message", [
    (Interrupted("stopped by SIGTERM"), ReleaseResult.INTERRUPTED, "stopped by SIGTERM"),
    (KeyboardInterrupt(), ReleaseResult.INTERRUPTED, "stopped by Ctrl-C"),
    (RunFailed("web never became healthy"), ReleaseResult.FAILED, "web never became healthy"),
    (ValueError("boom"), ReleaseResult.FAILED, "ValueError: boom"),
])
def test_fail_tells_interrupted_from_failed(ledger: Ledger, exc: BaseException,
                                            result: ReleaseResult, message: str) -> None:
    recorder = start(ledger)
    recorder.phase_started("build")
    recorder.fail(exc, phase="build")
    release = stored(ledger)
    assert release.result == result
    assert release.phase("build").status == PhaseStatus.FAILED
    assert release.error is not None
    assert (release.error.message, release.error.phase) == (message, "build")


def test_an_error_raised_after_every_switch_ends_failed_after_switch(ledger: Ledger) -> None:
    recorder = start(ledger)
    error = MigrationFailed("post-deploy migrations failed")
    assert error.release_result == "failed"
    error.release_result = "failed-after-switch"
    recorder.fail(error, phase="migrate-post")
    release = stored(ledger)
    assert release.result == ReleaseResult.FAILED_AFTER_SWITCH
    assert release.error is not None and release.error.phase == "migrate-post"


def test_discard_takes_back_the_record(ledger: Ledger) -> None:
    recorder = start(ledger)
    recorder.discard()
    assert recorder.release is None
    assert ledger.releases() == []


def test_the_file_keeps_its_shape_and_loads_back(ledger: Ledger) -> None:
    recorder = settled(ledger)
    recorder.phase_started("lock")
    recorder.phase_finished("lock")
    services = {"web": {"action": "rolled", "containers": ["shop-web-3"], "seconds": 3.5}}
    recorder.record_hosts({"rollout": {
        "app-1": HostOutcome(status="ok", seconds=4.0, changed=True, detail="rolled",
                             services=services, current=RID)}}, {"app-1"})
    recorder.record_migration(MigrationRecord(phase="post", engine="raw", host="app-1",
                                              status=PhaseStatus.FAILED, output="boom"))
    recorder.finish(ReleaseResult.FAILED_AFTER_SWITCH, MigrationFailed("boom"),
                    phase="migrate-post")
    data = json.loads(ledger.path.read_text())
    [raw] = data["releases"]
    assert raw["result"] == "failed-after-switch" and raw["action"] == "deploy"
    assert raw["git"] == {"sha": None, "dirty": False}
    assert raw["phases"][0]["name"] == "lock" and raw["phases"][0]["status"] == "ok"
    assert raw["phases"][1]["hosts"] == {"app-1": {"status": "ok", "seconds": 4.0,
                                                   "changed": True, "detail": "rolled"}}
    assert raw["hosts"]["app-1"]["result"] == {"services": services, "current": RID}
    assert list(raw["hosts"]["app-1"]) == ["state", "switched", "status", "result"]
    assert raw["hosts"]["app-2"]["status"] == "pending"
    assert raw["migrations"] == [{"phase": "post", "engine": "raw", "host": "app-1",
                                  "status": "failed", "applied": [], "pending_after": [],
                                  "output": "boom", "seconds": None}]
    assert raw["error"]["phase"] == "migrate-post"
    assert Release.model_validate(raw) == stored(ledger)


def test_a_record_written_before_the_recorder_is_written_again_unchanged(
        ledger: Ledger) -> None:
    # What the engine wrote with plain dicts; the rollout result as the module gave it.
    raw = {
        "id": RID, "environment": "production", "action": "deploy", "rollback_of": None,
        "git": {"sha": None, "dirty": False}, "images": {}, "config_hash": "c0ffee",
        "performer": "ann@laptop", "pid": None, "created": "2026-11-21T10:15:00Z",
        "finished": "2026-11-21T10:16:00Z", "result": "failed", "message": "",
        "phases": [{"name": "rollout", "status": "failed", "started": "2026-11-21T10:15:10Z",
                    "finished": "2026-11-21T10:15:50Z",
                    "hosts": {"app-1": {"status": "failed", "seconds": 3.0, "changed": False,
                                        "detail": "Roll: unhealthy"}}}],
        "hosts": {"app-1": {"state": host_state("reg/shop-web:1"), "switched": False,
                            "status": "failed",
                            "result": {"failed": True, "msg": "unhealthy",
                                       "logs": {"shop-web-3": "line"}}}},
        "migrations": [],
        "error": {"message": "unhealthy", "hint": None, "phase": "rollout", "host": "app-1"},
    }
    text = json.dumps({"schema_version": 1, "releases": [raw]}, indent=2) + "\n"
    ledger.path.parent.mkdir(parents=True)
    ledger.path.write_text(text)
    ledger.update(RID, lambda release: None)
    assert ledger.path.read_text() == text
