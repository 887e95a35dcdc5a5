"""Fold ansible-runner job events into per-host state. Pure: no I/O, no clocks.

``reduce(state, event) -> state`` is the only way state changes; the state is
immutable (frozen dataclasses and tuples), so a test can fold recorded events
and compare, and the UI can render any state it is handed.

Events are the dicts ansible-runner writes to ``artifacts/<ident>/job_events/``
(``{"event": "runner_on_ok", "event_data": {"host": ..., "task": ..., "res": ...}}``).
Unknown events and missing fields are ignored, never an exception: a new
Ansible release must not crash a deploy's progress display.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

# The outcome of one task on one host, as the UI names it.
Status = Literal["ok", "changed", "failed", "ignored", "skipped", "unreachable"]

# Events the driver itself adds to the stream (not from ansible-runner).
STOP_REQUESTED = "stagecraft_stop_requested"

_MESSAGE_LIMIT = 2000


@dataclass(frozen=True)
class Failure:
    """A task that failed (or could not reach its host) and was not ignored."""

    host: str
    task: str
    message: str
    unreachable: bool = False

    def describe(self) -> str:
        kind = "unreachable" if self.unreachable else "failed"
        return f"{self.host}: {self.task} {kind}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "task": self.task, "message": self.message,
                "unreachable": self.unreachable}


@dataclass(frozen=True)
class HostProgress:
    """What one host is doing and has done in this run."""

    name: str
    task: str | None = None
    """The task running on the host now, or the last one it ran."""
    running: bool = False
    """True between a task's start and its result on this host."""
    last: Status | None = None
    """The outcome of the host's most recent task."""
    ok: int = 0
    """Tasks that succeeded (including changed and ignored ones, as Ansible counts)."""
    changed: int = 0
    failed: int = 0
    skipped: int = 0
    unreachable: int = 0
    ignored: int = 0
    rescued: int = 0
    failure: Failure | None = None
    """The failure that stopped this host, if one did."""

    def counts(self) -> dict[str, Any]:
        """The host's status and recap counts, as data (JSON output, result.json)."""
        return {"status": self.status, "ok": self.ok, "changed": self.changed,
                "failed": self.failed, "skipped": self.skipped,
                "unreachable": self.unreachable, "ignored": self.ignored,
                "rescued": self.rescued}

    @property
    def status(self) -> str:
        """One word for the host: pending, running, ok, changed, failed, unreachable."""
        if self.unreachable and self.failure is not None:
            return "unreachable"
        if self.failure is not None:
            return "failed"
        if self.running:
            return "running"
        if self.last is None:
            return "pending"
        return "changed" if self.changed else "ok"


@dataclass(frozen=True)
class Update:
    """What the last event did, for views that print lines rather than tables."""

    kind: Literal["play", "task", "start", "result", "stats", "stopping", "error"]
    play: str | None = None
    task: str | None = None
    host: str | None = None
    status: Status | None = None
    message: str | None = None


@dataclass(frozen=True)
class RunState:
    """Everything the events of one run have told us so far."""

    hosts: tuple[HostProgress, ...] = ()
    play: str | None = None
    task: str | None = None
    failures: tuple[Failure, ...] = ()
    errors: tuple[str, ...] = ()
    """Run-level errors Ansible printed (syntax errors, missing roles, ...)."""
    finished: bool = False
    """True once playbook_on_stats arrived: the counts are Ansible's own."""
    stop_requested: bool = False
    events: int = 0
    last: Update | None = None
    """What the most recent event changed; None when it changed nothing visible."""

    @classmethod
    def start(cls, hosts: Iterable[str] = ()) -> RunState:
        """A state that already lists ``hosts`` (as pending), in that order."""
        return cls(hosts=tuple(HostProgress(name=h) for h in dict.fromkeys(hosts)))

    def host(self, name: str) -> HostProgress | None:
        for host in self.hosts:
            if host.name == name:
                return host
        return None

    @property
    def ok(self) -> bool:
        """No host failed or was unreachable, and Ansible reported no error."""
        return not self.failures and not self.errors


def _with_host(state: RunState, name: str, **changes: Any) -> RunState:
    """``state`` with host ``name`` updated (added at the end if new)."""
    hosts = list(state.hosts)
    for index, host in enumerate(hosts):
        if host.name == name:
            hosts[index] = replace(host, **changes)
            return replace(state, hosts=tuple(hosts))
    hosts.append(replace(HostProgress(name=name), **changes))
    return replace(state, hosts=tuple(hosts))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def failure_message(res: Any) -> str:
    """The most useful one-paragraph explanation in a task result."""
    if not isinstance(res, Mapping):
        return _text(res).strip() or "failed (no message)"
    message = _text(res.get("msg")).strip()
    # A loop reports "One or more items failed"; the first failed item says why, named
    # by its loop_control label when the task gives one (its item may be a mapping).
    results = res.get("results")
    if isinstance(results, list):
        for item in results:
            if isinstance(item, Mapping) and item.get("failed"):
                item_message = failure_message(item)
                label = item.get("_ansible_item_label", item.get("item"))
                if label is not None and not isinstance(label, (dict, list)):
                    item_message = f"item {label}: {item_message}"
                message = item_message if not message else f"{message}: {item_message}"
                break
    stderr = _text(res.get("stderr")).strip()
    if stderr and stderr not in message:
        message = f"{message}: {stderr}" if message else stderr
    if not message:
        stdout = _text(res.get("stdout")).strip()
        if "rc" in res:
            message = f"exited with rc {res.get('rc')}" + (f": {stdout}" if stdout else "")
        else:
            message = stdout or "failed (no message)"
    if len(message) > _MESSAGE_LIMIT:
        message = message[: _MESSAGE_LIMIT - 3] + "..."
    return message


def _task_name(data: Mapping[str, Any]) -> str:
    return _text(data.get("task")).strip() or _text(data.get("task_action")) or "(unnamed task)"


def _result(state: RunState, data: Mapping[str, Any], status: Status) -> RunState:
    host = _text(data.get("host") or data.get("remote_addr"))
    if not host:
        return state
    task = _task_name(data)
    current = state.host(host) or HostProgress(name=host)
    raw_res = data.get("res")
    res: Mapping[str, Any] = raw_res if isinstance(raw_res, Mapping) else {}
    changes: dict[str, Any] = {"task": task, "running": False}
    message: str | None = None

    if status in ("ok", "changed"):
        changes["ok"] = current.ok + 1
        if res.get("changed"):
            status = "changed"
            changes["changed"] = current.changed + 1
    elif status == "skipped":
        changes["skipped"] = current.skipped + 1
    elif status == "failed" and data.get("ignore_errors"):
        # Ansible counts an ignored failure as ok + ignored (and changed if so).
        status = "ignored"
        changes["ok"] = current.ok + 1
        changes["ignored"] = current.ignored + 1
        if res.get("changed"):
            changes["changed"] = current.changed + 1
        message = failure_message(res)
    elif status in ("failed", "unreachable"):
        message = failure_message(res)
        failure = Failure(host=host, task=task, message=message, unreachable=status == "unreachable")
        changes["failure"] = failure
        if status == "failed":
            changes["failed"] = current.failed + 1
        else:
            changes["unreachable"] = current.unreachable + 1
        state = replace(state, failures=state.failures + (failure,))
    changes["last"] = status
    state = _with_host(state, host, **changes)
    return replace(
        state,
        last=Update(
            kind="result", play=state.play, task=task, host=host, status=status, message=message
        ),
    )


def _stats(state: RunState, data: Mapping[str, Any]) -> RunState:
    """Adopt Ansible's final counts; drop failures a rescue block recovered from."""

    def counts(key: str) -> Mapping[str, Any]:
        value = data.get(key)
        return value if isinstance(value, Mapping) else {}

    ok, changed, failures, dark = counts("ok"), counts("changed"), counts("failures"), counts("dark")
    skipped, ignored, rescued = counts("skipped"), counts("ignored"), counts("rescued")
    names = list(dict.fromkeys([h.name for h in state.hosts] + [
        str(h) for key in ("processed", "ok", "changed", "failures", "dark", "skipped")
        for h in counts(key)
    ]))

    def number(table: Mapping[str, Any], host: str) -> int:
        value = table.get(host, 0)
        return value if isinstance(value, int) else 0

    for name in names:
        host = state.host(name)
        if host is None and name not in counts("processed"):
            continue
        values: dict[str, Any] = {
            "ok": number(ok, name),
            "changed": number(changed, name),
            "failed": number(failures, name),
            "unreachable": number(dark, name),
            "skipped": number(skipped, name),
            "ignored": number(ignored, name),
            "rescued": number(rescued, name),
            "running": False,
        }
        if values["failed"] == 0 and values["unreachable"] == 0:
            values["failure"] = None  # every failure on this host was rescued
        state = _with_host(state, name, **values)
    kept = tuple(
        f for f in state.failures
        if (host := state.host(f.host)) is not None and host.failure is not None
    )
    return replace(state, failures=kept, finished=True, task=None, last=Update(kind="stats"))


def _error_line(event: Mapping[str, Any]) -> str | None:
    """A run-level error from display text ("ERROR! ..." / "[ERROR]: ...")."""
    text = _text(event.get("stdout")).strip()
    for prefix in ("ERROR!", "[ERROR]:"):
        if text.startswith(prefix):
            return text[len(prefix):].strip() or text
    return None


def reduce(state: RunState, event: Mapping[str, Any]) -> RunState:
    """Fold one job event into ``state``; return the new state."""
    if not isinstance(event, Mapping):
        return state
    name = event.get("event")
    data = event.get("event_data")
    if not isinstance(data, Mapping):
        data = {}
    state = replace(state, events=state.events + 1, last=None)

    if name == "playbook_on_play_start":
        play = _text(data.get("name") or data.get("play") or data.get("pattern"))
        return replace(state, play=play, task=None, last=Update(kind="play", play=play))
    if name in ("playbook_on_task_start", "playbook_on_handler_task_start"):
        task = _task_name(data)
        return replace(state, task=task, last=Update(kind="task", play=state.play, task=task))
    if name == "runner_on_start":
        host = _text(data.get("host"))
        if not host:
            return state
        task = _task_name(data)
        state = _with_host(state, host, task=task, running=True)
        return replace(state, last=Update(kind="start", play=state.play, task=task, host=host))
    if name == "runner_on_ok":
        return _result(state, data, "ok")
    if name == "runner_on_failed":
        return _result(state, data, "failed")
    if name == "runner_on_unreachable":
        return _result(state, data, "unreachable")
    if name == "runner_on_skipped":
        return _result(state, data, "skipped")
    if name == "playbook_on_stats":
        return _stats(state, data)
    if name == STOP_REQUESTED:
        return replace(state, stop_requested=True, last=Update(kind="stopping"))
    if name in ("verbose", "error"):
        message = _error_line(event)
        if message is not None and message not in state.errors:
            return replace(
                state, errors=state.errors + (message,), last=Update(kind="error", message=message)
            )
    return state


def fold(events: Iterable[Mapping[str, Any]], state: RunState | None = None) -> RunState:
    """Reduce a whole sequence of events (e.g. a recorded run)."""
    state = RunState() if state is None else state
    for event in events:
        state = reduce(state, event)
    return state


def summary(state: RunState) -> str:
    """One line per failure naming host, task and message; then run-level errors."""
    lines = [failure.describe() for failure in state.failures]
    lines += [f"ansible: {error}" for error in state.errors]
    return "\n".join(lines)
