"""`stagecraft logs SERVICE`: the service's container logs from every host, merged."""

from __future__ import annotations

import click

from stagecraft.cli.context import AppContext, command


def _line_count(value: str) -> int | None:
    from stagecraft.errors import UsageError

    if value == "all":
        return None
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise UsageError(f"--lines: expected a number or 'all', got {value!r}")
    return count


@command("logs", short_help="Show a service's container logs from every host.")
@click.argument("service")
@click.option("--follow", "-f", is_flag=True, help="Keep streaming new lines until Ctrl-C.")
@click.option("--host", "host", metavar="HOST", help="Only this host.")
@click.option("--since", metavar="WHEN",
              help="Only lines since WHEN: a duration (10m, 2h) or a timestamp.")
@click.option("--lines", "-n", "lines", default="100", show_default=True, metavar="N",
              help="Last N lines of each container ('all' for every line).")
@click.option("--timestamps", "-t", is_flag=True, help="Show docker's timestamps.")
def command(app: AppContext, service: str, follow: bool, host: str | None,
            since: str | None, lines: str, timestamps: bool) -> None:
    """Print the logs of SERVICE's containers on every host that runs it (or --host),
    each line prefixed with `host container |`. Without --follow the lines of all
    containers are merged by time; with --follow they stream as they come."""
    from stagecraft.hosts.fleet import Fleet
    from stagecraft.ops.logs import collect
    from stagecraft.ops.logs import follow as follow_logs
    from stagecraft.ops.targets import find_service

    count = _line_count(lines)
    fleet = Fleet.load(app.environment(), app.load().project_dir)
    found = find_service(fleet, service, host,
                         warn=lambda text: click.echo(f"warning: {text}", err=True))
    if follow:
        streams = [(place.host, c.name) for place in found for c in place.containers]
        code = follow_logs(streams, lines=count, since=since, timestamps=timestamps)
        click.get_current_context().exit(code)
        return
    merged = collect([(place.host, [c.name for c in place.containers]) for place in found],
                     lines=count, since=since)

    def text(_data) -> None:
        width = max((len(f"{line.host} {line.container}") for line in merged), default=0)
        for line in merged:
            click.echo(line.render(timestamps=timestamps, width=width))

    app.emit([{"host": line.host, "container": line.container, "time": line.timestamp,
               "text": line.text} for line in merged], text)
