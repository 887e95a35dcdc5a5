"""What a deploy run did, per phase and host, folded from ansible-runner events.

Plays of stagecraft.platform.deploy and rollback.yml are named ``phase <name>: ...``;
this module turns the stream of job events into ``{phase: {host: HostOutcome}}``
and keeps what the rollout returned for each host (per-service actions), which is
what the ledger records. One ``stagecraft.platform.release`` call does several
phases on a host (upload, pull, rollout): its result's ``steps`` are split into
those phases, whatever play it ran in. Pure: events in, data out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stagecraft.ansible.events import failure_message

_PHASE = re.compile(r"^phase ([a-z][a-z-]*)\b")
ROLLOUT_MODULES = {"stagecraft.platform.compose_rollout", "stagecraft.platform.release"}
_RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


@dataclass
class HostOutcome:
    """One host in one phase."""

    status: str = "ok"  # ok | failed | unreachable | skipped (every task skipped)
    seconds: float = 0.0
    changed: bool = False
    tasks: int = 0
    detail: str = ""
    services: dict[str, Any] = field(default_factory=dict)  # compose_rollout's per-service result
    current: str | None = None  # the release `current` points at after compose_rollout
    diagnostics: str = ""  # a failed rollout's health probe output and log lines

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status, "seconds": round(self.seconds, 2),
                                "changed": self.changed}
        if self.detail:
            data["detail"] = self.detail
        if self.services:
            data["services"] = self.services
        return data


def phase_of(play_name: str | None) -> str | None:
    """``phase rollout: roll the services`` -> ``rollout``; other plays -> None."""
    match = _PHASE.match(play_name or "")
    return match.group(1) if match else None


def fold_outcomes(events: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, HostOutcome]]:
    """``{phase: {host: HostOutcome}}`` for every phase play that reached a host."""
    phases: dict[str, dict[str, HostOutcome]] = {}
    for event in events:
        kind = _RESULT_EVENTS.get(str(event.get("event")))
        if kind is None:
            continue
        data = event.get("event_data") or {}
        phase = phase_of(data.get("play"))
        host = data.get("host")
        if phase is None or not host:
            continue
        res = data.get("res") if isinstance(data.get("res"), Mapping) else {}
        steps = res.get("steps")
        if isinstance(steps, Mapping) and steps:
            _fold_steps(phases, str(host), kind, data, res, steps)
            continue
        outcome = phases.setdefault(phase, {}).setdefault(host, HostOutcome(status="skipped"))
        _count(outcome, kind, data, res, float(data.get("duration") or 0.0))
    return phases


def _fold_steps(phases: dict[str, dict[str, HostOutcome]], host: str, kind: str,
                data: Mapping[str, Any], res: Mapping[str, Any],
                steps: Mapping[str, Any]) -> None:
    """One release call: each step it ran counts as a task of its own phase; a failure
    belongs to the step that failed."""
    failed_step = res.get("step") if kind in ("failed", "unreachable") else None
    for step, step_result in steps.items():
        step_result = step_result if isinstance(step_result, Mapping) else {}
        outcome = phases.setdefault(str(step), {}).setdefault(host, HostOutcome(status="skipped"))
        step_kind = kind if step == failed_step else "ok"
        merged = dict(step_result)
        if step == failed_step:
            merged.update({k: v for k, v in res.items() if k != "steps"})
        _count(outcome, step_kind, data, merged, float(step_result.get("seconds") or 0.0))


def _count(outcome: HostOutcome, kind: str, data: Mapping[str, Any], res: Mapping[str, Any],
           seconds: float) -> None:
    outcome.tasks += 1
    outcome.seconds += seconds
    if kind in ("failed", "unreachable") and not data.get("ignore_errors"):
        outcome.status = kind
        outcome.detail = f"{data.get('task')}: {failure_message(res)}"
        outcome.diagnostics = diagnostics(res)
    elif kind == "ok" and outcome.status == "skipped":
        outcome.status = "ok"
    if res.get("changed"):
        outcome.changed = True
    action = data.get("resolved_action") or data.get("task_action")
    if action in ROLLOUT_MODULES and isinstance(res.get("services"), Mapping):
        outcome.services = dict(res["services"])
        if res.get("current"):
            outcome.current = str(res["current"])


def switched_hosts(phases: Mapping[str, Mapping[str, HostOutcome]], release_id: str) -> set[str]:
    """Hosts whose rollout finished with ``current`` at ``release_id``."""
    rollout = phases.get("rollout", {})
    return {host for host, outcome in rollout.items()
            if outcome.status == "ok" and outcome.current == release_id}


def diagnostics(res: Mapping[str, Any], lines: int = 5) -> str:
    """The last health probe outputs and log lines of each failed container."""
    parts: list[str] = []
    health = res.get("health") if isinstance(res.get("health"), Mapping) else {}
    logs = res.get("logs") if isinstance(res.get("logs"), Mapping) else {}
    for container in sorted(set(health) | set(logs)):
        probes = health.get(container) or []
        if isinstance(probes, list) and probes:
            parts.append(f"  {container} health: {str(probes[-1]).strip()[:300]}")
        text = logs.get(container)
        if isinstance(text, str) and text.strip():
            tail = text.strip().splitlines()[-lines:]
            parts.append(f"  {container} logs:\n" + "\n".join(f"    {line}" for line in tail))
    return "\n".join(parts)
