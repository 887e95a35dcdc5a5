"""Run a prepared bundle with ansible-runner; stream its events; return a RunResult.

This module (with bundle.py) is the only one that imports ansible_runner.

Threads: ansible-runner runs in a worker thread. Its event handler masks
secrets in the event *in place* (ansible-runner writes that same dict to
job_events/ right after) and puts it on a queue; nothing else. The calling
thread drains the queue, folds events with the pure reducer, writes the
redacted stdout file, calls ``on_event(state)`` for the UI and keeps every
event for ``RunResult.events``: consumers read the run's events there, not
from job_events/ on disk.

Stopping: the first Ctrl-C / SIGTERM (or ``cancel.set()``) asks for a stop
after the current task: the driver creates the bundle's stop file, and our
callback plugin (callback_plugins/stagecraft_stop.py) ends ansible-playbook
before the next task is handed to any host. A second Ctrl-C / SIGTERM kills
ansible-playbook and its workers at once (ansible-runner kills the process
group).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_runner import Runner, RunnerConfig
from ansible_runner.exceptions import ConfigurationError
from ansible_runner.utils import get_callback_dir

from stagecraft.ansible.bundle import Bundle
from stagecraft.ansible.events import (
    STOP_REQUESTED,
    Failure,
    HostProgress,
    RunState,
    reduce,
    summary,
)
from stagecraft.errors import EnvironmentMissing, Interrupted, RunFailed, StateError

OnEvent = Callable[[RunState], None]

# Variables ansible-runner sets for its callback plugin and artifacts. They
# pass the allowlist filter; ORIGINAL_STDOUT_CALLBACK does not (it would let
# a user's ANSIBLE_STDOUT_CALLBACK change the event text).
_RUNNER_ENV = (
    "ANSIBLE_STDOUT_CALLBACK",
    "ANSIBLE_CALLBACK_PLUGINS",
    "ANSIBLE_RETRY_FILES_ENABLED",
    "ANSIBLE_HOST_KEY_CHECKING",
    "ANSIBLE_CACHE_PLUGIN",
    "ANSIBLE_CACHE_PLUGIN_CONNECTION",
    "AWX_ISOLATED_DATA_DIR",
    "RUNNER_OMIT_EVENTS",
    "RUNNER_ONLY_FAILED_EVENTS",
)

_DONE = object()  # queue sentinel: the worker thread has finished

GUARD = Path(__file__).with_name("guard.py")


@dataclass(frozen=True)
class RunResult:
    """How a run ended, per host, with the reasons for every failure."""

    run_id: str
    status: str
    """successful, failed, canceled (stopped on request) or timeout."""
    rc: int
    """ansible-playbook's exit code (ansible-runner reports 254 when it killed it)."""
    hosts: tuple[HostProgress, ...]
    failures: tuple[Failure, ...]
    errors: tuple[str, ...]
    """Run-level errors Ansible printed (bad syntax, missing role, ...)."""
    duration: float
    """Seconds from start to the end of the last event."""
    artifacts_dir: Path
    check: bool = False
    state: RunState | None = None
    events: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)
    """Every job event of the run, masked, in counter order (see :func:`in_order`)."""

    @property
    def ok(self) -> bool:
        return self.status == "successful"

    def summary(self) -> str:
        """One line per failure (host, task, message), then run-level errors."""
        return summary(RunState(failures=self.failures, errors=self.errors))

    def to_dict(self) -> dict[str, Any]:
        """The result as data (``--output json``, result.json)."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "rc": self.rc,
            "check": self.check,
            "duration": round(self.duration, 3),
            "artifacts_dir": str(self.artifacts_dir),
            "hosts": {h.name: h.counts() for h in self.hosts},
            "failures": [f.to_dict() for f in self.failures],
            "errors": list(self.errors),
        }

    def raise_for_status(self) -> None:
        """Raise Interrupted (stopped) or RunFailed (failed, timed out); else nothing."""
        if self.status == "successful":
            return
        where = f"events and output are in {self.artifacts_dir}"
        if self.status == "canceled":
            raise Interrupted(f"the Ansible run {self.run_id} was stopped before it finished")
        what = "timed out" if self.status == "timeout" else "failed"
        detail = self.summary() or f"ansible-playbook exited with rc {self.rc}"
        error = RunFailed(f"the Ansible run {self.run_id} {what}:\n{detail}", hint=where)
        error.result = self  # type: ignore[attr-defined]  # for callers that want the data
        raise error


class _Control:
    """Flags shared by the caller thread, the runner thread and signal handlers.

    Signal handlers only bump a counter (taking a lock inside a handler can
    deadlock the thread it interrupted); the caller thread acts on it.
    """

    def __init__(self) -> None:
        self.signals = 0
        self.stop_requested = False
        self.kill_now = False

    def on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1

    def should_cancel(self) -> bool:
        """ansible-runner's cancel_callback: True makes it kill the process group."""
        return self.kill_now


def _counter(event: Mapping[str, Any]) -> int:
    counter = event.get("counter")
    return counter if isinstance(counter, int) else 0


def in_order(events: Iterable[Mapping[str, Any]]) -> tuple[Mapping[str, Any], ...]:
    """``events`` in the order Ansible emitted them: by their ``counter``.

    The one ordering rule for a run's events; the queue delivers them in about
    that order, but nothing promises it.
    """
    return tuple(sorted(events, key=_counter))


def recorded_events(artifacts_dir: Path) -> tuple[Mapping[str, Any], ...]:
    """The job events a finished run left in ``artifacts_dir``, in counter order.

    For tools that read a run after the process that ran it has gone (bench/);
    the process that runs a playbook uses ``RunResult.events``.
    """
    events: list[Mapping[str, Any]] = []
    for path in (Path(artifacts_dir) / "job_events").glob("*.json"):
        try:
            events.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # a file being written, or a killed run's leftover
    return in_order(events)


def _environment(bundle: Bundle, runner_env: Mapping[str, str]) -> dict[str, str]:
    """Ansible's environment: the bundle's (allowlist + ours) plus runner's own."""
    env = bundle.environment()
    for name in _RUNNER_ENV:
        if name in runner_env and name not in env:
            env[name] = runner_env[name]
    # Ours and ansible-runner's callback directories, not one a user's env adds.
    env["ANSIBLE_CALLBACK_PLUGINS"] = os.pathsep.join(
        [bundle.envvars["ANSIBLE_CALLBACK_PLUGINS"], get_callback_dir()]
    )
    return env


def _scrub_artifacts(bundle: Bundle) -> None:
    """Remove what must not outlive the run; mask secrets in runner's command file."""
    bundle.discard_secrets()
    events_dir = bundle.artifacts_dir / "job_events"
    if events_dir.is_dir():
        # A killed run leaves the callback's partial event files: unmasked data.
        for partial in events_dir.glob("*-partial.json"):
            partial.unlink(missing_ok=True)
    command = bundle.artifacts_dir / "command"
    if bundle.redactor and command.is_file():
        text = command.read_text(encoding="utf-8")
        masked = bundle.redactor.text(text)
        if masked != text:
            command.write_text(masked, encoding="utf-8")


def _write_result(result: RunResult) -> None:
    path = result.artifacts_dir / "result.json"
    tmp = path.with_name(".result.json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(result.to_dict(), handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


def run(
    bundle: Bundle,
    on_event: OnEvent | None = None,
    cancel: threading.Event | None = None,
    *,
    handle_signals: bool = True,
) -> RunResult:
    """Run ``bundle``'s playbook and return how it went.

    ``on_event(state)`` is called in the calling thread after every event
    that changed something (``state.last`` says what). ``cancel.set()`` asks
    for a stop after the current task, as Ctrl-C does. With
    ``handle_signals`` (and only in the main thread) SIGINT and SIGTERM are
    handled for the duration of the run. A failed run is *returned*, not
    raised: call :meth:`RunResult.raise_for_status` to turn it into an error.
    """
    if (bundle.artifacts_dir / "status").exists():
        raise StateError(
            f"run {bundle.run_id} has already run: {bundle.artifacts_dir}",
            hint="prepare a new bundle with a new run id",
        )
    if not bundle.lock.held and not bundle.lock.acquire():
        raise StateError(f"run {bundle.run_id} is already in progress in another process")

    try:
        config = RunnerConfig(
            private_data_dir=str(bundle.root),
            playbook=bundle.playbook,
            ident=bundle.run_id,
            # Always machine-readable underneath; the UI is a view of events.
            quiet=True,
            json_mode=True,
        )
        config.prepare()
    except ConfigurationError as exc:
        bundle.discard_secrets()
        bundle.release()
        raise StateError(f"the run bundle {bundle.root} is not usable: {exc}") from None
    config.env = _environment(bundle, config.env)
    # ansible-playbook must end with this process, even when it is SIGKILLed
    # (ansible-runner starts it immune to the pty's hang-up): see guard.py.
    config.command = [sys.executable, "-I", str(GUARD), str(os.getpid()), "--",
                      *config.command]
    if shutil.which("ansible-playbook", path=config.env.get("PATH")) is None:
        bundle.discard_secrets()
        bundle.release()
        raise EnvironmentMissing(
            "ansible-playbook is not installed next to stagecraft or on PATH",
            hint="reinstall stagecraft (it depends on ansible-core)",
        )

    bundle.stop_file.unlink(missing_ok=True)
    control = _Control()
    events: queue.Queue[Any] = queue.Queue()
    received: list[Mapping[str, Any]] = []  # kept for RunResult.events
    redactor = bundle.redactor

    def handle_event(event: dict[str, Any]) -> bool:
        # Runs in the runner thread, before ansible-runner writes the event.
        try:
            redactor.data_in_place(event)
        except Exception:  # noqa: BLE001 - never write what could not be masked
            return False
        events.put(event)
        return True

    runner = Runner(
        config,
        event_handler=handle_event,
        cancel_callback=control.should_cancel,
        remove_partials=True,
    )
    failure: list[BaseException] = []

    def work() -> None:
        try:
            runner.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller thread
            failure.append(exc)
        finally:
            events.put(_DONE)

    previous_handlers: dict[signal.Signals, Any] = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            previous_handlers[stop_signal] = signal.signal(stop_signal, control.on_signal)

    state = RunState.start(bundle.hosts)
    started = time.monotonic()
    worker = threading.Thread(target=work, name=f"stagecraft-run-{bundle.run_id}", daemon=True)
    stdout_path = bundle.artifacts_dir / "stdout"
    view_error: BaseException | None = None

    def request_stop() -> None:
        nonlocal state
        if control.stop_requested:
            return
        control.stop_requested = True
        try:
            bundle.stop_file.touch()
        except OSError:
            control.kill_now = True  # cannot ask politely: stop now
        state = reduce(state, {"event": STOP_REQUESTED})
        notify()

    def notify() -> None:
        nonlocal view_error
        if on_event is None or view_error is not None:
            return
        try:
            on_event(state)
        except BaseException as exc:  # noqa: BLE001 - a broken view stops the run
            view_error = exc
            control.kill_now = True

    try:
        fd = os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as stdout_file:
            worker.start()
            while True:
                if control.signals >= 2:
                    control.kill_now = True
                elif control.signals == 1 or (cancel is not None and cancel.is_set()):
                    request_stop()
                try:
                    event = events.get(timeout=0.2)
                except queue.Empty:
                    continue
                if event is _DONE:
                    break
                received.append(event)
                text = event.get("stdout")
                if text:
                    stdout_file.write(text.replace("\r\n", "\n") + "\n")
                    stdout_file.flush()
                state = reduce(state, event)
                if state.last is not None:
                    notify()
    except BaseException:
        # Whatever broke the loop (a KeyboardInterrupt when signals are not
        # ours to handle), ansible-playbook must not run on unobserved.
        control.kill_now = True
        raise
    finally:
        if worker.ident is not None:
            worker.join()
        for stop_signal, handler in previous_handlers.items():
            signal.signal(stop_signal, handler)
        try:
            _scrub_artifacts(bundle)
        finally:
            bundle.release()

    if failure:
        raise failure[0]
    if view_error is not None:
        raise view_error

    status = runner.status
    if control.stop_requested and status != "successful":
        status = "canceled"
    result = RunResult(
        run_id=bundle.run_id,
        status=status,
        rc=runner.rc if isinstance(runner.rc, int) else -1,
        hosts=state.hosts,
        failures=state.failures,
        errors=state.errors,
        duration=time.monotonic() - started,
        artifacts_dir=bundle.artifacts_dir,
        check=bundle.check,
        state=state,
        events=in_order(received),
    )
    _write_result(result)
    return result
