"""The release ledger: records, the file, its errors, and the questions it answers."""

from __future__ import annotations

import json
import os
import warnings
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from stagecraft import log
from stagecraft.errors import ExitCode, StateError
from stagecraft.ledger import (
    ImageRecord,
    Ledger,
    LedgerData,
    PhaseHostRecord,
    Release,
    ReleaseHost,
    ReleaseNotFound,
    ledger_path,
)
from stagecraft.redact import Redactor
from stagecraft.render.state import HostState, ServiceState

T0 = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)


def rid(minute: int, sha: str = "3f9c2ab") -> str:
    return f"20261121T10{minute:02d}00Z-{sha}"


def state(image: str, traefik: str = "t1") -> HostState:
    return HostState(services={"web": ServiceState("web", image, "c0ffee", "rolling", 2)},
                     traefik_hash=traefik)


def release(minute: int, *, env: str = "production", result: str = "succeeded",
            switched: dict[str, bool] | None = None, **fields) -> Release:
    hosts = {host: ReleaseHost(state=state(f"reg/shop-web:{minute}").to_dict(), switched=done,
                               status="ok" if done else "failed")
             for host, done in (switched or {}).items()}
    return Release(id=rid(minute), environment=env, created=T0 + timedelta(minutes=minute),
                   result=result, hosts=hosts, performer="ann@laptop", **fields)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger.for_project(tmp_path)


def test_lives_in_the_project_stagecraft_dir(tmp_path: Path) -> None:
    assert ledger_path(tmp_path) == tmp_path / ".stagecraft" / "releases.json"
    assert Ledger.for_project(tmp_path).lock_path == tmp_path / ".stagecraft" / "releases.json.lock"


def test_missing_file_is_an_empty_ledger(ledger: Ledger) -> None:
    assert ledger.load() == LedgerData()
    assert ledger.releases("production") == []
    assert ledger.last_successful("production") is None
    assert ledger.deployed_state("production") == {}
    assert not ledger.path.exists()


def test_record_then_load_gives_the_same_release(ledger: Ledger) -> None:
    written = release(1, switched={"app-1": True}, images={
        "web": ImageRecord(ref="reg/shop-web:3f9c2ab", digest="sha256:" + "a" * 64)})
    written.phase("rollout").hosts["app-1"] = PhaseHostRecord(status="ok", seconds=7.5,
                                                               changed=True, detail="rolled web")
    ledger.record(written)
    assert ledger.get(rid(1)) == written
    assert Release.model_validate_json(written.model_dump_json()) == written


def test_file_shape(ledger: Ledger) -> None:
    ledger.record(release(1, switched={"app-1": True}))
    data = json.loads(ledger.path.read_text())
    assert data["schema_version"] == 1
    [stored] = data["releases"]
    assert stored["id"] == rid(1)
    assert stored["created"] == "2026-11-21T10:01:00Z"
    assert stored["hosts"]["app-1"]["state"] == state("reg/shop-web:1").to_dict()
    assert stored["hosts"]["app-1"]["switched"] is True


def test_times_are_stored_in_utc_whole_seconds() -> None:
    local = datetime(2026, 11, 21, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    made = Release(id=rid(0), environment="production", created=local)
    assert made.model_dump(mode="json")["created"] == "2026-11-21T10:00:00Z"
    with pytest.raises(ValidationError):
        Release(id=rid(0), environment="production", created=datetime(2026, 11, 21))


def test_record_replaces_the_release_with_the_same_id(ledger: Ledger) -> None:
    ledger.record(release(1, result="running"))
    ledger.record(release(1, result="failed"))
    assert [r.result for r in ledger.releases()] == ["failed"]


def test_record_new_never_replaces_a_release_it_takes_the_next_free_second(
        ledger: Ledger) -> None:
    first = ledger.record_new(release(1, result="running", message="first"))
    second = ledger.record_new(release(1, result="running", message="second"))
    third = ledger.record_new(release(1, result="running", message="third"))
    assert first.id == rid(1)
    assert second.id == "20261121T100101Z-3f9c2ab"
    assert third.id == "20261121T100102Z-3f9c2ab"
    stored = {r.id: r.message for r in ledger.releases()}
    assert stored == {first.id: "first", second.id: "second", third.id: "third"}


def test_discard_removes_only_a_running_record(ledger: Ledger) -> None:
    ledger.record(release(1, result="succeeded"))
    ledger.record(release(2, result="running"))
    ledger.discard(rid(1), "production")
    ledger.discard(rid(2), "production")
    ledger.discard(rid(2), "production")  # gone already: nothing to do
    assert [r.id for r in ledger.releases()] == [rid(1)]


def test_same_id_in_two_environments_are_two_releases(ledger: Ledger) -> None:
    ledger.record(release(1, env="staging"))
    ledger.record(release(1, env="production"))
    assert len(ledger.releases()) == 2
    assert ledger.get(rid(1), "staging").environment == "staging"
    with pytest.raises(ReleaseNotFound) as caught:
        ledger.get(rid(1))
    assert "production, staging" in caught.value.message
    assert caught.value.hint == "name the environment (--env)"


def test_unknown_id_names_the_nearest_ids_in_time(ledger: Ledger) -> None:
    for minute in (1, 10, 20, 30, 50):
        ledger.record(release(minute))
    with pytest.raises(ReleaseNotFound) as caught:
        ledger.get(rid(22, sha="0000000"))
    assert caught.value.message == f"no release {rid(22, '0000000')} in {ledger.path}"
    assert caught.value.hint == f"the nearest release ids are {rid(20)}, {rid(30)}, {rid(10)}"
    assert caught.value.exit_code == ExitCode.USAGE


def test_unknown_id_in_an_empty_ledger(ledger: Ledger) -> None:
    with pytest.raises(ReleaseNotFound) as caught:
        ledger.get("nonsense", "production")
    assert caught.value.message == "no release nonsense in environment production"
    assert caught.value.hint == "there are no releases yet"


def test_releases_are_newest_first_and_per_environment(ledger: Ledger) -> None:
    for minute, env in ((3, "production"), (1, "production"), (2, "staging"), (4, "production")):
        ledger.record(release(minute, env=env))
    assert [r.id for r in ledger.releases("production")] == [rid(4), rid(3), rid(1)]
    assert [r.id for r in ledger.releases()] == [rid(4), rid(3), rid(2), rid(1)]
    stored = json.loads(ledger.path.read_text())["releases"]
    assert [r["id"] for r in stored] == [rid(1), rid(2), rid(3), rid(4)]  # oldest first on disk


def test_last_and_previous_successful_skip_failed_releases(ledger: Ledger) -> None:
    ledger.record(release(1))
    ledger.record(release(2, result="failed"))
    ledger.record(release(3))
    ledger.record(release(4, result="interrupted"))
    ledger.record(release(5, env="staging"))
    assert ledger.last_successful("production").id == rid(3)
    assert ledger.previous_successful("production", before=rid(4)).id == rid(3)
    assert ledger.previous_successful("production", before=rid(3)).id == rid(1)
    assert ledger.previous_successful("production", before=rid(1)) is None
    with pytest.raises(ReleaseNotFound):
        ledger.previous_successful("production", before=rid(5))  # a staging release


def test_deployed_state_is_per_host_the_newest_switched_release(ledger: Ledger) -> None:
    ledger.record(release(1, switched={"app-1": True, "app-2": True, "app-3": True}))
    # Failed after switching app-1 only: app-1 runs release 2 now.
    ledger.record(release(2, result="failed-after-switch",
                          switched={"app-1": True, "app-2": False}))
    ledger.record(release(3, result="failed", switched={"app-1": False, "app-2": False}))
    ledger.record(release(4, env="staging", switched={"app-1": True}))
    assert ledger.deployed_state("production") == {
        "app-1": state("reg/shop-web:2"),
        "app-2": state("reg/shop-web:1"),
        "app-3": state("reg/shop-web:1"),
    }


def test_update_reads_changes_and_writes_one_release(ledger: Ledger) -> None:
    ledger.record(release(1, result="running"))
    ledger.record(release(2, result="running"))

    def finish(r: Release) -> None:
        r.result = "succeeded"
        r.finished = T0 + timedelta(minutes=3)

    returned = ledger.update(rid(1), finish)
    assert returned.result == "succeeded"
    assert ledger.get(rid(1)) == returned
    assert ledger.get(rid(2)).result == "running"


def test_update_accepts_plain_dicts_edited_in_and_checks_them(ledger: Ledger) -> None:
    ledger.record(release(1, result="running"))

    def add_result(r: Release) -> None:
        r.phase("pull").hosts["app-1"] = {"status": "ok", "seconds": 2.0}  # type: ignore[assignment]

    def add_bad_result(r: Release) -> None:
        r.phase("pull").hosts["app-2"] = {"status": "great"}  # type: ignore[assignment]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        updated = ledger.update(rid(1), add_result)
    assert updated.phase("pull").hosts["app-1"] == PhaseHostRecord(status="ok", seconds=2.0)
    with pytest.raises(ValidationError):
        ledger.update(rid(1), add_bad_result)


def test_update_may_return_a_new_release(ledger: Ledger) -> None:
    ledger.record(release(1, result="running"))
    ledger.update(rid(1), lambda r: r.model_copy(update={"message": "hotfix"}))
    assert ledger.get(rid(1)).message == "hotfix"


def test_a_bad_update_leaves_the_file_as_it_was(ledger: Ledger) -> None:
    ledger.record(release(1, result="running"))
    before = ledger.path.read_bytes()

    def bad_value(r: Release) -> None:
        r.result = "exploded"

    def bad_nested(r: Release) -> None:
        r.hosts["app-9"] = ReleaseHost.model_construct(state={"services": "nope"})

    def new_id(r: Release) -> Release:
        return r.model_copy(update={"id": rid(2)})

    with pytest.raises(ValidationError):
        ledger.update(rid(1), bad_value)
    with pytest.raises(ValidationError):
        ledger.update(rid(1), bad_nested)
    with pytest.raises(ValueError, match="cannot change a release's id"):
        ledger.update(rid(1), new_id)
    assert ledger.path.read_bytes() == before


def test_update_of_an_unknown_release_fails(ledger: Ledger) -> None:
    with pytest.raises(ReleaseNotFound):
        ledger.update(rid(1), lambda r: None)


def test_corrupt_json_is_a_state_error_naming_file_and_position(ledger: Ledger) -> None:
    ledger.path.parent.mkdir(parents=True)
    ledger.path.write_text('{"schema_version": 1,\n "releases": [\n')
    with pytest.raises(StateError) as caught:
        ledger.load()
    assert str(ledger.path) in caught.value.message
    assert "not valid JSON (line 3" in caught.value.message
    assert "move it aside" in caught.value.hint
    assert caught.value.exit_code == ExitCode.STATE


@pytest.mark.parametrize("content, expected", [
    ("[]", "has no schema_version"),
    ('{"releases": []}', "has no schema_version"),
    ('{"schema_version": "1", "releases": []}', "unknown schema_version '1'"),
    ('{"schema_version": 0, "releases": []}', "unknown schema_version 0"),
])
def test_unknown_shapes_are_refused(ledger: Ledger, content: str, expected: str) -> None:
    ledger.path.parent.mkdir(parents=True)
    ledger.path.write_text(content)
    with pytest.raises(StateError, match=expected):
        ledger.load()


def test_a_newer_schema_is_refused_with_upgrade_hint(ledger: Ledger) -> None:
    ledger.path.parent.mkdir(parents=True)
    ledger.path.write_text('{"schema_version": 2, "releases": [], "new": true}')
    with pytest.raises(StateError) as caught:
        ledger.record(release(1))
    assert "written by a newer stagecraft (schema version 2; this stagecraft reads version 1)" \
        in caught.value.message
    assert caught.value.hint == "upgrade stagecraft to read and extend this history"
    assert json.loads(ledger.path.read_text())["schema_version"] == 2  # not overwritten


def test_invalid_records_are_refused_with_their_place(ledger: Ledger) -> None:
    ledger.record(release(1))
    ledger.record(release(2, switched={"app-1": True}))
    data = json.loads(ledger.path.read_text())
    data["releases"][0]["result"] = "exploded"
    data["releases"][1]["hosts"]["app-1"]["state"]["services"]["web"]["strategy"] = "yolo"
    ledger.path.write_text(json.dumps(data))
    with pytest.raises(StateError) as caught:
        ledger.load()
    assert "releases[0].result:" in caught.value.message
    assert "releases[1].hosts.app-1.state:" in caught.value.message


def test_a_field_it_does_not_know_is_refused(ledger: Ledger) -> None:
    # An older stagecraft must not rewrite a record it cannot fully read.
    ledger.record(release(1))
    data = json.loads(ledger.path.read_text())
    data["releases"][0]["env_values"] = {"DATABASE_URL": "postgres://u:p@db/x"}
    ledger.path.write_text(json.dumps(data))
    with pytest.raises(StateError, match=r"releases\[0\]\.env_values"):
        ledger.load()


def test_records_have_no_place_for_values(ledger: Ledger) -> None:
    with pytest.raises(ValidationError):
        Release(id=rid(1), environment="production", secrets={"TOKEN": "abc"})
    with pytest.raises(ValidationError):
        ImageRecord(ref="reg/web:1", password="hunter2")


def test_a_secret_value_that_reaches_a_record_is_masked_on_disk(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log, "_known_secrets", [])
    monkeypatch.setattr(log, "_redactor", Redactor())
    log.add_secrets("pa55-Very-Secret")
    leaky = release(1, switched={"app-1": True}, message="deploy with pa55-Very-Secret")
    leaky.hosts["app-1"].result = {"failed": True, "logs": ["DB_PASSWORD=pa55-Very-Secret"]}
    ledger.record(leaky)
    text = ledger.path.read_text()
    assert "pa55-Very-Secret" not in text
    assert ledger.get(rid(1)).message == "deploy with ********"


def test_rollback_names_what_it_brings_back() -> None:
    with pytest.raises(ValidationError, match="rollback_of"):
        Release(id=rid(2), environment="production", action="rollback")
    with pytest.raises(ValidationError, match="only for action rollback"):
        Release(id=rid(2), environment="production", rollback_of=rid(1))
    with pytest.raises(ValidationError):
        Release(id=rid(2), environment="production", action="rollback", rollback_of="yesterday")
    made = Release(id=rid(2), environment="production", action="rollback", rollback_of=rid(1))
    assert made.rollback_of == rid(1)


def test_ids_must_be_release_ids() -> None:
    with pytest.raises(ValidationError, match="not a release id"):
        Release(id="latest", environment="production")


def test_phase_adds_phases_in_their_order() -> None:
    made = Release(id=rid(1), environment="production")
    made.phase("finalize").status = "ok"
    made.phase("lock")
    made.phase("rollout")
    assert [p.name for p in made.phases] == ["lock", "rollout", "finalize"]
    assert made.phase("finalize").status == "ok"
    with pytest.raises(ValueError, match="unknown phase 'deploy'"):
        made.phase("deploy")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="appears twice"):
        Release(id=rid(1), environment="production",
                phases=[{"name": "lock"}, {"name": "lock"}])


def test_a_killed_writer_leaves_a_ledger_that_loads(ledger: Ledger) -> None:
    ledger.record(release(1))
    # A writer killed between writing its temp file and renaming it leaves this:
    stale = ledger.path.parent / f".{ledger.path.name}.k1ll3d.tmp"
    stale.write_text('{"schema_version": 1, "releases": [{"id": "2026')
    assert [r.id for r in ledger.releases()] == [rid(1)]
    ledger.record(release(2))
    assert not stale.exists()  # the next writer, under the lock, cleans it up
    assert [r.id for r in ledger.releases()] == [rid(2), rid(1)]


def test_writes_leave_no_temp_files(ledger: Ledger) -> None:
    ledger.record(release(1))
    ledger.update(rid(1), lambda r: None)
    assert sorted(p.name for p in ledger.path.parent.iterdir()) == [
        "releases.json", "releases.json.lock"]


def test_a_running_release_whose_process_is_gone_is_marked_interrupted(tmp_path) -> None:
    import socket
    import subprocess

    from stagecraft.ledger import Ledger
    from stagecraft.ledger.model import Release

    gone = subprocess.Popen(["true"])
    gone.wait()
    ledger = Ledger.for_project(tmp_path)
    me = f"someone@{socket.gethostname()}"
    killed = Release(id="20261121T101500Z-3f9c2ab", environment="local", performer=me,
                     pid=gone.pid)
    killed.phase("rollout").status = "running"
    alive = Release(id="20261121T101600Z-3f9c2ab", environment="local", performer=me,
                    pid=os.getpid())
    elsewhere = Release(id="20261121T101700Z-3f9c2ab", environment="local",
                        performer="someone@another-machine", pid=gone.pid)
    for release in (killed, alive, elsewhere):
        ledger.record(release)

    assert ledger.mark_abandoned("local") == [killed.id]
    after = {r.id: r for r in ledger.releases("local")}
    assert after[killed.id].result == "interrupted"
    assert after[killed.id].phase("rollout").status == "failed"
    assert after[killed.id].error.phase == "rollout"
    assert "killed" in after[killed.id].error.message
    assert after[alive.id].result == "running"
    assert after[elsewhere.id].result == "running"
    assert ledger.mark_abandoned("local") == []
