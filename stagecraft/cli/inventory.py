"""`stagecraft inventory`: the Ansible inventory of an environment, as Ansible gets it."""

from __future__ import annotations

import json

import click

from stagecraft.cli.context import AppContext, command


@command("inventory", short_help="Print the Ansible inventory of an environment.")
@click.option("--graph", is_flag=True,
              help="Print groups and hosts as a tree, like `ansible-inventory --graph`.")
def command(app: AppContext, graph: bool) -> None:
    """Print the inventory of --env as JSON in Ansible's inventory-file shape: the
    hosts, their groups (project_*, env_*, role_*) and host variables, with
    connection details from .stagecraft/<env>/hosts.json once `infra up` made the
    hosts. The stagecraft.platform.stagecraft inventory plugin renders the same.

    With --graph, print the tree of groups and hosts instead (with --output json:
    {"environment": ..., "graph": "<the tree>"})."""
    from stagecraft.render.inventory import inventory_graph, inventory_of

    loaded = app.load()
    env = app.environment()
    inventory = inventory_of(loaded, env.name)
    if graph:
        tree = inventory_graph(inventory)
        app.emit({"environment": env.name, "graph": tree}, tree)
        return
    app.emit(inventory, lambda data: click.echo(json.dumps(data, indent=2, sort_keys=True)))
