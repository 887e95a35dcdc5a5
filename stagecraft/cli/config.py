"""`stagecraft config show`: the resolved configuration of an environment."""

from __future__ import annotations

import json

import click
import yaml

from stagecraft.cli.context import AppContext, command as subcommand, group


@group("config", short_help="Show the resolved configuration of an environment.")
def command(app: AppContext) -> None:
    """Inspect configuration."""


@subcommand("show")
@click.option("--sources", is_flag=True, help="Show where each value came from.")
def show(app: AppContext, sources: bool) -> None:
    """Print the configuration of --env with every override applied.

    Secret references (${secret:NAME}) are shown as references: this command
    never resolves a secret, so no secret value can appear in its output."""
    from stagecraft.config.provenance import resolved_data, setting_sources

    loaded = app.load()
    env = app.environment()
    if sources:
        rows = setting_sources(loaded, env.name)
        data = {"environment": env.name,
                "settings": [{"path": r.path, "value": r.value, "source": r.source} for r in rows]}

        def text(d: dict) -> None:
            from stagecraft.ui.table import print_table

            table_rows = []
            for row in rows:
                value = json.dumps(row.value) if not isinstance(row.value, str) else row.value
                # The source follows its value, not a column of its own: values vary
                # too much in length for a column to help.
                table_rows.append([row.path, f"{value}  [{row.source}]"])
            print_table(["path", "value"], table_rows, header=False)

        app.emit(data, text)
        return
    data = resolved_data(loaded, env.name)
    app.emit(data, lambda d: click.echo(
        f"# {loaded.path.name}, environment {env.name}, overrides applied\n"
        + yaml.safe_dump(d, sort_keys=False, width=100), nl=False))


command.add_command(show)
