"""A run's events: one ordering rule (the counter), read from the result, not from disk."""

from __future__ import annotations

import json
from pathlib import Path

from stagecraft.ansible.runner import in_order, recorded_events
from stagecraft.deploy.migrate import _migration_result


def event(counter: int, **fields) -> dict:
    return {"counter": counter, "uuid": f"u{counter}", "event": "verbose", **fields}


def test_events_are_put_in_counter_order() -> None:
    shuffled = [event(3), event(1), event(10), event(2)]
    assert [e["counter"] for e in in_order(shuffled)] == [1, 2, 3, 10]


def test_recorded_events_read_a_finished_run_in_counter_order(tmp_path: Path) -> None:
    events_dir = tmp_path / "job_events"
    events_dir.mkdir()
    for counter in (2, 10, 1):  # "10-..." sorts before "2-..." by name
        (events_dir / f"{counter}-u{counter}.json").write_text(json.dumps(event(counter)))
    (events_dir / "11-u11.json").write_text("{half written")
    assert [e["counter"] for e in recorded_events(tmp_path)] == [1, 2, 10]
    assert recorded_events(tmp_path / "missing") == ()


def test_the_migration_outcome_is_the_last_migrations_result_fact() -> None:
    def fact(counter: int, rc: int) -> dict:
        return event(counter, event="runner_on_ok", event_data={
            "res": {"ansible_facts": {"migrations_result": {"rc": rc}}}})

    assert _migration_result([event(1), fact(2, 1), event(3), fact(4, 0)]) == {"rc": 0}
    assert _migration_result([event(1), event(2, event_data={"res": "text"})]) is None
