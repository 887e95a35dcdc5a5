"""Progress views rendered from reducer state (recorded events, no Ansible run)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from stagecraft.ansible.events import STOP_REQUESTED, RunState, reduce
from stagecraft.ui.progress import (
    STOPPING_MESSAGE,
    JsonProgress,
    LiveProgress,
    PlainProgress,
    progress_view,
    render_progress,
    render_table,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "job_events"
MIXED = json.loads((FIXTURES / "mixed.json").read_text())


def play(view, events=MIXED, hosts=("alpha", "beta")) -> RunState:
    """Feed events to a view the way the driver does: only states with an update."""
    state = RunState.start(hosts)
    with view:
        for event in events:
            state = reduce(state, event)
            if state.last is not None:
                view.update(state)
    return state


def test_plain_lines_one_per_result_without_skips() -> None:
    err = io.StringIO()
    play(PlainProgress(err, verbosity=0))
    assert err.getvalue().splitlines() == [
        "PLAY Exercise every task outcome",
        "alpha  ok           Say hello",
        "beta   ok           Say hello",
        "alpha  changed      Report a change",
        "beta   changed      Report a change",
        "beta   failed       Fail on beta only: beta is broken on purpose",
        "alpha  ignored      Fail but ignore it: non-zero return code",
        "alpha  failed       Fail inside a block: rescued on purpose",
        "alpha  ok           Rescue the failure",
        "alpha  ok           Finish",
        "RECAP",
        "alpha  ok=5 changed=1 failed=0 skipped=2 unreachable=0 ignored=1 rescued=1",
        "beta   ok=2 changed=1 failed=1 skipped=1 unreachable=0 ignored=0 rescued=0",
    ]


def test_plain_verbose_adds_tasks_and_skips() -> None:
    err = io.StringIO()
    play(PlainProgress(err, verbosity=1))
    lines = err.getvalue().splitlines()
    assert "TASK Skip on every host" in lines
    assert "alpha  skipped      Skip on every host" in lines
    assert lines.count("TASK Say hello") == 1


def test_plain_quiet_shows_only_failures() -> None:
    err = io.StringIO()
    play(PlainProgress(err, verbosity=-1))
    assert err.getvalue().splitlines() == [
        "beta   failed       Fail on beta only: beta is broken on purpose",
        "alpha  failed       Fail inside a block: rescued on purpose",
    ]


def test_plain_stop_and_error_lines_and_multiline_messages() -> None:
    err = io.StringIO()
    view = PlainProgress(err, verbosity=-1)
    state = reduce(RunState(), {"event": STOP_REQUESTED})
    view.update(state)
    state = reduce(state, {"event": "verbose", "stdout": "[ERROR]: bad thing"})
    view.update(state)
    state = reduce(state, {
        "event": "runner_on_failed",
        "event_data": {"host": "h", "task": "T", "res": {"msg": "line one\nline two\n"}},
    })
    view.update(state)
    assert err.getvalue().splitlines() == [
        STOPPING_MESSAGE,
        "ansible: bad thing",
        "h  failed       T: line one / line two",
    ]


def test_json_lines_one_object_per_event_of_interest() -> None:
    out = io.StringIO()
    play(JsonProgress(out, run_id="r-7"))
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert all(r["run_id"] == "r-7" for r in records)
    kinds = [r["event"] for r in records]
    assert kinds[0] == "play" and kinds[-1] == "recap"
    assert kinds.count("task") == 8
    assert "start" not in kinds
    results = [r for r in records if r["event"] == "result"]
    assert len(results) == sum(
        e["event"].startswith("runner_on_") and e["event"] != "runner_on_start" for e in MIXED
    )
    failed = [r for r in results if r["failed"]]
    assert {(r["host"], r["task"], r["message"]) for r in failed} == {
        ("beta", "Fail on beta only", "beta is broken on purpose"),
        ("alpha", "Fail inside a block", "rescued on purpose"),
    }
    changed = [(r["host"], r["task"]) for r in results if r["changed"]]
    assert changed == [("alpha", "Report a change"), ("beta", "Report a change")]
    recap = records[-1]
    assert recap["hosts"]["alpha"]["ok"] == 5 and recap["hosts"]["beta"]["status"] == "failed"
    assert recap["failures"] == [
        {"host": "beta", "task": "Fail on beta only", "message": "beta is broken on purpose",
         "unreachable": False}
    ]


def _text(renderable) -> str:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def test_table_shows_each_host_with_task_status_and_counts() -> None:
    # Mid-run: beta has failed, alpha is running the ignored-failure task.
    state = RunState.start(["alpha", "beta"])
    for event in MIXED[:24]:
        state = reduce(state, event)
    rows = {line.split()[0]: line.split() for line in _text(render_table(state)).splitlines()[2:]}
    assert rows["alpha"][1:3] == ["running", "Fail"]
    assert rows["alpha"][-4:] == ["2", "1", "0", "2"]
    assert rows["beta"][1:3] == ["failed", "Fail"]
    assert rows["beta"][-4:] == ["2", "1", "1", "1"]
    assert "Exercise every task outcome" in _text(render_table(state))


def test_live_display_says_a_stop_is_coming() -> None:
    state = reduce(RunState.start(["a"]), {"event": STOP_REQUESTED})
    assert STOPPING_MESSAGE in _text(render_progress(state))
    assert STOPPING_MESSAGE not in _text(render_progress(RunState.start(["a"])))


def test_live_view_prints_failures_above_the_table() -> None:
    err = io.StringIO()
    console = Console(file=err, force_terminal=True, width=100, color_system=None)
    play(LiveProgress(console, verbosity=0))
    text = err.getvalue()
    assert "beta   failed       Fail on beta only: beta is broken on purpose" in text
    assert "alpha  ok           Say hello" not in text  # only failures at verbosity 0
    final_table = text.rsplit("Exercise every task outcome", 1)[1]
    assert "changed" in final_table and "failed" in final_table


@pytest.mark.parametrize(
    ("output", "verbosity", "tty", "kind"),
    [
        ("json", 0, True, JsonProgress),
        ("text", 0, True, LiveProgress),
        ("text", 1, True, LiveProgress),
        ("text", 0, False, PlainProgress),
        ("text", -1, True, PlainProgress),  # --quiet: no live table
    ],
)
def test_progress_view_picks_the_view(output, verbosity, tty, kind) -> None:
    view = progress_view(output, verbosity, stdout=io.StringIO(), stderr=io.StringIO(), tty=tty)
    assert type(view) is kind


def test_text_progress_goes_to_stderr_and_json_to_stdout() -> None:
    out, err = io.StringIO(), io.StringIO()
    play(progress_view("text", 0, stdout=out, stderr=err))  # StringIO is not a TTY
    assert out.getvalue() == "" and "RECAP" in err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    play(progress_view("json", 0, stdout=out, stderr=err))
    assert err.getvalue() == "" and out.getvalue().count("\n") > 10


def test_the_ui_and_the_reducer_never_import_ansible_runner() -> None:
    code = (
        "import sys, stagecraft.ui.progress, stagecraft.ansible.events, stagecraft.ansible.request;"
        "sys.exit('ansible_runner' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
