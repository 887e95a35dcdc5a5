"""Tables for people: columns lined up by rich, one line per row.

Cells are never wrapped or cut, whatever the terminal's width: an image reference
or a rule stays whole on its line, so the text can be read, grepped and pasted.
Colour only when stdout is a terminal; a pipe or a file gets plain text.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

# Wider than any row we print: rich lays the table out within this width, so a
# narrower one (a pipe's default 80 columns) would wrap or cut long cells.
_UNLIMITED_WIDTH = 1_000_000


def table_lines(columns: Sequence[str], rows: Iterable[Sequence[object]], *,
                header: bool = True, color: bool = False) -> list[str]:
    """The table as lines of text: the header (unless ``header`` is false), then one
    line per row, columns two spaces apart, no trailing spaces. A cell is shown as
    ``str(cell)``, never as rich markup; a ``rich.text.Text`` cell keeps its style,
    which shows only with ``color``."""
    table = Table(box=None, show_header=header, show_edge=False, pad_edge=False,
                  header_style="bold")
    for name in columns:
        table.add_column(name, no_wrap=True, overflow="ignore")
    for row in rows:
        table.add_row(*(cell if isinstance(cell, Text) else Text(str(cell)) for cell in row))
    out = io.StringIO()
    # no_color=None leaves a terminal's colour to the NO_COLOR variable.
    console = Console(file=out, width=_UNLIMITED_WIDTH, force_terminal=color,
                      no_color=None if color else True, markup=False, highlight=False,
                      emoji=False)
    console.print(table)
    return [line.rstrip() for line in out.getvalue().splitlines()]


def print_table(columns: Sequence[str], rows: Iterable[Sequence[object]], *,
                header: bool = True) -> None:
    """Print the table on stdout, in colour when stdout is a terminal."""
    lines = table_lines(columns, rows, header=header, color=sys.stdout.isatty())
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()
