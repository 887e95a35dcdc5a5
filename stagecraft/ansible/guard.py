"""Run a command that must not outlive the process that started it.

``python guard.py PARENT_PID -- ansible-playbook ...`` starts the command and waits
for it, passing its exit status on. If the parent (the stagecraft CLI) dies first,
even by SIGKILL where it cannot clean up, the kernel sends this guard SIGTERM
(PR_SET_PDEATHSIG); the guard then stops its whole process group: the command and
every worker it forked (SIGTERM, then SIGKILL after a grace period).

ansible-runner starts the guard as the leader of a new session (its pty), so the
group holds exactly the guard, ansible-playbook and ansible-playbook's workers.
Standard library only, and run by path: it must start fast and import nothing of
stagecraft.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
GRACE_SECONDS = 5.0


def _on_parent_death(signum: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def _stop_group(child: int) -> None:
    """SIGTERM the group (this guard ignores it), wait for the command, then SIGKILL."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.killpg(0, signal.SIGTERM)
    except OSError:
        pass
    deadline = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(child, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == child:
            break
        time.sleep(0.1)
    os.killpg(0, signal.SIGKILL)  # the guard too: its work is done


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: guard.py PARENT_PID -- COMMAND [ARG...]\n")
        return 2
    parent, command = int(argv[0]), argv[2:]
    _on_parent_death(signal.SIGTERM)
    child = os.fork()
    if child == 0:
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    # SIGTERM now means: the parent died, or someone stops this run. Either way the
    # command and its workers go too.
    signal.signal(signal.SIGTERM, lambda *_: _stop_group(child))
    if os.getppid() != parent:  # the parent died before the death signal was armed
        _stop_group(child)
    while True:
        try:
            _, status = os.waitpid(child, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            return 1
        return os.waitstatus_to_exitcode(status) if status >= 0 else 1


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.exit(code if code >= 0 else 128 - code)
