"""`stagecraft audit`: reading and merging the hosts' audit lines."""

from __future__ import annotations

import json

from stagecraft.ops.audit import audit_lines, merge_audit, parse_audit, tail_command


def record(time: str, host: str, release: str = "R1", **extra) -> str:
    return json.dumps({"time": time, "release": release, "previous": None, "action": "deploy",
                       "performer": "me@box", "host": host, "result": "ok",
                       "services": {"web": "rolled"}, **extra})


def test_merge_keeps_the_newest_n_oldest_first() -> None:
    h1 = parse_audit("h1", "\n".join([record("2026-01-01T00:00:01Z", "h1"),
                                      record("2026-01-01T00:00:05Z", "h1", "R2")]))
    h2 = parse_audit("h2", "\n".join([record("2026-01-01T00:00:03Z", "h2"),
                                      record("2026-01-01T00:00:07Z", "h2", "R2"), ""]))
    merged = merge_audit([h1, h2], 3)
    assert [(r["time"][-3:], r["audit_host"]) for r in merged] == [
        ("03Z", "h2"), ("05Z", "h1"), ("07Z", "h2")]
    assert len(merge_audit([h1, h2], 20)) == 4


def test_unparsable_lines_are_kept_as_text() -> None:
    records = parse_audit("h1", "not json\n" + record("2026-01-01T00:00:01Z", "h1"))
    assert records[0]["unparsed"] == "not json"
    text = audit_lines(merge_audit([records], 10))
    assert "not json" in text[0]
    assert "deploy" in text[1] and "R1" in text[1] and "web rolled" in text[1]


def test_text_shows_errors_and_empty_logs() -> None:
    failed = parse_audit("h2", record("2026-01-01T00:00:01Z", "h2", result="failed",
                                      error="web never became healthy"))
    line = audit_lines(failed)[0]
    assert "h2" in line and "failed" in line and "web never became healthy" in line
    assert audit_lines([]) == ["no audit records yet"]


def test_tail_command_reads_only_the_end_and_tolerates_no_log() -> None:
    command = tail_command("shop", "local", 20)
    assert "tail -n 20 /opt/stagecraft/shop/local/audit.log" in command
    assert command.endswith("|| true")
