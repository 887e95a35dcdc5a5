"""The driver end to end: real ansible-runner, real ansible-playbook, local connection.

No Docker needed: two inventory hosts use ``ansible_connection=local``. Each
run costs ansible-playbook's start-up (~1-2 s).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from stagecraft.ansible.bundle import RunLock, prepare
from stagecraft.ansible.events import RunState
from stagecraft.ansible.request import RunRequest
from stagecraft.ansible.runner import recorded_events, run
from stagecraft.errors import ExitCode, Interrupted, RunFailed, StateError
from stagecraft.redact import MASK

PLAYBOOKS = Path(__file__).resolve().parent.parent / "fixtures" / "playbooks"
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
INVENTORY = {"all": {"hosts": {"alpha": LOCAL, "beta": LOCAL}}}
SECRET = "tok-93b1f0c7e4d2a6"


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / ".stagecraft" / "runs"


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    return out


def make_request(playbook: str, run_id: str = "run-1", **changes) -> RunRequest:
    values = {"run_id": run_id, "playbook": PLAYBOOKS / playbook, "inventory": INVENTORY}
    values.update(changes)
    return RunRequest(**values)


def test_success_reports_changes_and_streams_events(
    runs_dir: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAGECRAFT_TEST_LISTED", "yes")
    monkeypatch.setenv("STAGECRAFT_TEST_UNLISTED", "leaked")
    bundle = prepare(
        make_request(
            "driver_ok.yml",
            extravars={"out_dir": str(out_dir)},
            env_allowlist=("STAGECRAFT_TEST_LISTED",),
        ),
        runs_dir,
    )
    seen: list[RunState] = []
    result = run(bundle, on_event=seen.append)

    assert (result.status, result.rc, result.ok) == ("successful", 0, True)
    result.raise_for_status()
    assert {h.name: (h.ok, h.changed, h.failed) for h in result.hosts} == {
        "alpha": (3, 1, 0),
        "beta": (3, 1, 0),
    }
    assert result.failures == () and result.summary() == ""
    assert (out_dir / "alpha.txt").read_text() == "alpha\n"

    # The view saw every result as it happened, and the final recap.
    results = [s.last for s in seen if s.last.kind == "result"]
    assert len(results) == 6
    assert seen[-1].last.kind == "stats" and seen[-1].finished

    # The audit trail: ansible-runner's artifacts plus our result and stdout.
    artifacts = result.artifacts_dir
    assert artifacts == runs_dir / "run-1" / "artifacts" / "run-1"
    assert (artifacts / "rc").read_text() == "0"
    assert (artifacts / "status").read_text() == "successful"
    assert json.loads((artifacts / "result.json").read_text())["hosts"]["beta"]["changed"] == 1
    assert "TASK [Write a file per host]" in (artifacts / "stdout").read_text()
    assert len(result.events) >= 10
    # The result carries the events ansible-runner wrote, in the same order.
    on_disk = recorded_events(artifacts)
    assert [e["uuid"] for e in result.events] == [e["uuid"] for e in on_disk]
    assert [e["counter"] for e in result.events] == sorted(e["counter"] for e in result.events)

    # Only allowlisted variables reach Ansible.
    (shown,) = {
        e["event_data"]["res"]["msg"]
        for e in result.events
        if e["event"] == "runner_on_ok" and e["event_data"]["task"] == "Show the environment Ansible got"
    }
    assert shown == "listed=yes unlisted="
    command = json.loads((artifacts / "command").read_text())
    assert "STAGECRAFT_TEST_UNLISTED" not in command["env"]

    # The run is over: its lock is free and rotation may remove it.
    lock = RunLock(bundle.root / "run.lock")
    assert lock.acquire()
    lock.release()
    with pytest.raises(StateError, match="already run"):
        run(bundle)


def test_failure_names_host_task_and_message(runs_dir: Path) -> None:
    result = run(prepare(make_request("events_mixed.yml"), runs_dir))
    assert result.status == "failed" and result.rc == 2
    assert [(f.host, f.task, f.message) for f in result.failures] == [
        ("beta", "Fail on beta only", "beta is broken on purpose")
    ]
    with pytest.raises(RunFailed) as caught:
        result.raise_for_status()
    error = caught.value
    assert error.exit_code == ExitCode.RUN_FAILED
    assert "beta: Fail on beta only failed: beta is broken on purpose" in error.message
    assert str(result.artifacts_dir) in error.hint
    assert error.result is result


def test_a_secret_never_reaches_artifacts_events_or_results(runs_dir: Path, out_dir: Path) -> None:
    bundle = prepare(
        make_request(
            "driver_secret.yml",
            extravars={"out_dir": str(out_dir)},
            secret_extravars={"api_token": SECRET},
        ),
        runs_dir,
    )
    seen: list[RunState] = []
    result = run(bundle, on_event=seen.append)

    # The secret really was given to Ansible ...
    assert (out_dir / "alpha.secret").read_text() == SECRET + "\n"
    # ... and the task that echoed it shows the mask instead.
    echoed = [
        e for e in result.events
        if e["event"] == "runner_on_ok" and e["event_data"]["task"] == "Echo the secret by mistake"
    ]
    assert len(echoed) == 2
    assert echoed[0]["event_data"]["res"]["msg"] == f"the token is {MASK}"
    assert MASK in echoed[0]["stdout"]
    assert {f.message for f in result.failures} == {f"token {MASK} was rejected"}

    # Nowhere on disk under the run directory (the secrets file is gone too).
    assert not bundle.secrets_file.exists()
    files = [p for p in bundle.root.rglob("*") if p.is_file() and "project" not in p.parts]
    assert any(p.parent.name == "job_events" for p in files)
    leaks = [str(p) for p in files if SECRET.encode() in p.read_bytes()]
    assert leaks == []
    assert not list((result.artifacts_dir / "job_events").glob("*-partial.json"))
    # Nor in anything handed to the UI or the caller.
    assert SECRET not in repr(seen) and SECRET not in json.dumps(result.to_dict())
    assert SECRET not in json.dumps(list(result.events))


def test_check_mode_changes_nothing(runs_dir: Path, out_dir: Path) -> None:
    result = run(
        prepare(make_request("driver_ok.yml", extravars={"out_dir": str(out_dir)}, check=True), runs_dir)
    )
    assert result.status == "successful" and result.check
    assert all(h.changed == 1 for h in result.hosts)  # would change ...
    assert list(out_dir.iterdir()) == []  # ... but did not


def test_an_ansible_error_before_any_host_is_reported(runs_dir: Path) -> None:
    result = run(prepare(make_request("driver_missing_role.yml"), runs_dir))
    assert result.status == "failed" and result.rc != 0
    assert result.failures == ()
    assert any("stagecraft_no_such_role" in e for e in result.errors)
    with pytest.raises(RunFailed, match="stagecraft_no_such_role"):
        result.raise_for_status()


def _when_dispatched(task: str, action) -> callable:
    """Call ``action`` once ``task`` has been handed to every host (both started)."""
    started: set[str] = set()

    def on_event(state: RunState) -> None:
        update = state.last
        if update.kind == "start" and update.task == task:
            started.add(update.host)
            if started == {"alpha", "beta"}:
                action()

    return on_event


def test_stop_lets_the_current_task_finish_and_starts_no_other(
    runs_dir: Path, out_dir: Path
) -> None:
    cancel = threading.Event()
    bundle = prepare(
        make_request("driver_slow.yml", extravars={"marker_dir": str(out_dir)}), runs_dir
    )
    result = run(bundle, on_event=_when_dispatched("Sleep a moment", cancel.set), cancel=cancel)
    assert result.status == "canceled"
    assert result.state.stop_requested
    # The sleep already running finished on both hosts ...
    assert {h.name: (h.ok, h.last) for h in result.hosts} == {
        "alpha": (1, "ok"),
        "beta": (1, "ok"),
    }
    # ... and the next task never started anywhere.
    assert list(out_dir.iterdir()) == []
    assert result.rc == 99  # ansible-playbook ended itself (as after Ctrl-C), not killed
    with pytest.raises(Interrupted) as caught:
        result.raise_for_status()
    assert caught.value.exit_code == ExitCode.INTERRUPTED


def test_ctrl_c_twice_stops_at_once(runs_dir: Path, out_dir: Path) -> None:
    previous = signal.getsignal(signal.SIGINT)

    def press_ctrl_c_twice() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    result = run(
        prepare(make_request("driver_slow.yml", extravars={"marker_dir": str(out_dir)}), runs_dir),
        on_event=_when_dispatched("Sleep a moment", press_ctrl_c_twice),
    )
    assert result.status == "canceled"
    # Killed during the sleep: no host finished it (one Ctrl-C would wait for it).
    assert all(h.ok == 0 for h in result.hosts)
    assert result.rc == 254  # ansible-runner killed it
    assert signal.getsignal(signal.SIGINT) is previous


def test_timeout_kills_the_run(runs_dir: Path, out_dir: Path) -> None:
    result = run(
        prepare(
            make_request("driver_slow.yml", extravars={"marker_dir": str(out_dir)}, timeout=0.5),
            runs_dir,
        )
    )
    assert result.status == "timeout"
    assert list(out_dir.iterdir()) == []
    with pytest.raises(RunFailed, match="timed out"):
        result.raise_for_status()


def test_a_failing_view_stops_the_run_and_raises(runs_dir: Path, out_dir: Path) -> None:
    bundle = prepare(
        make_request(
            "driver_slow.yml",
            extravars={"marker_dir": str(out_dir)},
            secret_extravars={"unused": SECRET},
        ),
        runs_dir,
    )

    def broken_view(state: RunState) -> None:
        raise RuntimeError("the terminal went away")

    with pytest.raises(RuntimeError, match="terminal went away"):
        run(bundle, on_event=broken_view)
    assert list(out_dir.iterdir()) == []
    assert not bundle.secrets_file.exists()
    assert not bundle.lock.held
