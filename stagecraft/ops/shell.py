"""`stagecraft ssh` and `stagecraft exec`: argv for an SSH session on a host.

The ssh options are the ones Ansible uses (this environment's key, its pinned
known_hosts, StrictHostKeyChecking=yes) and the same control sockets, from
stagecraft.hosts.ssh.
"""

from __future__ import annotations

import os
import shlex
import sys

from stagecraft.hosts import ssh
from stagecraft.hosts.lock import base_dir
from stagecraft.hosts.remote import RemoteHost


def ssh_session_argv(host: RemoteHost, command: str | None, *, tty: bool) -> list[str]:
    """ssh argv: a login shell (command None) or ``command``; ``-t`` asks for a terminal."""
    return host.ssh_argv(command or None, flags=["-t"] if tty else [])


def remote_command(words: list[str]) -> str:
    """`stagecraft ssh HOST -- CMD...` joins CMD with spaces, as ssh itself does, so
    the host's shell expands `$VAR` and globs there."""
    return " ".join(words)


def docker_exec_command(container: str, words: list[str], *, tty: bool) -> str:
    flags = ["-i", "-t"] if tty else []
    return shlex.join(["docker", "exec", *flags, container, *words])


def one_off_command(project: str, environment: str, service: str, words: list[str], *,
                    tty: bool) -> str:
    """A one-off container of ``service`` from the current release's compose file: its
    image, env and env file. Traefik is told to leave it alone, so it never takes traffic."""
    compose_file = f"{base_dir(project, environment)}/current/compose.yml"
    argv = ["docker", "compose", "-p", f"{project}-{environment}", "-f", compose_file, "run",
            "--rm", "--no-deps", "--label", "traefik.enable=false"]
    if not tty:
        argv.append("-T")
    return shlex.join([*argv, service, *words])


def is_interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def exec_ssh(argv: list[str]) -> None:
    """Replace this process with ssh: its exit code becomes ours."""
    ssh.make_control_dir()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)
