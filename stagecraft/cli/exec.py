"""`stagecraft exec SERVICE -- CMD...`: run a command in a service's container."""

from __future__ import annotations

import click

from stagecraft.cli.context import AppContext, command


@command("exec", short_help="Run a command in a service's container.")
@click.argument("service")
@click.argument("words", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD...")
@click.option("--host", "host", metavar="HOST", help="On this host (default: the first that "
              "runs the service).")
@click.option("--one-off", is_flag=True,
              help="In a new container of the current release's image and env, removed after.")
def command(app: AppContext, service: str, words: tuple[str, ...], host: str | None,
            one_off: bool) -> None:
    """Run CMD in a running container of SERVICE (`docker exec`), on --host or the first
    host that runs it; with --one-off, in a new container of the service made from the
    current release (`docker compose run --rm --no-deps`). Exits with CMD's exit code."""
    from stagecraft.hosts.fleet import Fleet
    from stagecraft.ops.shell import (
        docker_exec_command,
        exec_ssh,
        is_interactive,
        one_off_command,
        ssh_session_argv,
    )
    from stagecraft.ops.targets import find_service, release_host

    env = app.environment()
    fleet = Fleet.load(env, app.load().project_dir)
    tty = is_interactive()
    def warn(text: str) -> None:
        click.echo(f"warning: {text}", err=True)

    if one_off:
        on = release_host(fleet, service, host, warn=warn)
        remote = one_off_command(env.project.name, env.name, service, list(words), tty=tty)
    else:
        place = find_service(fleet, service, host, running_only=True, warn=warn)[0]
        on = place.host
        remote = docker_exec_command(place.containers[0].name, list(words), tty=tty)
    exec_ssh(ssh_session_argv(on, remote, tty=tty))
