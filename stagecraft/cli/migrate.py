"""`stagecraft migrate plan|run`: database migrations outside a deploy."""

from __future__ import annotations

import click

from stagecraft.cli.context import AppContext, group
from stagecraft.cli.context import command as subcommand

PHASE = click.Choice(["pre", "post"])


@group("migrate", short_help="List or run database migrations.")
def command(app: AppContext) -> None:
    """Database migrations (migrations: in stagecraft.yml), run in a one-off container
    of a release's image on the migrations host. A deploy runs them by itself."""


def _target(app: AppContext):
    from stagecraft.hosts.fleet import Fleet

    return Fleet.load(app.environment(), app.load().project_dir)


@subcommand("plan")
@click.option("--phase", type=PHASE, help="Only this phase (default: both).")
@click.option("--release", "release_id", metavar="ID",
              help="The release whose image to ask (default: the newest succeeded one).")
def plan(app: AppContext, phase: str | None, release_id: str | None) -> None:
    """List every migration per phase, and which are pending. Changes nothing."""
    from stagecraft.deploy.migrate import plan_migrations

    report = plan_migrations(_target(app), phase=phase, release_id=release_id)

    def text(data) -> None:
        click.echo(f"{data['engine']} migrations of {data['environment']}, from "
                   f"{data['image']} on {data['host']}:")
        for name, found in data["phases"].items():
            pending = found["pending"]
            click.echo(f"  {name}-deploy: {len(pending)} pending of {len(found['migrations'])}")
            for migration in found["migrations"]:
                click.echo(f"    {'applied' if migration['applied'] else 'pending'}  "
                           f"{migration['name']}")
    app.emit(report, text)


@subcommand("run")
@click.option("--phase", type=PHASE, required=True, help="The phase to run.")
@click.option("--release", "release_id", metavar="ID",
              help="The release whose image runs them (default: the newest succeeded one).")
@click.option("--message", "-m", default="", help="Recorded with the lock.")
def run(app: AppContext, phase: str, release_id: str | None, message: str) -> None:
    """Apply the pending migrations of one phase now, under the deploy lock, and add
    the run to the release's record."""
    from stagecraft.deploy.migrate import run_migrations

    report = run_migrations(_target(app), phase=phase, release_id=release_id,
                            message=message, say=app.say)
    applied = report["applied"]
    app.emit(report, f"migrate-{phase}: applied {len(applied)}"
             + (f": {', '.join(applied)}" if applied else " (nothing pending)"))


command.add_command(plan)
command.add_command(run)
