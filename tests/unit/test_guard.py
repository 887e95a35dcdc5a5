"""The guard that ends ansible-playbook (and its workers) with the CLI that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from stagecraft.ansible.runner import GUARD

# A stand-in for the CLI: starts the guard in a new session (as ansible-runner's pty
# does) over a command that forks a worker, prints the pids, then waits for ever.
PARENT = textwrap.dedent("""
    import os, subprocess, sys, time
    guard, out = sys.argv[1], sys.argv[2]
    child = subprocess.Popen(
        [sys.executable, "-I", guard, str(os.getpid()), "--", "sh", "-c",
         "sleep 300 & echo $! > " + out + ".worker; exec sleep 301"],
        start_new_session=True)
    with open(out, "w") as f:
        f.write(str(child.pid))
    time.sleep(600)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose; its parent (us or init) reaps it.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_killing_the_parent_ends_the_command_and_its_workers(tmp_path: Path) -> None:
    out = tmp_path / "pids"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(GUARD), str(out)])
    try:
        guard_pid = int(_wait_for(out))
        worker_pid = int(_wait_for(Path(str(out) + ".worker")))
        assert _alive(guard_pid) and _alive(worker_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (_alive(guard_pid) or _alive(worker_pid)):
            time.sleep(0.1)
        assert not _alive(worker_pid), "the command's worker outlived the killed parent"
        assert not _alive(guard_pid), "the guard outlived the killed parent"
    finally:
        parent.kill()
        for name in (out, Path(str(out) + ".worker")):
            if name.is_file():
                try:
                    os.kill(int(name.read_text().strip()), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass


def test_the_command_exit_status_is_passed_on(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-I", str(GUARD), str(os.getpid()), "--", "sh", "-c", "exit 7"],
        timeout=30)
    assert done.returncode == 7


def test_a_command_killed_by_a_signal_exits_128_plus_the_signal(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-I", str(GUARD), str(os.getpid()), "--", "sh", "-c", "kill -9 $$"],
        timeout=30)
    assert done.returncode == 128 + signal.SIGKILL


def test_usage_is_checked() -> None:
    done = subprocess.run([sys.executable, "-I", str(GUARD), "1", "sleep"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "usage" in done.stderr
