"""`stagecraft version`: versions of stagecraft and the tools it drives."""

from __future__ import annotations

import platform
from importlib import metadata

import click

from stagecraft import __version__
from stagecraft.cli.context import AppContext, command

_TOOLS = ("ansible-core", "ansible", "ansible-runner", "pydantic", "click")


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@command("version", short_help="Show versions of stagecraft and its tools.")
def command(app: AppContext) -> None:
    """Show the version of stagecraft, Python, and the Ansible parts it drives."""
    data = {"stagecraft": __version__, "python": platform.python_version(),
            **{tool: _installed(tool) for tool in _TOOLS}}

    def text(d: dict) -> None:
        from stagecraft.ui.table import table_lines

        click.echo(f"stagecraft {d['stagecraft']}")
        rows = [[key, d[key] or "not installed"] for key in ("python", *_TOOLS)]
        for line in table_lines(["tool", "version"], rows, header=False):
            click.echo(f"  {line}")

    app.emit(data, text)
