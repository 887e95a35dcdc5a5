"""The shop example app (examples/shop/app): endpoints, the unhealthy switch, and
graceful stops of the web server and the worker on SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "examples" / "shop" / "app"
sys.path.insert(0, str(APP))

from shopapp import web, worker  # noqa: E402


def get(port: int, path: str, timeout: float = 10.0) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read().decode()
    finally:
        conn.close()


@pytest.fixture
def server(monkeypatch) -> Iterator[int]:
    monkeypatch.setenv("APP_VERSION", "v7")
    monkeypatch.delenv("APP_FAIL_HEALTH", raising=False)
    srv = web.make_server("127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=10)


def test_up_version_and_root(server):
    assert get(server, "/up")[::2] == (200, "ok\n")
    status, content_type, body = get(server, "/version")
    assert status == 200 and content_type.startswith("application/json")
    assert json.loads(body) == {"version": "v7", "host": socket.gethostname(),
                                "hostname": socket.gethostname()}
    assert get(server, "/")[::2] == (200, f"shop v7 on {socket.gethostname()}\n")
    assert get(server, "/nope")[0] == 404


@pytest.mark.parametrize("value, status", [("1", 500), ("true", 500), ("0", 200), ("", 200)])
def test_app_fail_health_makes_up_fail(server, monkeypatch, value, status):
    monkeypatch.setenv("APP_FAIL_HEALTH", value)
    assert get(server, "/up")[0] == status
    assert get(server, "/version")[0] == 200  # only the health endpoint fails


def test_requests_are_served_concurrently(server):
    """A slow request does not hold up the health endpoint (threaded server)."""
    slow = threading.Thread(target=get, args=(server, "/sleep?ms=3000"))
    slow.start()
    try:
        assert get(server, "/up", timeout=2.5)[0] == 200
    finally:
        slow.join()


def test_sleep_rejects_a_bad_duration(server):
    assert get(server, "/sleep?ms=soon")[0] == 400


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(module: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", module], cwd=APP, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **env})


def wait_for_line(proc: subprocess.Popen[str], text: str) -> list[str]:
    seen: list[str] = []
    for line in proc.stdout:
        seen.append(line.rstrip("\n"))
        if text in line:
            return seen
    raise AssertionError(f"{text!r} never printed; output: {seen}")


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0():
    port = free_port()
    proc = start("shopapp.web", PORT=str(port), APP_VERSION="v1")
    try:
        wait_for_line(proc, "listening on")
        # Connect and send the slow request first: the server accepts connections in
        # order, so once /up has answered, the slow request is in flight.
        slow = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        slow.request("GET", "/sleep?ms=1500")
        assert get(port, "/up")[0] == 200
        proc.send_signal(signal.SIGTERM)
        response = slow.getresponse()
        assert (response.status, response.read().decode()) == (200, "slept 1500 ms\n")
        slow.close()
        assert proc.wait(timeout=20) == 0
        output = proc.stdout.read()
        assert "SIGTERM: finishing requests in flight" in output
        assert output.rstrip().endswith("web: stopped")
        with pytest.raises(OSError):  # no longer accepting
            get(port, "/up", timeout=2)
    finally:
        proc.kill()
        proc.wait()


def test_worker_ticks_until_sigterm_then_exits_0():
    proc = start("shopapp.worker", WORKER_INTERVAL="0.2", APP_VERSION="v3")
    try:
        seen = wait_for_line(proc, "tick 2")
        assert seen[0] == f"worker: tick 1 (version v3 on {socket.gethostname()})"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        rest = proc.stdout.read().splitlines()
        assert "worker: SIGTERM: stopping" in rest
        assert rest[-1].startswith("worker: stopped after ")
    finally:
        proc.kill()
        proc.wait()


def test_worker_run_returns_when_stopped():
    stop = threading.Event()
    stop.set()
    assert worker.run(stop, 60.0) == 0
