"""`stagecraft schema`: the JSON Schema of stagecraft.yml."""

from __future__ import annotations

import json
from pathlib import Path

import click

from stagecraft.cli.context import AppContext, command
from stagecraft.fsutil import write_atomic


@command("schema", short_help="Print the JSON Schema of stagecraft.yml.")
@click.option("--write", "write_to", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the schema to this file instead of printing it.")
def command(app: AppContext, write_to: Path | None) -> None:
    """Print the JSON Schema of stagecraft.yml (for editors: point a
    `# yaml-language-server: $schema=` line at the written file)."""
    from stagecraft.config.jsonschema import config_json_schema

    text = json.dumps(config_json_schema(), indent=2) + "\n"
    if write_to is None:
        click.echo(text, nl=False)
        return
    write_atomic(write_to, text)
    app.say(f"wrote {write_to}")
