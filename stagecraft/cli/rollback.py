"""`stagecraft rollback`: bring back an earlier release still on the hosts."""

from __future__ import annotations

import click

from stagecraft.cli.context import AppContext, command
from stagecraft.cli.deploy import print_outcome, release_options, run_release


@command("rollback", short_help="Roll back to an earlier release.")
@release_options
@click.option("--to", "to", default=None, metavar="RELEASE",
              help="The release to bring back (default: the one before the current one).")
def command(app: AppContext, to: str | None, **kwargs) -> None:
    """Roll every host back to an earlier successful release whose files and images
    are still on the hosts (they keep the last 5), with the same phases and
    zero-downtime rollout as deploy. Migrations are never run backwards."""
    from stagecraft.deploy.release import rollback

    outcome = run_release(app, rollback, to=to, **kwargs)
    print_outcome(app, outcome, "rollback")
