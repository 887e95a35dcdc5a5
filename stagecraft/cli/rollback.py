"""`stagecraft rollback`: bring back an earlier release still on the hosts."""

from __future__ import annotations

import click

from stagecraft.cli.context import AppContext, command
from stagecraft.cli.deploy import print_outcome, release_options, run_release


@command("rollback", short_help="Roll back to an earlier release.")
@release_options
@click.option("--to", "to", default=None, metavar="RELEASE",
              help="The release to bring back (default: the one before the current one).")
@click.option("--migrate", is_flag=True,
              help="Also run migrations backwards (only with an engine that can).")
def command(app: AppContext, to: str | None, migrate: bool, **kwargs) -> None:
    """Roll every host back to an earlier successful release whose files and images
    are still on the hosts (they keep the last 5), with the same phases and
    zero-downtime rollout as deploy. Migrations are never run backwards."""
    from stagecraft.deploy.release import rollback

    if migrate:
        _check_down_capable(app)
    outcome = run_release(app, rollback, to=to, **kwargs)
    print_outcome(app, outcome, "rollback")


def _check_down_capable(app: AppContext) -> None:
    """--migrate: refuse before anything runs unless the engine can run backwards."""
    from stagecraft.errors import PlanError
    from stagecraft.migrations.registry import get_migrator

    env = app.environment()
    if env.migrations is None:
        raise PlanError(f"--migrate: environment {env.name} has no migrations",
                        hint="drop --migrate")
    engine = get_migrator(env.migrations.engine)
    if not engine.can_down:
        raise PlanError(
            f"--migrate: the {env.migrations.engine} engine cannot run migrations backwards",
            hint="roll back without --migrate (the schema stays), or write a new migration "
                 "that undoes the change and deploy it")
