"""The one place the local cloud runs the ``docker`` CLI.

Every docker command goes through :func:`docker`, so every failure is reported the
same way: a :class:`~stagecraft.errors.CommandFailed` that names the command, the
host it was for, the exit code and the tail of stderr, with a hint. We use the CLI
rather than the Docker SDK because it is what an operator would type to reproduce
the failure, and the error text is the CLI's own.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence

from stagecraft import execs
from stagecraft.errors import CommandFailed, EnvironmentMissing
from stagecraft.execs import Completed

#: Enough of stderr to show the cause without flooding the terminal.
TAIL_CHARS = 1500

_NO_ENGINE_MARKERS = (
    "Cannot connect to the Docker daemon",
    "Is the docker daemon running",
    "error during connect",
)

_ENGINE_HINT = "start the Docker Engine (scripts/ensure-docker.sh) and check `docker info`"


def tail(text: str, limit: int = TAIL_CHARS) -> str:
    """The last ``limit`` characters of ``text``, stripped, marked when cut."""
    text = (text or "").strip()
    if len(text) <= limit:
        return text
    return "…" + text[-limit:]


def docker_binary() -> str:
    """The path of the docker CLI, or EnvironmentMissing with a hint."""
    path = shutil.which("docker")
    if path is None:
        raise EnvironmentMissing(
            "the docker CLI is not installed on this machine",
            hint="install Docker (apt-get install docker.io) and start it with "
            "scripts/ensure-docker.sh",
        )
    return path


def run(
    argv: Sequence[str],
    *,
    what: str,
    input: str | None = None,
    timeout: float = 120,
    check: bool = True,
    hint: str | None = None,
    env: dict[str, str] | None = None,
) -> Completed:
    """Run any command through stagecraft.execs (process-group timeouts, redaction,
    debug log); on failure raise an error that says what the command was for.

    ``what`` says it in words a user understands ("start host web-1"); the message
    reads "cannot start host web-1: `docker start ...` exited 1: <last line>".
    """
    argv = [str(a) for a in argv]
    try:
        proc = execs.run(argv, input=input, timeout=timeout, check=False, env=env, hint=hint)
    except EnvironmentMissing as exc:
        raise EnvironmentMissing(
            f"cannot {what}: `{argv[0]}` is not installed",
            hint=hint or exc.hint or f"install the package that provides `{argv[0]}`",
        ) from exc
    except CommandFailed as exc:  # execs raises this even with check=False on a timeout
        raise CommandFailed(
            f"cannot {what}: `{_shown(argv)}` did not finish within {timeout:g} s",
            argv=exc.argv,
            returncode=None,
            output_tail=tail(exc.output_tail),
            hint=hint or "check that the Docker Engine is not overloaded, then run it again",
        ) from exc
    if check:
        raise_for(proc, what=what, hint=hint)
    return proc


def _shown(argv: Sequence[str]) -> str:
    """The command as a user would type it (``docker``, not ``/usr/bin/docker``)."""
    argv = list(argv)
    if argv and os.path.basename(argv[0]) == "docker":
        argv[0] = "docker"
    return shlex.join(argv)


def docker(
    *args: str,
    what: str,
    input: str | None = None,
    timeout: float = 120,
    check: bool = True,
    hint: str | None = None,
) -> Completed:
    """Run ``docker ARGS...``; raise CommandFailed/EnvironmentMissing on failure."""
    return run(
        [docker_binary(), *args],
        what=what,
        input=input,
        timeout=timeout,
        check=check,
        hint=hint,
    )


def failure(
    what: str, argv: list[str], returncode: int, output: str, hint: str | None = None
) -> CommandFailed | EnvironmentMissing:
    """The error to raise for a failed command: EnvironmentMissing when no engine answers."""
    shown = _shown(argv)
    output_tail = tail(output)
    if any(marker in output for marker in _NO_ENGINE_MARKERS):
        return EnvironmentMissing(
            f"cannot {what}: no Docker Engine answers ({output_tail})",
            hint=_ENGINE_HINT,
        )
    last_line = output_tail.splitlines()[-1] if output_tail else "no output"
    return CommandFailed(
        f"cannot {what}: `{shown}` exited {returncode}: {last_line}",
        argv=argv,
        returncode=returncode,
        output_tail=output_tail,
        hint=hint or f"run `{shown}` yourself to see the whole error",
    )


def raise_for(proc: Completed, *, what: str, hint: str | None = None) -> None:
    """Raise the error for ``proc`` (run with check=False) if it failed."""
    if proc.returncode != 0:
        raise failure(what, list(proc.argv), proc.returncode, proc.stderr or proc.stdout, hint)


def copy_tar(container: str, directory: str, tar: bytes, *, what: str, hint: str) -> None:
    """Extract ``tar`` into ``directory`` of ``container`` (created or running).

    ``docker cp -`` keeps the archive's owners and modes (``-a`` would look the image's
    user up, which fails in a container that never ran). execs.run passes text only,
    so this one call uses subprocess directly.
    """
    argv = [docker_binary(), "cp", "-", f"{container}:{directory}"]
    try:
        proc = subprocess.run(argv, input=tar, capture_output=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f"cannot {what}: timed out", argv=argv,
                            hint="check `docker info`") from exc
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace")
        raise CommandFailed(f"cannot {what}: `docker cp` exited {proc.returncode}: "
                            f"{tail(stderr, 300)}", argv=argv, returncode=proc.returncode,
                            output_tail=tail(stderr), hint=hint)


def exists(kind: str, name: str) -> bool:
    """Whether a docker object (``image``, ``network``, ``container``, ``volume``) exists."""
    # Volumes have no .Id (a format naming it fails as if the volume were missing).
    field = "{{.Name}}" if kind == "volume" else "{{.Id}}"
    proc = docker(kind, "inspect", "--format", field, name, what=f"inspect {kind} {name}",
                  check=False, timeout=30)
    if proc.returncode == 0:
        return True
    if any(marker in proc.stderr for marker in _NO_ENGINE_MARKERS):
        raise failure(f"inspect {kind} {name}", ["docker", kind, "inspect", name],
                       proc.returncode, proc.stderr, None)
    return False


def engine_answers() -> bool:
    """Whether a Docker Engine answers the docker CLI (False without the CLI too)."""
    if shutil.which("docker") is None:
        return False
    try:
        proc = run(["docker", "version", "--format", "{{.Server.Version}}"],
                   what="ask the Docker Engine its version", check=False, timeout=20)
    except CommandFailed:  # timed out
        return False
    return proc.returncode == 0
