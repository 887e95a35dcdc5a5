"""The event reducer, over job events recorded from real ansible-runner runs.

Fixtures: tests/fixtures/job_events/{mixed,unreachable}.json, made by
tests/fixtures/job_events/record.py from tests/fixtures/playbooks/events_*.yml.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stagecraft.ansible.events import (
    STOP_REQUESTED,
    Failure,
    RunState,
    failure_message,
    fold,
    reduce,
    summary,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "job_events"


def load(name: str) -> list[dict]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


MIXED = load("mixed")
UNREACHABLE = load("unreachable")
RESULT_EVENTS = {"runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"}


def counts(state: RunState) -> dict[str, tuple[int, ...]]:
    return {
        h.name: (h.ok, h.changed, h.failed, h.skipped, h.unreachable, h.ignored)
        for h in state.hosts
    }


def stats_counts(events: list[dict]) -> dict[str, tuple[int, ...]]:
    """The per-host counts Ansible itself reported in playbook_on_stats."""
    data = next(e for e in events if e["event"] == "playbook_on_stats")["event_data"]
    hosts = data["processed"]
    keys = ("ok", "changed", "failures", "skipped", "dark", "ignored")
    return {h: tuple(data[k].get(h, 0) for k in keys) for h in hosts}


def test_final_counts_match_ansibles_own_recap() -> None:
    state = fold(MIXED, RunState.start(["alpha", "beta"]))
    assert state.finished
    assert counts(state) == stats_counts(MIXED)
    assert state.host("alpha").rescued == 1


def test_counts_before_the_recap_already_match_except_the_rescued_failure() -> None:
    # The reducer counts on its own while the run is live; only a rescued
    # failure cannot be known to be rescued until the recap.
    state = fold(MIXED[:-1])
    assert not state.finished
    live = counts(state)
    final = stats_counts(MIXED)
    assert live["beta"] == final["beta"]
    alpha_live, alpha_final = live["alpha"], final["alpha"]
    assert alpha_live[2] == 1 and alpha_final[2] == 0
    assert alpha_live[:2] + alpha_live[3:] == alpha_final[:2] + alpha_final[3:]
    assert {f.task for f in state.failures} == {"Fail on beta only", "Fail inside a block"}


def test_failure_summary_names_host_task_and_message() -> None:
    state = fold(MIXED)
    assert state.failures == (
        Failure(host="beta", task="Fail on beta only", message="beta is broken on purpose"),
    )
    assert summary(state) == "beta: Fail on beta only failed: beta is broken on purpose"
    assert state.host("beta").status == "failed"
    assert state.host("alpha").status == "changed"
    assert not state.ok


def test_ignored_failure_is_counted_but_not_a_failure() -> None:
    event = next(
        e for e in MIXED
        if e["event"] == "runner_on_failed" and e["event_data"]["task"] == "Fail but ignore it"
    )
    state = reduce(RunState(), event)
    alpha = state.host("alpha")
    assert (alpha.ok, alpha.ignored, alpha.failed, alpha.failure) == (1, 1, 0, None)
    assert state.failures == ()
    assert state.last.status == "ignored"
    assert state.last.message == "non-zero return code"


def test_unreachable_host() -> None:
    state = fold(UNREACHABLE)
    delta, gamma = state.host("delta"), state.host("gamma")
    assert delta.status == "unreachable" and delta.unreachable == 1
    assert gamma.status == "ok" and gamma.ok == 2
    (failure,) = state.failures
    assert (failure.host, failure.task, failure.unreachable) == ("delta", "Ping the host", True)
    assert "Connection refused" in failure.message
    assert summary(state).startswith("delta: Ping the host unreachable: ")


def test_current_task_per_host_follows_starts_and_results() -> None:
    events = iter(MIXED)
    state = RunState.start(["alpha", "beta"])
    assert [h.status for h in state.hosts] == ["pending", "pending"]
    for event in events:
        state = reduce(state, event)
        if event["event"] == "runner_on_start" and event["event_data"]["host"] == "beta":
            break
    assert state.task == "Say hello"
    assert state.host("beta").running and state.host("beta").task == "Say hello"
    assert state.host("beta").status == "running"
    state = reduce(state, next(events))  # alpha's result
    assert state.host("alpha").status == "ok" and not state.host("alpha").running
    assert state.last.kind == "result" and state.last.host == "alpha"


def test_updates_describe_plays_tasks_and_results() -> None:
    kinds = []
    state = RunState()
    for event in MIXED:
        state = reduce(state, event)
        if state.last is not None:
            kinds.append(state.last.kind)
    assert kinds[0] == "play" and kinds[-1] == "stats"
    assert kinds.count("task") == 8
    assert kinds.count("start") == sum(e["event"] == "runner_on_start" for e in MIXED)
    assert kinds.count("result") == sum(e["event"] in RESULT_EVENTS for e in MIXED)


def test_reduce_does_not_mutate_and_state_is_frozen() -> None:
    before = fold(MIXED[:10])
    copy = dataclasses.replace(before)
    after = reduce(before, MIXED[10])
    assert before == copy and after != before
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.task = "x"  # type: ignore[misc]


def test_stop_request_and_run_level_errors() -> None:
    state = reduce(RunState(), {"event": STOP_REQUESTED})
    assert state.stop_requested and state.last.kind == "stopping"
    error = {"event": "verbose", "stdout": "[ERROR]: the role 'nope' was not found in /x"}
    state = reduce(state, error)
    state = reduce(state, error)  # printed twice, reported once
    assert state.errors == ("the role 'nope' was not found in /x",)
    assert summary(state) == "ansible: the role 'nope' was not found in /x"
    assert reduce(state, {"event": "verbose", "stdout": "ok: [x]"}).last is None


@pytest.mark.parametrize(
    ("res", "expected"),
    [
        ({"msg": "boom"}, "boom"),
        ({"rc": 3, "stdout": "", "stderr": "no such file"}, "no such file"),
        ({"rc": 3, "stdout": "partial"}, "exited with rc 3: partial"),
        ({"msg": "non-zero return code", "stderr": "denied"}, "non-zero return code: denied"),
        (
            {
                "msg": "One or more items failed",
                "results": [{"item": "a", "failed": False}, {"item": "b", "failed": True, "msg": "bad b"}],
            },
            "One or more items failed: item b: bad b",
        ),
        (
            {
                "msg": "One or more items failed",
                "results": [{"item": {"name": "d-1", "size": "s"}, "_ansible_item_label": "d-1",
                             "failed": True, "msg": "Wait for Droplet [active,off] status timeout"}],
            },
            "One or more items failed: item d-1: Wait for Droplet [active,off] status timeout",
        ),
        (
            {"msg": "One or more items failed",
             "results": [{"item": {"name": "d-1"}, "failed": True, "msg": "no label"}]},
            "One or more items failed: no label",
        ),
        ({}, "failed (no message)"),
        ("not a dict", "not a dict"),
    ],
)
def test_failure_message(res: object, expected: str) -> None:
    assert failure_message(res) == expected


def test_failure_message_is_bounded() -> None:
    assert len(failure_message({"msg": "x" * 10_000})) == 2000


# --- properties --------------------------------------------------------------

def _per_host_streams(events: list[dict]) -> dict[str, list[dict]]:
    streams: dict[str, list[dict]] = {}
    for event in events:
        if event["event"] in RESULT_EVENTS | {"runner_on_start"}:
            streams.setdefault(event["event_data"]["host"], []).append(event)
    return streams


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_counts_do_not_depend_on_how_hosts_interleave(data: st.DataObject) -> None:
    # Forks finish in any order: only each host's own order is guaranteed.
    streams = {h: list(evs) for h, evs in _per_host_streams(MIXED).items()}
    expected = fold(e for evs in streams.values() for e in evs)
    merged: list[dict] = []
    while any(streams.values()):
        host = data.draw(st.sampled_from(sorted(h for h, evs in streams.items() if evs)))
        merged.append(streams[host].pop(0))
    state = fold(merged)
    assert counts(state) == counts(expected)
    assert set(state.failures) == set(expected.failures)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
_event_names = st.sampled_from(sorted(RESULT_EVENTS) + [
    "runner_on_start", "playbook_on_task_start", "playbook_on_play_start",
    "playbook_on_stats", "verbose", "error", STOP_REQUESTED, "something_new",
])


@settings(max_examples=100, deadline=None)
@given(
    events=st.lists(
        st.fixed_dictionaries(
            {"event": _event_names | _json},
            optional={"event_data": _json | st.dictionaries(
                st.sampled_from(["host", "task", "res", "ignore_errors", "ok", "failures", "dark", "name"]),
                _json,
            ), "stdout": _json},
        ),
        max_size=15,
    )
)
def test_reducer_never_raises_on_odd_events(events: list[dict]) -> None:
    # A new Ansible release or a malformed event must not crash a deploy's display.
    state = fold(events)
    assert state.events == len(events)
    summary(state)
