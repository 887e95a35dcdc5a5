"""Views of a running Ansible run, rendered from the reducer's RunState.

Three views, one input (``RunState``, whose ``last`` says what just changed):

- a live per-host table (rich) on stderr, when stderr is a terminal;
- plain lines on stderr otherwise, one per task result per host;
- JSON lines on stdout with ``--output json``, one object per event of interest.

The CLI picks one with :func:`progress_view` and hands its ``update`` to the
driver::

    with progress_view(output, verbosity, run_id=bundle.run_id) as view:
        result = runner.run(bundle, on_event=view.update)

Verbosity: -1 (``--quiet``) shows only failures and errors; 0 shows every
result except skips; 1 and more add skips and task starts. JSON output is
not filtered by verbosity. This module never imports ansible_runner.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, Literal, Self, TextIO

from stagecraft.ansible.events import HostProgress, RunState, Update

if TYPE_CHECKING:  # rich loads for the live view only (a terminal)
    from rich.console import Console, Group
    from rich.table import Table

OutputMode = Literal["text", "json"]

STOPPING_MESSAGE = "stopping after the current task (press Ctrl-C again to stop now)"

_STATUS_STYLE = {
    "pending": "dim",
    "running": "cyan",
    "ok": "green",
    "changed": "yellow",
    "ignored": "yellow",
    "skipped": "dim",
    "failed": "bold red",
    "unreachable": "bold red",
}


def _one_line(message: str) -> str:
    """A message on one line: continuation lines joined with ' / '."""
    parts = [part.strip() for part in message.splitlines() if part.strip()]
    return " / ".join(parts)


def _counts(host: HostProgress) -> str:
    return (
        f"ok={host.ok} changed={host.changed} failed={host.failed} skipped={host.skipped} "
        f"unreachable={host.unreachable} ignored={host.ignored} rescued={host.rescued}"
    )


def result_line(update: Update, width: int = 0) -> str:
    """``<host>  <status>  <task>[: message]``, host padded to ``width``."""
    line = f"{(update.host or ''):<{width}}  {(update.status or ''):<11}  {update.task or ''}"
    if update.message:
        line += f": {_one_line(update.message)}"
    return line.rstrip()


def recap_lines(state: RunState) -> list[str]:
    """One line of final counts per host."""
    from stagecraft.ui.table import table_lines

    return table_lines(["host", "counts"], [[host.name, _counts(host)] for host in state.hosts],
                       header=False)


def _host_width(state: RunState) -> int:
    return max((len(h.name) for h in state.hosts), default=0)


def _shows_result(status: str | None, verbosity: int) -> bool:
    if status in ("failed", "unreachable"):
        return True
    if verbosity < 0:
        return False
    return status != "skipped" or verbosity >= 1


class ProgressView:
    """Base of the views: a context manager with ``update(state)``."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, state: RunState) -> None:
        """Show what ``state.last`` changed (called after every such event)."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish the display (stop a live table). Safe to call twice."""


class PlainProgress(ProgressView):
    """Plain lines, for logs and CI: nothing is redrawn, nothing is coloured."""

    def __init__(self, stream: TextIO, verbosity: int = 0) -> None:
        self.stream = stream
        self.verbosity = verbosity

    def _print(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def update(self, state: RunState) -> None:
        update = state.last
        if update is None:
            return
        if update.kind == "play" and self.verbosity >= 0:
            self._print(f"PLAY {update.play}")
        elif update.kind == "task" and self.verbosity >= 1:
            self._print(f"TASK {update.task}")
        elif update.kind == "result" and _shows_result(update.status, self.verbosity):
            self._print(result_line(update, _host_width(state)))
        elif update.kind == "stopping":
            self._print(STOPPING_MESSAGE)
        elif update.kind == "error":
            self._print(f"ansible: {_one_line(update.message or '')}")
        elif update.kind == "stats" and self.verbosity >= 0:
            self._print("RECAP")
            for line in recap_lines(state):
                self._print(line)


def _event_object(state: RunState, update: Update) -> dict[str, Any] | None:
    if update.kind == "play":
        return {"event": "play", "play": update.play}
    if update.kind == "task":
        return {"event": "task", "play": update.play, "task": update.task}
    if update.kind == "result":
        return {
            "event": "result",
            "play": update.play,
            "host": update.host,
            "task": update.task,
            "status": update.status,
            "changed": update.status == "changed",
            "failed": update.status in ("failed", "unreachable"),
            "message": update.message,
        }
    if update.kind == "stopping":
        return {"event": "stopping", "message": STOPPING_MESSAGE}
    if update.kind == "error":
        return {"event": "error", "message": update.message}
    if update.kind == "stats":
        return {
            "event": "recap",
            "hosts": {h.name: h.counts() for h in state.hosts},
            "failures": [f.to_dict() for f in state.failures],
        }
    return None


class JsonProgress(ProgressView):
    """JSON lines on stdout: one object per play, task, result, stop and recap."""

    def __init__(self, stream: TextIO, run_id: str | None = None) -> None:
        self.stream = stream
        self.run_id = run_id

    def update(self, state: RunState) -> None:
        if state.last is None:
            return
        record = _event_object(state, state.last)
        if record is None:
            return
        if self.run_id is not None:
            record = {"run_id": self.run_id, **record}
        self.stream.write(json.dumps(record, sort_keys=False) + "\n")
        self.stream.flush()


def render_table(state: RunState) -> Table:
    """The per-host table: status, current task and counts."""
    from rich.table import Table
    from rich.text import Text

    title = state.play or "starting ansible-playbook"
    table = Table(title=title, title_justify="left", expand=False, box=None, pad_edge=False)
    table.add_column("host", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("task", overflow="ellipsis", no_wrap=True, max_width=60)
    for name in ("ok", "changed", "failed", "skipped"):
        table.add_column(name, justify="right")
    for host in state.hosts:
        status = host.status
        table.add_row(
            host.name,
            Text(status, style=_STATUS_STYLE.get(status, "")),
            host.task or "",
            str(host.ok),
            str(host.changed),
            Text(str(host.failed + host.unreachable), style="bold red" if host.failure else ""),
            str(host.skipped),
        )
    return table


def render_progress(state: RunState) -> Group:
    """The live display: the table, and a line saying a stop is on its way."""
    from rich.console import Group
    from rich.text import Text

    if state.stop_requested and not state.finished:
        return Group(render_table(state), Text(STOPPING_MESSAGE, style="yellow"))
    return Group(render_table(state))


class LiveProgress(ProgressView):
    """A live table on a terminal; failures (and more, when verbose) print above it."""

    def __init__(self, console: Console, verbosity: int = 0) -> None:
        from rich.console import Group
        from rich.live import Live

        self.console = console
        self.verbosity = verbosity
        self._live = Live(
            Group(), console=console, refresh_per_second=8, transient=False, auto_refresh=True
        )
        self._started = False

    def __enter__(self) -> Self:
        self._live.start()
        self._started = True
        return self

    def update(self, state: RunState) -> None:
        from rich.text import Text

        update = state.last
        if update is not None and update.kind == "result" and update.status in (
            "failed",
            "unreachable",
        ):
            self.console.print(Text(result_line(update, _host_width(state)), style="red"))
        elif update is not None and update.kind == "result" and self.verbosity >= 1:
            self.console.print(result_line(update, _host_width(state)), highlight=False)
        elif update is not None and update.kind == "error":
            self.console.print(Text(f"ansible: {_one_line(update.message or '')}", style="red"))
        self._live.update(render_progress(state), refresh=True)

    def close(self) -> None:
        if self._started:
            self._live.stop()
            self._started = False


def progress_view(
    output: OutputMode = "text",
    verbosity: int = 0,
    *,
    run_id: str | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    tty: bool | None = None,
) -> ProgressView:
    """The view for an output mode: JSON lines, a live table, or plain lines.

    ``tty`` overrides the terminal check of stderr (tests, ``--no-tty``).
    """
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    if output == "json":
        return JsonProgress(stdout, run_id=run_id)
    if tty is None:
        tty = bool(getattr(stderr, "isatty", lambda: False)())
    if tty and verbosity >= 0:
        from rich.console import Console

        return LiveProgress(Console(file=stderr, force_terminal=True), verbosity)
    return PlainProgress(stderr, verbosity)

