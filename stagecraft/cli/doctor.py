"""`stagecraft doctor`: check this machine (and an environment's hosts) for what
stagecraft needs; say what to do about each problem."""

from __future__ import annotations

from pathlib import Path

import click

from stagecraft.cli.context import AppContext
from stagecraft.cli.context import command as subcommand
from stagecraft.errors import ConfigError, ExitCode, StagecraftError

_MARK = {"ok": "green", "missing": "red", "wrong": "red", "todo": "yellow"}


def _clouds(app: AppContext) -> tuple[Path, list]:
    """The project directory and the cloud providers in use (the default cloud when
    there is no stagecraft.yml)."""
    from stagecraft.hosts.fleet import cloud_for
    from stagecraft.providers.cloud import get_cloud_provider
    from stagecraft.providers.kinds import DEFAULT_CLOUD_KIND

    try:
        loaded = app.load()
    except ConfigError:
        if app.config_path or app.env:
            raise
        return Path.cwd(), [get_cloud_provider(DEFAULT_CLOUD_KIND)]
    if app.env:
        return loaded.project_dir, [cloud_for(app.environment())]
    clouds: dict[str, object] = {}
    for name in loaded.config.environments:
        env = loaded.environment(name)
        clouds.setdefault(env.providers.cloud.kind, cloud_for(env))
    return loaded.project_dir, list(clouds.values()) or [get_cloud_provider(DEFAULT_CLOUD_KIND)]


def _print(report) -> None:
    from rich.text import Text

    from stagecraft.ui.table import print_table

    rows = []
    for check in report.checks:
        status = Text(str(check.status), style=_MARK[str(check.status)])
        rows.append([status, check.scope, check.name, check.detail])
        if check.fix:
            # The fix goes under the detail, on a line of its own.
            rows.append(["", "", "", f"-> {check.fix}"])
    print_table(["status", "scope", "check", "detail"], rows, header=False)
    counts = report.to_dict()["counts"]
    click.echo("doctor: " + ", ".join(f"{n} {s}" for s, n in counts.items()), err=True)


@subcommand("doctor", short_help="Check this machine and an environment's hosts.")
@click.option("--fix", is_flag=True,
              help="Also make what the clouds in use would make on first use (the local "
              "cloud's images), then check again.")
def command(app: AppContext, fix: bool) -> None:
    """Check what stagecraft needs on this machine: Python, Docker Engine, Compose v2,
    ssh, disk space, and what each cloud in use needs (programs, images it builds). With --env, also each host of the environment:
    reachable, Docker and Compose versions, Traefik, the deploy lock, clock skew.

    One line per check: ok, missing, wrong, or todo (made on first use). Exits 10 when
    anything is missing or wrong.
    """
    from stagecraft.doctor import controller_report

    project_dir, clouds = _clouds(app)
    report = controller_report(project_dir, clouds)
    if fix and report.ok:
        for cloud in clouds:
            made = cloud.prepare_controller(app.say)
            app.say(f"{cloud.kind} cloud ready: {', '.join(made)}")
        report = controller_report(project_dir, clouds)
    if app.env:
        report = _with_hosts(app, report)
    app.emit(report.to_dict(), lambda _: _print(report))
    if not report.ok:
        click.get_current_context().exit(int(ExitCode.ENVIRONMENT))


def _with_hosts(app: AppContext, report):
    from stagecraft.doctor import hosts_report
    from stagecraft.doctor.model import missing
    from stagecraft.hosts.fleet import Fleet

    env = app.environment()
    try:
        fleet = Fleet.load(env, app.load().project_dir)
    except StagecraftError as exc:
        report.checks.append(missing(env.name, "hosts recorded", exc.message,
                                     exc.hint or f"stagecraft infra up -e {env.name}"))
        return report
    return hosts_report(report, fleet)
