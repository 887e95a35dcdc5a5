"""Dev processes under supervision: merged, prefixed output; restarts with backoff;
one stop for all.

Each process runs in its own process group (its own session), so stopping it stops
what it started too (a shell's children, Vite's esbuild, a reloader's server):
SIGTERM to the group, then SIGKILL to whatever is left after the grace period.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
# A process that ran this long before it exited starts again at the first delay.
STABLE_SECONDS = 30.0
STOP_GRACE = 5.0
COLOURS = ("36", "35", "33", "32", "34", "31")  # cyan, magenta, yellow, green, blue, red


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    cwd: Path
    env: Mapping[str, str] = field(repr=False)  # the whole environment; may hold secrets


@dataclass
class _Running:
    spec: ProcessSpec
    colour: str
    log: TextIO
    process: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    next_start: float | None = None  # when a crashed process starts again
    delay: float = BACKOFF_FIRST
    reader: threading.Thread | None = None


class Supervisor:
    """Start with :meth:`start`, then :meth:`watch` until ``stop_event`` is set (it
    restarts processes that exit), then :meth:`stop`."""

    def __init__(self, specs: list[ProcessSpec], log_dir: Path, out: TextIO, *,
                 colour: bool = False, clock: Callable[[], float] = time.monotonic,
                 redact: Callable[[str], str] = lambda text: text) -> None:
        self.log_dir = log_dir
        self.out = out
        self.colour = colour
        self.clock = clock
        self.redact = redact
        self._lock = threading.Lock()
        self._width = max((len(s.name) for s in specs), default=0)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.running = {
            spec.name: _Running(spec, COLOURS[i % len(COLOURS)],
                                open(log_dir / f"{spec.name}.log", "a", encoding="utf-8"))
            for i, spec in enumerate(specs)}

    # ---------------------------------------------------------------- public API

    def start(self) -> None:
        for item in self.running.values():
            self._spawn(item)

    def pids(self) -> dict[str, int]:
        return {name: item.process.pid for name, item in self.running.items()
                if item.process is not None and item.process.poll() is None}

    def watch(self, stop_event: threading.Event, poll: float = 0.2) -> None:
        """Restart processes that exit, with backoff, until ``stop_event`` is set."""
        while not stop_event.is_set():
            self.check()
            stop_event.wait(poll)

    def check(self) -> None:
        """One round of supervision: report exits, start what is due."""
        now = self.clock()
        for item in self.running.values():
            process = item.process
            if process is not None and process.poll() is not None:
                ran = now - item.started
                if ran >= STABLE_SECONDS:
                    item.delay = BACKOFF_FIRST
                self._say(item, f"exited with code {process.returncode} after {ran:.1f} s; "
                                f"starting it again in {item.delay:g} s", system=True)
                # What the process started and left behind would hold its port.
                _signal_group(process.pid, signal.SIGKILL)
                self._join_reader(item)
                item.process = None
                item.next_start = now + item.delay
                item.delay = min(item.delay * 2, BACKOFF_MAX)
            elif process is None and item.next_start is not None and now >= item.next_start:
                item.next_start = None
                item.restarts += 1
                self._spawn(item)

    def stop(self, grace: float = STOP_GRACE) -> list[str]:
        """Stop every process group: SIGTERM, then SIGKILL after ``grace`` seconds.
        Returns the names that needed SIGKILL."""
        alive = {name: item for name, item in self.running.items() if item.process is not None}
        for item in self.running.values():
            item.next_start = None
        for item in alive.values():
            _signal_group(item.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for item in alive.values():
            try:
                item.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        killed = []
        for name, item in alive.items():
            # The leader may be gone while others of its group still run.
            if item.process.poll() is None or _group_alive(item.process.pid):
                killed.append(name)
                _signal_group(item.process.pid, signal.SIGKILL)
                try:
                    item.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        for item in self.running.values():
            self._join_reader(item)
            item.log.close()
        return killed

    # ------------------------------------------------------------------ helpers

    def _spawn(self, item: _Running) -> None:
        spec = item.spec
        try:
            item.process = subprocess.Popen(
                spec.argv, cwd=spec.cwd, env=dict(spec.env), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            self._say(item, f"cannot start: {exc}; trying again in {item.delay:g} s", system=True)
            item.process = None
            item.next_start = self.clock() + item.delay
            item.delay = min(item.delay * 2, BACKOFF_MAX)
            return
        item.started = self.clock()
        if item.restarts:
            self._say(item, f"started again (pid {item.process.pid})", system=True)
        item.reader = threading.Thread(target=self._pump, args=(item, item.process),
                                       name=f"dev-{spec.name}", daemon=True)
        item.reader.start()

    def _pump(self, item: _Running, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            self._say(item, raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        process.stdout.close()

    def _join_reader(self, item: _Running) -> None:
        if item.reader is not None:
            item.reader.join(timeout=2)
            item.reader = None

    def _say(self, item: _Running, text: str, *, system: bool = False) -> None:
        text = self.redact(text)
        name = item.spec.name.ljust(self._width)
        marker = "*" if system else "|"
        stamp = time.strftime("%H:%M:%S")
        with self._lock:
            item.log.write(f"{stamp} {marker} {text}\n")
            item.log.flush()
            prefix = f"{name} {marker}"
            if self.colour:
                prefix = f"\x1b[{item.colour}m{prefix}\x1b[0m"
            try:
                self.out.write(f"{prefix} {text}\n")
                self.out.flush()
            except (OSError, ValueError):
                pass  # the terminal went away; the log file still has it


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_groups(pids: list[int], grace: float = STOP_GRACE) -> None:
    """Stop process groups recorded by a session that is gone (`dev down` after a
    crash): SIGTERM, then SIGKILL after ``grace``."""
    live = [pid for pid in pids if _group_alive(pid)]
    for pid in live:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_group_alive(pid) for pid in live):
        time.sleep(0.1)
    for pid in live:
        if _group_alive(pid):
            _signal_group(pid, signal.SIGKILL)
