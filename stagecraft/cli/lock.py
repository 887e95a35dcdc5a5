"""`stagecraft lock status|release`: the deploy lock on the primary host."""

from __future__ import annotations

import click

from stagecraft.cli.context import AppContext, group
from stagecraft.cli.context import command as subcommand


@group("lock", short_help="Show or release the deploy lock.")
def command(app: AppContext) -> None:
    """The deploy lock (<base>/lock on the environment's primary host)."""


def _primary(app: AppContext):
    from stagecraft.hosts.fleet import Fleet

    env = app.environment()
    return env, Fleet.load(env, app.load().project_dir).primary


@subcommand("status")
def status(app: AppContext) -> None:
    """Who holds the lock: holder, pid, age, release, command, message, and whether it
    is stale (held by a process of this machine that is gone)."""
    from stagecraft.hosts.lock import read
    from stagecraft.ops.locks import lock_lines, lock_report

    env, host = _primary(app)
    report = lock_report(read(host, env.project.name, env.name), host.name)
    app.emit(report, lambda data: click.echo("\n".join(lock_lines(data))))


@subcommand("release")
@click.option("--yes", "-y", is_flag=True, help="Do not ask first.")
def release(app: AppContext, yes: bool) -> None:
    """Remove the lock whoever holds it (after a deploy that was killed). Asks first;
    without a terminal, --yes is required."""
    from stagecraft.errors import UsageError
    from stagecraft.hosts.lock import read
    from stagecraft.hosts.lock import release as release_lock
    from stagecraft.ops.locks import lock_lines, lock_report

    env, host = _primary(app)
    info = read(host, env.project.name, env.name)
    if info is None:
        app.emit({"released": False, **lock_report(None, host.name)},
                 f"the deploy lock of {env.name} is not held: nothing to release")
        return
    if not yes:
        if not app.can_ask():
            raise UsageError("releasing the deploy lock needs confirmation, and there is no "
                             "terminal to ask on", hint="pass --yes to release it")
        click.echo("\n".join(lock_lines(lock_report(info, host.name))), err=True)
        if not click.confirm("release it?", default=False, err=True):
            raise click.exceptions.Abort()
    removed = release_lock(host, env.project.name, env.name, None)
    report = {"released": removed, **lock_report(info, host.name)}
    if removed:
        text = f"released the deploy lock of {env.name}: {info.describe()}"
    else:
        text = f"the deploy lock of {env.name} was released meanwhile: nothing to release"
    app.emit(report, text)


command.add_command(status)
command.add_command(release)
