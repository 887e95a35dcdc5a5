"""The dev supervisor with real processes: merged prefixed output, restarts with
backoff, and one stop that ends whole process groups."""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from pathlib import Path

from stagecraft.dev import supervisor as sup
from stagecraft.dev.supervisor import ProcessSpec, Supervisor
from stagecraft.identity import process_alive as alive

PY = sys.executable


def spec(name: str, code: str, tmp_path: Path, **env: str) -> ProcessSpec:
    return ProcessSpec(name, [PY, "-u", "-c", code], tmp_path, {**os.environ, **env})


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_output_is_merged_with_a_prefix_per_process_and_kept_per_process(tmp_path: Path) -> None:
    out = io.StringIO()
    loop = "import time\nfor i in range(3): print('{0}', i); time.sleep(0.05)\ntime.sleep(30)"
    supervisor = Supervisor([spec("backend", loop.format("api"), tmp_path),
                             spec("web", loop.format("vite"), tmp_path)], tmp_path / "logs", out,
                            redact=lambda text: text.replace("2", "*"))
    supervisor.start()
    wait_for(lambda: out.getvalue().count("\n") >= 6)
    supervisor.stop(grace=2)
    lines = out.getvalue().splitlines()
    assert "backend | api 0" in lines and "web     | vite 1" in lines
    assert "backend | api *" in lines  # redacted on the terminal too
    backend_log = (tmp_path / "logs" / "backend.log").read_text()
    assert "| api 0" in backend_log and "vite" not in backend_log


def test_a_process_that_exits_is_reported_and_restarted_with_a_growing_delay(tmp_path: Path) -> None:
    out = io.StringIO()
    clock = [100.0]
    supervisor = Supervisor([spec("backend", "print('up'); raise SystemExit(3)", tmp_path)],
                            tmp_path / "logs", out, clock=lambda: clock[0])
    supervisor.start()
    item = supervisor.running["backend"]
    wait_for(lambda: item.process.poll() is not None)
    supervisor.check()
    assert "backend * exited with code 3 after 0.0 s; starting it again in 1 s" in out.getvalue()
    supervisor.check()
    assert item.process is None  # not before its delay
    clock[0] += 1.0
    supervisor.check()
    assert item.process is not None and item.restarts == 1
    wait_for(lambda: item.process.poll() is not None)
    supervisor.check()
    assert "starting it again in 2 s" in out.getvalue()
    clock[0] += 2.0
    supervisor.check()
    wait_for(lambda: item.process.poll() is not None)
    supervisor.check()
    assert "starting it again in 4 s" in out.getvalue()
    supervisor.stop(grace=1)


def test_the_delay_starts_over_after_a_long_run(tmp_path: Path) -> None:
    clock = [0.0]
    supervisor = Supervisor([spec("backend", "raise SystemExit(1)", tmp_path)], tmp_path / "logs",
                            io.StringIO(), clock=lambda: clock[0])
    item = supervisor.running["backend"]
    item.delay = 16.0
    supervisor.start()
    wait_for(lambda: item.process.poll() is not None)
    clock[0] += sup.STABLE_SECONDS
    supervisor.check()
    assert item.next_start == clock[0] + sup.BACKOFF_FIRST
    supervisor.stop(grace=1)


def test_stop_ends_the_whole_group_and_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    # A shell whose child ignores SIGTERM: the group must end anyway.
    code = ("import signal, subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(\"child\", flush=True); "
            "time.sleep(60)'])\n"
            "print('pid', child.pid, flush=True)\n"
            "time.sleep(60)")
    out = io.StringIO()
    supervisor = Supervisor([spec("backend", code, tmp_path)], tmp_path / "logs", out)
    supervisor.start()
    wait_for(lambda: "pid " in out.getvalue() and "child" in out.getvalue())
    child = int(out.getvalue().split("pid ")[1].split()[0])
    leader = supervisor.running["backend"].process.pid
    started = time.monotonic()
    killed = supervisor.stop(grace=1.0)
    assert killed == ["backend"]
    assert time.monotonic() - started < 5
    wait_for(lambda: not alive(child), timeout=5)
    assert not alive(leader)


def test_watch_returns_when_asked_to_stop(tmp_path: Path) -> None:
    supervisor = Supervisor([spec("backend", "import time; time.sleep(60)", tmp_path)],
                            tmp_path / "logs", io.StringIO())
    supervisor.start()
    stop = threading.Event()
    watcher = threading.Thread(target=supervisor.watch, args=(stop,))
    watcher.start()
    stop.set()
    watcher.join(timeout=5)
    assert not watcher.is_alive()
    pid = supervisor.pids()["backend"]
    supervisor.stop(grace=2)
    assert not alive(pid)


def test_stop_groups_ends_groups_left_by_a_session_that_is_gone(tmp_path: Path) -> None:
    import subprocess

    process = subprocess.Popen([PY, "-c", "import time; time.sleep(60)"], start_new_session=True)
    sup.stop_groups([process.pid], grace=2)
    assert process.wait(timeout=5) is not None
