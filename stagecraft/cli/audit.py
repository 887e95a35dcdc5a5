"""`stagecraft audit`: what was rolled out where, from the hosts' audit logs."""

from __future__ import annotations

import click

from stagecraft.cli.context import AppContext, command


@command("audit", short_help="Show the hosts' audit logs, merged by time.")
@click.option("--host", "host", metavar="HOST", help="Only this host's log.")
@click.option("-n", "count", default=20, show_default=True, type=click.IntRange(min=1),
              help="Show the newest N records.")
def command(app: AppContext, host: str | None, count: int) -> None:
    """The newest N records of <base>/audit.log of every host (or --host), oldest
    first: time, host, action, release, result, performer and what each service did."""
    from stagecraft.hosts.fleet import Fleet
    from stagecraft.ops.audit import audit_lines, read_audit
    from stagecraft.ops.targets import check_host, host_names

    env = app.environment()
    names = [check_host(env, host)] if host else host_names(env)
    fleet = Fleet.load(env, app.load().project_dir)
    hosts = [fleet.remote(name) for name in names]
    records = read_audit(hosts, env.project.name, env.name, count,
                         warn=lambda text: click.echo(f"warning: {text}", err=True))
    app.emit(records, lambda data: click.echo("\n".join(audit_lines(data))))
