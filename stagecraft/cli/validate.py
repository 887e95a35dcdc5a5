"""`stagecraft validate`: check stagecraft.yml and report every problem at once."""

from __future__ import annotations

import click

from stagecraft.cli.context import AppContext, command


@command("validate", short_help="Check stagecraft.yml and report every problem.")
def command(app: AppContext) -> None:
    """Check stagecraft.yml: its shape, references, and the rules between settings,
    for every environment (or only --env). Exit 3 with file:line:column for each
    problem."""
    loaded = app.load()
    names = [app.environment().name] if app.env else list(loaded.environments)
    result = {
        "valid": True,
        "file": str(loaded.path),
        "project": loaded.config.project.name,
        "environments": names,
        "services": sorted(loaded.config.services),
    }

    def text(data: dict) -> None:
        if app.quiet:
            return
        click.echo(
            f"{loaded.path.name} is valid: project {data['project']}, "
            f"{len(data['services'])} service(s), environment(s): {', '.join(names)}"
        )

    app.emit(result, text)
