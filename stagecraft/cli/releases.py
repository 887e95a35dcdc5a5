"""`stagecraft releases list|show`: the release ledger."""

from __future__ import annotations

import click

from stagecraft.cli.context import AppContext, command as subcommand, group


@group("releases", short_help="List and show recorded releases.")
def command(app: AppContext) -> None:
    """The releases recorded in .stagecraft/releases.json."""


def _ledger(app: AppContext):
    from stagecraft.ledger import Ledger

    ledger = Ledger.for_project(app.load().project_dir)
    # A release whose process was killed says so, rather than "running" forever.
    ledger.mark_abandoned()
    return ledger


@subcommand("list")
@click.option("-n", "limit", default=20, show_default=True, help="Show at most this many.")
def list_(app: AppContext, limit: int) -> None:
    """Newest first: id, action, result, who, when, hosts switched."""
    from stagecraft.ui.table import print_table

    env = app.environment()
    releases = _ledger(app).releases(env.name)[:limit]

    def text(_data) -> None:
        if not releases:
            click.echo(f"no releases of {env.name} yet")
            return
        rows = []
        for r in releases:
            switched = sum(1 for h in r.hosts.values() if h.switched)
            action = r.action + (f" to {r.rollback_of}" if r.rollback_of else "")
            rows.append((r.id, action, r.result, f"{switched}/{len(r.hosts)}", r.performer,
                         r.created.strftime("%Y-%m-%d %H:%M:%S")))
        print_table(("release", "action", "result", "hosts", "by", "created"), rows)

    app.emit([r.model_dump(mode="json") for r in releases], text)


@subcommand("show")
@click.argument("release_id")
def show(app: AppContext, release_id: str) -> None:
    """One release: images, phases with per-host results and timings, errors."""
    env = app.environment()
    r = _ledger(app).get(release_id, env.name)

    def text(_data) -> None:
        click.echo(f"release {r.id} ({r.action}{' of ' + r.rollback_of if r.rollback_of else ''})"
                   f": {r.result}")
        click.echo(f"  by {r.performer}, {r.created:%Y-%m-%d %H:%M:%S}Z"
                   + (f" -> {r.finished:%H:%M:%S}Z" if r.finished else ""))
        click.echo(f"  git {r.git.sha or '-'}{' (dirty)' if r.git.dirty else ''}")
        if r.message:
            click.echo(f"  message: {r.message}")
        for name, image in sorted(r.images.items()):
            click.echo(f"  image {name}: {image.ref}")
        for phase in r.phases:
            took = ""
            if phase.started and phase.finished:
                took = f" {(phase.finished - phase.started).total_seconds():.1f} s"
            click.echo(f"  phase {phase.name}: {phase.status}{took}")
            for host, h in sorted(phase.hosts.items()):
                seconds = f" {h.seconds:.1f} s" if h.seconds is not None else ""
                detail = f" - {h.detail}" if h.detail else ""
                click.echo(f"    {host}: {h.status}{seconds}{' changed' if h.changed else ''}{detail}")
        for m in r.migrations:
            took = f" {m.seconds:.1f} s" if m.seconds is not None else ""
            applied = ", ".join(m.applied) if m.applied else "nothing pending"
            click.echo(f"  migrations {m.phase}-deploy ({m.engine} on {m.host}): "
                       f"{m.status}{took} - applied {applied}")
            if m.status == "failed" and m.output:
                for line in m.output.strip().splitlines()[-5:]:
                    click.echo(f"    {line}")
        for host, h in sorted(r.hosts.items()):
            click.echo(f"  host {host}: {h.status}{', switched' if h.switched else ''}")
        if r.error:
            click.echo(f"  error: {r.error.message}")

    app.emit(r.model_dump(mode="json"), text)


command.add_command(list_)
command.add_command(show)
