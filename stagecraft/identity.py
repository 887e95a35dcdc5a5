"""Who runs this process, and whether a process named in a record still runs.

The deploy lock, the release ledger and the hooks all write ``user@machine``;
the lock and the ledger also record a pid, so a later run can tell a holder
that was killed from one that is still working.
"""

from __future__ import annotations

import getpass
import os
import socket


def performer() -> str:
    """``user@machine``: who is deploying, as written in the lock, ledger and audit log."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no USER variable (some containers)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def process_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists on this machine.

    One we may not signal (another user's) exists too; a zombie (ended, not yet
    reaped by its parent) does not. ``pid`` <= 0 names a process group, not a
    process: False.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def process_gone(performer: str, pid: int) -> bool:
    """Whether process ``pid`` of ``performer`` (``user@machine``) is known to have ended.

    Only a process of this machine can be checked: one elsewhere, or without a
    pid, is never called gone (its lock or release must not be taken over).
    """
    machine = performer.rpartition("@")[2]
    if machine != socket.gethostname() or pid <= 0:
        return False
    return not process_alive(pid)
