"""`stagecraft status`: what the hosts of an environment run."""

from __future__ import annotations

import click

from stagecraft.cli.context import AppContext
from stagecraft.cli.context import command as subcommand


@subcommand("status", short_help="Show what the hosts run: releases, containers, Traefik, lock.")
def command(app: AppContext) -> None:
    """Per host of the environment: whether it is reachable, the release `current`
    points at, each service's containers with state and health, Traefik and its
    routes, and the deploy lock. Unreachable hosts are shown as such (exit 0); an
    environment whose hosts were never created is an error (exit 4)."""
    from stagecraft.hosts.fleet import Fleet
    from stagecraft.ops.status import environment_status, status_lines

    fleet = Fleet.load(app.environment(), app.load().project_dir)
    report = environment_status(fleet)
    app.emit(report, lambda data: click.echo("\n".join(status_lines(data))))
