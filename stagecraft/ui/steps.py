"""The live view of long steps on a terminal (see stagecraft/steps.py).

One line at the bottom of stderr, redrawn four times a second: a spinner, the
running step (inner steps after outer ones), its elapsed seconds and the latest
line of its output. Other messages print above it. When a step ends, a line with
its duration stays.
"""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from stagecraft.steps import format_seconds


class LiveSteps:
    """A :class:`stagecraft.steps.StepView` drawn with rich on ``console``."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._lock = threading.Lock()
        self._running: list[tuple[str, float]] = []
        self._note = ""
        self._live: Live | None = None
        self._spinner = Spinner("dots")

    def __rich__(self) -> Table:
        with self._lock:
            running = list(self._running)
            note = self._note
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True, justify="right")
        grid.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
        if running:
            # The time first: a narrow terminal cuts the end of a long title, never it.
            title, started = running[-1]
            outer = " > ".join(t for t, _ in running[:-1])
            line = Text(no_wrap=True, overflow="ellipsis")
            if outer:
                line.append(f"{outer} > ", style="dim")
            line.append(title, style="bold")
            elapsed = Text(format_seconds(time.monotonic() - started), style="cyan")
            grid.add_row(self._spinner, elapsed, line)
            if note:
                grid.add_row("", "", Text(note, style="dim", no_wrap=True, overflow="ellipsis"))
        return grid

    def begin(self, title: str) -> None:
        with self._lock:
            self._running.append((title, time.monotonic()))
            self._note = ""
        if self._live is None:
            self._live = Live(self, console=self.console, transient=True,
                              refresh_per_second=4, redirect_stdout=False,
                              redirect_stderr=False)
            self._live.start()

    def note(self, text: str) -> None:
        with self._lock:
            self._note = text

    def end(self, title: str, seconds: float, ok: bool) -> None:
        with self._lock:
            for index in range(len(self._running) - 1, -1, -1):
                if self._running[index][0] == title:
                    del self._running[index]
                    break
            self._note = ""
            empty = not self._running
        mark = "[green]done[/]" if ok else "[red]failed[/]"
        self.console.print(f"{title}: {mark} in {format_seconds(seconds)}", highlight=False,
                           soft_wrap=True)
        if empty and self._live is not None:
            self._live.stop()
            self._live = None

    def print(self, message: str) -> None:
        self.console.print(message, highlight=False, markup=False, soft_wrap=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
