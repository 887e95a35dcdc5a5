"""Long steps: one line at the start and one at the end without a terminal; a live
line with the elapsed time on one."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from stagecraft import steps
from stagecraft.ui.steps import LiveSteps


def test_without_a_terminal_a_step_is_a_start_line_and_an_end_line() -> None:
    lines: list[str] = []
    with steps.step(lines.append, "building the host image") as current:
        current.note("I: Retrieving libc6")  # no view: notes go nowhere
    assert lines[0] == "building the host image ..."
    assert lines[1].startswith("building the host image: done in ")
    assert len(lines) == 2


def test_a_failing_step_says_so_and_the_error_goes_on() -> None:
    lines: list[str] = []
    with pytest.raises(RuntimeError), steps.step(lines.append, "debootstrap"):
        raise RuntimeError("mirror unreachable")
    assert lines[-1].startswith("debootstrap: failed after ")


class RecordingView:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def begin(self, title: str) -> None:
        self.calls.append(("begin", title))

    def note(self, text: str) -> None:
        self.calls.append(("note", text))

    def end(self, title: str, seconds: float, ok: bool) -> None:
        self.calls.append(("end", title, ok))

    def print(self, message: str) -> None:
        self.calls.append(("print", message))


def test_with_a_view_the_view_gets_the_steps_and_the_log_nothing() -> None:
    view, lines = RecordingView(), []
    with steps.use_view(view):
        with steps.step(lines.append, "outer"):
            with steps.step(lines.append, "inner"):
                steps.note("  Step 3/9 : RUN apt-get install  ")
                steps.echo("a message", lines.append)
    assert lines == []
    assert view.calls == [("begin", "outer"), ("begin", "inner"),
                          ("note", "Step 3/9 : RUN apt-get install"), ("print", "a message"),
                          ("end", "inner", True), ("end", "outer", True)]
    assert not steps.live()


def test_the_live_view_draws_the_step_its_time_and_its_latest_output() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=150, color_system=None)
    view = LiveSteps(console)
    view.begin("building the host image")
    view.begin("debootstrap")
    view.note("I: Retrieving libc6 2.41-12")
    frame = io.StringIO()
    Console(file=frame, width=150, color_system=None).print(view)
    assert "building the host image > debootstrap" in frame.getvalue()
    assert "I: Retrieving libc6" in frame.getvalue()
    assert " s " in frame.getvalue() + " "  # the elapsed seconds
    view.end("debootstrap", 71.2, True)
    view.end("building the host image", 95.0, True)
    view.close()
    text = out.getvalue()
    assert "debootstrap: done in 71 s" in text
    assert "building the host image: done in 95 s" in text


@pytest.mark.parametrize(("seconds", "text"), [(4.24, "4.2 s"), (71.4, "71 s"),
                                               (185, "3 min 05 s")])
def test_format_seconds(seconds: float, text: str) -> None:
    assert steps.format_seconds(seconds) == text
