"""The dev runner: ``python -m devapi.dev``.

Runs ``python -m devapi.server`` in a child process and restarts that child when a
.py file of the devapi package changes (added, removed or rewritten), the way
``uvicorn --reload`` does. The runner itself keeps running with the same PID, so a
supervisor (stagecraft dev) sees one long-lived process. SIGTERM or SIGINT is passed
on to the child; the runner waits for it (SIGKILL after STOP_TIMEOUT_S) and exits 0.

A child that exits by itself (a syntax error in an edited file, say) is reported
and started again at the next change.

The child gets the runner's environment (PORT, HOST, DATABASE_URL ...) plus
DEVAPI_RUNNER_PID, by which it stops if the runner is killed outright. The
package's bytecode cache is removed before each start and the child writes none
(-B): an edit made within the same second as the last one, with the same size
(which a .pyc cannot tell apart), is still picked up.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

POLL_INTERVAL_S = 0.3
SETTLE_S = 0.1  # a change is read again after this, so a file written in parts restarts once
STOP_TIMEOUT_S = 5.0
PACKAGE_DIR = Path(__file__).resolve().parent

Snapshot = dict[str, tuple[int, int, int]]


def _log(line: str) -> None:
    print(f"devapi.dev: {line}", file=sys.stdout, flush=True)


def snapshot(root: Path = PACKAGE_DIR) -> Snapshot:
    """(mtime_ns, size, inode) of every .py file under root, by relative path."""
    files: Snapshot = {}
    for path in root.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        try:
            st = path.stat()
        except FileNotFoundError:  # removed while listing
            continue
        files[str(path.relative_to(root))] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return files


def changed_files(before: Snapshot, after: Snapshot) -> list[str]:
    return sorted(name for name in before.keys() | after.keys()
                  if before.get(name) != after.get(name))


class Runner:
    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.stop_requested = threading.Event()
        self.child_exit_reported = False

    def start_child(self) -> None:
        for cache in PACKAGE_DIR.rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)
        env = dict(os.environ)
        env["DEVAPI_RUNNER_PID"] = str(os.getpid())
        env["PYTHONUNBUFFERED"] = "1"
        package_parent = str(PACKAGE_DIR.parent)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
        self.child = subprocess.Popen(
            [sys.executable, "-B", "-m", "devapi.server"], env=env)
        self.child_exit_reported = False
        _log(f"started the server (pid {self.child.pid})")

    def stop_child(self, signum: int = signal.SIGTERM) -> None:
        child, self.child = self.child, None
        if child is None or child.poll() is not None:
            return
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass
        try:
            child.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _log(f"the server (pid {child.pid}) did not stop in {STOP_TIMEOUT_S:.0f}s: killing it")
            child.kill()
            child.wait()

    def on_signal(self, signum: int, _frame: object) -> None:
        self.stop_requested.set()
        child = self.child
        if child is not None and child.poll() is None:
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                pass

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        _log(f"watching {PACKAGE_DIR} for changes to .py files (pid {os.getpid()})")
        try:
            files = snapshot()
            self.start_child()
            while not self.stop_requested.wait(POLL_INTERVAL_S):
                current = snapshot()
                if current != files:
                    self.stop_requested.wait(SETTLE_S)
                    current = snapshot()
                    names = changed_files(files, current)
                    files = current
                    if self.stop_requested.is_set():
                        break
                    _log(f"changed: {', '.join(names)}: restarting the server")
                    self.stop_child()
                    if self.stop_requested.is_set():
                        break
                    self.start_child()
                elif (self.child is not None and self.child.poll() is not None
                      and not self.child_exit_reported):
                    self.child_exit_reported = True
                    _log(f"the server exited with code {self.child.returncode}; "
                         "it starts again when a .py file changes")
            _log("stopping")
            self.stop_child()
        finally:
            if self.child is not None and self.child.poll() is None:
                self.child.kill()
                self.child.wait()
        return 0


def main() -> int:
    return Runner().run()


if __name__ == "__main__":
    sys.exit(main())
