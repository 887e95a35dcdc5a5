"""`stagecraft completion SHELL`: a shell completion script."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from stagecraft.cli.context import AppContext, command


@command("completion", short_help="Print a shell completion script.")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def command(app: AppContext, shell: str) -> None:
    """Print the completion script for SHELL. For bash:

        stagecraft completion bash > ~/.local/share/bash-completion/completions/stagecraft
    """
    from stagecraft.cli.main import cli

    completion = get_completion_class(shell)(cli, {}, "stagecraft", "_STAGECRAFT_COMPLETE")
    click.echo(completion.source())
