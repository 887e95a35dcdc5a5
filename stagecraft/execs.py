"""Running external commands: the one helper every command uses.

``run()`` starts a command, streams its output line by line (to a callback and
the debug log), enforces a timeout by killing the whole process group, masks
secret values in everything it returns or raises, and turns failure into a
CommandFailed that names the command and its exit code.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from stagecraft.errors import CommandFailed, EnvironmentMissing
from stagecraft.log import get_logger, redactor
from stagecraft.redact import Redactor

log = get_logger("exec")

LineCallback = Callable[[str, str], None]  # (stream name "stdout"/"stderr", line)
_TAIL_LINES = 20


@dataclass(frozen=True)
class Completed:
    """A finished command. Output is redacted."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def render_argv(argv: Iterable[str], masker: Redactor | None = None) -> str:
    text = shlex.join(list(argv))
    return masker.text(text) if masker else text


def run(
    argv: list[str] | tuple[str, ...],
    *,
    cwd: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    input: str | None = None,
    secrets: Iterable[str] = (),
    on_line: LineCallback | None = None,
    check: bool = True,
    hint: str | None = None,
) -> Completed:
    """Run ``argv``; return its output or raise CommandFailed.

    ``env`` replaces the environment when given (pass ``{**os.environ, ...}``
    to extend it). ``secrets`` are masked in output, errors and logs, on top of
    every secret registered with ``stagecraft.log.add_secrets``.
    """
    argv = tuple(str(a) for a in argv)
    extra = [s for s in secrets if s]
    masker = Redactor([*extra, *_registered()]) if extra else redactor()
    shown = render_argv(argv, masker)
    log.debug("run: %s", shown)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,  # so a timeout can kill the whole group
        )
    except FileNotFoundError:
        raise EnvironmentMissing(
            f"command not found: {argv[0]}",
            hint=hint or f"install {Path(argv[0]).name} or put it on PATH",
        ) from None
    except PermissionError:
        raise EnvironmentMissing(f"cannot execute {argv[0]}: permission denied",
                                 hint=f"check the permissions of {argv[0]}") from None

    out_lines: list[str] = []
    err_lines: list[str] = []
    tail: deque[str] = deque(maxlen=_TAIL_LINES)

    def pump(stream, name: str, sink: list[str]) -> None:
        for raw in stream:
            line = masker.text(raw.rstrip("\n"))
            sink.append(line)
            tail.append(line)
            if on_line is not None:
                on_line(name, line)
            else:
                log.debug("%s: %s", name, line)
        stream.close()

    readers = [
        threading.Thread(target=pump, args=(proc.stdout, "stdout", out_lines), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, "stderr", err_lines), daemon=True),
    ]
    for reader in readers:
        reader.start()
    if input is not None:
        try:
            proc.stdin.write(input)
            proc.stdin.close()
        except BrokenPipeError:
            pass
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
    except BaseException:  # Ctrl-C: never leave the child running
        _kill_group(proc)
        raise
    for reader in readers:
        reader.join(timeout=5)
    duration = time.monotonic() - started
    result = Completed(tuple(masker.data(list(argv))), proc.returncode, "\n".join(out_lines),
                       "\n".join(err_lines), duration)
    log.debug("exit %s after %.2fs: %s", proc.returncode, duration, shown)

    if timed_out:
        raise CommandFailed(
            f"`{shown}` timed out after {timeout:g}s",
            argv=list(masker.data(list(argv))), returncode=None,
            output_tail="\n".join(tail),
            hint=hint or "the command may be stuck; raise the timeout or check the target",
        )
    if check and proc.returncode != 0:
        last = f": {tail[-1]}" if tail else ""
        raise CommandFailed(
            f"`{shown}` exited with code {proc.returncode}{last}",
            argv=list(masker.data(list(argv))), returncode=proc.returncode,
            output_tail="\n".join(tail),
            hint=hint,
        )
    return result


def _registered() -> list[str]:
    from stagecraft import log as _log

    return list(_log._known_secrets)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    except ProcessLookupError:
        pass
