"""`stagecraft status`: what the hosts run; `status roadmap`: the feature catalog."""

from __future__ import annotations

import click

from stagecraft.cli.context import AppContext, command as subcommand, group


@group("status", invoke_without_command=True,
       short_help="Show what the hosts run: releases, containers, Traefik, lock.")
def command(app: AppContext) -> None:
    """Without a subcommand: per host of the environment, whether it is reachable, the
    release `current` points at, each service's containers with state and health,
    Traefik and its routes, and the deploy lock. Unreachable hosts are shown as such
    (exit 0); an environment whose hosts were never created is an error (exit 4)."""
    if click.get_current_context().invoked_subcommand is not None:
        return
    from stagecraft.hosts.fleet import Fleet
    from stagecraft.ops.status import environment_status, status_lines

    fleet = Fleet.load(app.environment(), app.load().project_dir)
    report = environment_status(fleet)
    app.emit(report, lambda data: click.echo("\n".join(status_lines(data))))


@subcommand("roadmap")
@click.option("--features", "show_features", is_flag=True, help="List every feature too.")
def roadmap(app: AppContext, show_features: bool) -> None:
    """Completion of the feature catalog (spec/features.yaml) by phase."""
    from stagecraft.roadmap import load_catalog, summarize

    catalog = load_catalog()
    summary = summarize(catalog)

    def text(data: dict) -> None:
        click.echo(f"{'phase':<28} {'done':>9}  progress")
        for row in data["phases"]:
            # From the counts, not the JSON's 1-decimal percent: 20.51% shows as 21%, not 20%.
            percent = row["percent"] and 100 * row["done"] / row["total"]
            bar = "#" * round(percent / 5)
            click.echo(f"{row['label']:<28} {row['done']:>3}/{row['total']:<4} "
                       f"[{bar:<20}] {percent:>3.0f}%  {row['in_progress']} in progress")
        total = data["total"]
        percent = total["percent"] and 100 * total["done"] / total["total"]
        click.echo(f"{'all (without v2)':<28} {total['done']:>3}/{total['total']:<4} "
                   f"{percent:.0f}%")
        if show_features:
            for feature in catalog.features:
                click.echo(f"  {feature.status:<12} {feature.id:<32} {feature.title}")

    if show_features:
        summary["features"] = [f.model_dump() for f in catalog.features]
    app.emit(summary, text)


command.add_command(roadmap)
