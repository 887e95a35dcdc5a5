"""performer() and the one check of whether a recorded process still runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from stagecraft.identity import performer, process_alive, process_gone


def ended_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_performer_is_user_at_this_machine() -> None:
    user, _, machine = performer().rpartition("@")
    assert user and machine == socket.gethostname()


def test_a_running_process_is_alive_and_an_ended_one_is_not() -> None:
    assert process_alive(os.getpid())
    assert process_alive(1)  # init: alive even where we may not signal it
    assert not process_alive(ended_pid())


def test_no_pid_names_no_process() -> None:
    # os.kill(0, ...) would signal our own process group: never asked.
    assert not process_alive(0)
    assert not process_alive(-1)


def test_only_an_ended_process_of_this_machine_is_gone() -> None:
    here = f"someone@{socket.gethostname()}"
    dead = ended_pid()
    assert process_gone(here, dead)
    assert not process_gone(here, os.getpid())
    assert not process_gone(here, 0)  # no pid recorded: unknown, not gone
    assert not process_gone("someone@another-machine.example", dead)
