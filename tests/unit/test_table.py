"""The tables the CLI prints (stagecraft/ui/table.py)."""

from __future__ import annotations

import io

import pytest
from rich.text import Text

from stagecraft.ui.table import print_table, table_lines

IMAGE = "registry.example.com:5000/shop/web@sha256:" + "0123456789abcdef" * 4


def test_columns_line_up_two_spaces_apart_under_the_header() -> None:
    lines = table_lines(["host", "state"], [["node-1", "running"], ["n2", "stopped"]])
    assert lines == ["host    state",
                     "node-1  running",
                     "n2      stopped"]


def test_long_cells_stay_whole_on_one_line() -> None:
    lines = table_lines(["service", "image", "note"], [["web", IMAGE, "pushed"]])
    assert len(lines) == 2
    assert lines[1] == f"web      {IMAGE}  pushed"
    assert len(lines[1]) > 80


def test_no_trailing_spaces_and_empty_cells_keep_their_column() -> None:
    lines = table_lines(["a", "b", "c"], [["x", "", "z"], ["long", "y", ""]], header=False)
    assert lines == ["x        z",
                     "long  y"]


def test_no_rows_prints_the_header_only_or_nothing_without_it() -> None:
    assert table_lines(["host", "state"], []) == ["host  state"]
    assert table_lines(["host", "state"], [], header=False) == []


def test_cells_are_text_not_markup() -> None:
    lines = table_lines(["what"], [["[bold]web[/] :smile: [web rolled]"], [3]], header=False)
    assert lines == ["[bold]web[/] :smile: [web rolled]", "3"]


def test_styles_show_only_in_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    rows = [[Text("ok", style="green"), "fine"]]
    assert table_lines(["status", "detail"], rows) == ["status  detail", "ok      fine"]
    coloured = "\n".join(table_lines(["status", "detail"], rows, color=True))
    assert "\x1b[32mok" in coloured


@pytest.mark.parametrize("tty", [False, True])
def test_print_table_colours_only_a_terminal(tty: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    class Stdout(io.StringIO):
        def isatty(self) -> bool:
            return tty

    out = Stdout()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")  # the decision is stdout's, not the variable's
    print_table(["status"], [[Text("ok", style="green")]])
    assert ("\x1b[" in out.getvalue()) is tty
    if not tty:
        assert out.getvalue() == "status\nok\n"
