"""`stagecraft ssh HOST [-- CMD...]`: a shell or one command on a host."""

from __future__ import annotations

import click

from stagecraft.cli.context import AppContext, command


@command("ssh", short_help="Open a shell on a host, or run one command there.")
@click.argument("host")
@click.argument("words", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD...]")
def command(app: AppContext, host: str, words: tuple[str, ...]) -> None:
    """SSH to HOST with the key and pinned host keys Ansible uses. With CMD, run it
    there (joined with spaces, as ssh does) and exit with its exit code."""
    import sys

    from stagecraft.hosts.fleet import Fleet
    from stagecraft.ops.shell import exec_ssh, is_interactive, remote_command, ssh_session_argv
    from stagecraft.ops.targets import check_host

    env = app.environment()
    check_host(env, host)
    remote = Fleet.load(env, app.load().project_dir).remote(host)
    command_text = remote_command(list(words)) if words else None
    # A login shell wants a terminal whenever we have one; a command only when both
    # ends are terminals (so its output can still be piped).
    tty = is_interactive() if command_text else sys.stdin.isatty()
    exec_ssh(ssh_session_argv(remote, command_text, tty=tty))
