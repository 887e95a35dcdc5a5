"""`stagecraft ci init|run`: the project's CI workflows (providers.ci)."""

from __future__ import annotations

import importlib

import click

from stagecraft.cli.context import AppContext, global_options
from stagecraft.cli.context import _with_app

# subcommand -> module in stagecraft.cli (each defines `command`), imported on use
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "init": ("ci_init", "Write the CI workflows of this project."),
    "run": ("ci_run", "Start a CI workflow and follow its run."),
}


class _LazyCi(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        return importlib.import_module(f"stagecraft.cli.{SUBCOMMANDS[name][0]}").command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, SUBCOMMANDS[name][1]) for name in sorted(SUBCOMMANDS)])


@click.group("ci", cls=_LazyCi, short_help="Write CI workflows, start and follow CI runs.")
@global_options()
@click.pass_context
@_with_app
def command(app: AppContext) -> None:
    """CI for the project (providers.ci; GitHub Actions): `ci init` writes the
    workflows, `ci run` starts one and follows it."""
