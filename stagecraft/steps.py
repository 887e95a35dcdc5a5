"""Long steps (image builds, debootstrap, hosts booting): what runs now, for how long.

Core code wraps work that may take more than a few seconds in :func:`step`::

    with steps.step(log, "building the host image") as current:
        run_logged(argv, logfile, on_line=current.note, ...)

Without a terminal, ``log`` gets one line when the step starts and one when it
ends, with its duration. On a terminal the CLI installs a live view
(:func:`use_view`; stagecraft/ui/steps.py draws it): one line that shows the step,
its elapsed seconds and the step's latest output, replaced by a line with the
duration when the step ends. This module never imports the UI.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Protocol

Log = Callable[[str], None]


class StepView(Protocol):
    """A live display of the running steps (innermost last)."""

    def begin(self, title: str) -> None: ...

    def note(self, text: str) -> None: ...

    def end(self, title: str, seconds: float, ok: bool) -> None: ...

    def print(self, message: str) -> None: ...


_view: StepView | None = None


@contextlib.contextmanager
def use_view(view: StepView | None) -> Iterator[None]:
    """Show steps in ``view`` while the block runs (the CLI does this on a terminal)."""
    global _view
    previous, _view = _view, view
    try:
        yield
    finally:
        _view = previous


def live() -> bool:
    """Whether a live view draws the steps (then :func:`echo` must carry other lines)."""
    return _view is not None


def echo(message: str, fallback: Log) -> None:
    """Print a line above the live view when there is one, else through ``fallback``."""
    if _view is not None:
        _view.print(message)
    else:
        fallback(message)


def note(text: str) -> None:
    """Show ``text`` (a line of the running step's output) on the live view, if any."""
    if _view is not None and text.strip():
        _view.note(text.strip())


class Step:
    """The running step: ``note`` shows its latest output line on the live view."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def note(self, text: str) -> None:
        note(text)


@contextlib.contextmanager
def step(log: Log, title: str) -> Iterator[Step]:
    """Run a long step under ``title`` (a phrase: "building the host image")."""
    current = Step(title)
    view = _view
    if view is not None:
        view.begin(title)
    else:
        log(f"{title} ...")
    ok = False
    try:
        yield current
        ok = True
    finally:
        seconds = current.elapsed()
        if view is not None:
            view.end(title, seconds, ok)
        elif ok:
            log(f"{title}: done in {format_seconds(seconds)}")
        else:
            log(f"{title}: failed after {format_seconds(seconds)}")


def format_seconds(seconds: float) -> str:
    """``4.2 s`` under ten seconds, ``71 s`` under two minutes, else ``3 min 05 s``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"
