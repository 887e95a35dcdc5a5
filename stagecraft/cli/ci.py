"""`stagecraft ci init|run`: the project's CI workflows (providers.ci)."""

from __future__ import annotations

import click

from stagecraft.cli.context import AppContext, _with_app, global_options
from stagecraft.cli.main import LazyGroup

# subcommand -> module in stagecraft.cli (each defines `command`), imported on use
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "init": ("ci_init", "Write the CI workflows of this project."),
    "run": ("ci_run", "Start a CI workflow and follow its run."),
}


class _LazyCi(LazyGroup):
    commands_by_name = SUBCOMMANDS


@click.group("ci", cls=_LazyCi, short_help="Write CI workflows, start and follow CI runs.")
@global_options()
@click.pass_context
@_with_app
def command(app: AppContext) -> None:
    """CI for the project (providers.ci; GitHub Actions): `ci init` writes the
    workflows, `ci run` starts one and follows it."""
