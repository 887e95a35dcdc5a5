"""bench/load.py: the paced load loop against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.load import LoadLoop


class _Version(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.headers.get("Host") != "shop.test":
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps({"version": "2.0.0"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def test_the_loop_keeps_its_rate_reads_the_version_and_raises_its_priority() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Version)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        loop = LoadLoop(server.server_address[1], "shop.test", rate=40)
        started = time.monotonic()
        loop.start()
        time.sleep(1.0)
        loop.stop()
        window = loop.window(started, started + 1.0)
    finally:
        server.shutdown()
        server.server_close()
    assert 30 <= window["requests"] <= 42, window  # paced, never a burst
    assert window["failed"] == 0 and window["p99_ms"] > 0
    assert loop.first_answer("2.0.0", started) is not None
    assert loop.first_answer("3.0.0", started) is None
    # Linux keeps a nice value per thread: only root may lower it.
    assert loop.priority_applied == (os.geteuid() == 0)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == 0


def test_a_host_header_the_server_does_not_know_is_a_failure() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Version)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        loop = LoadLoop(server.server_address[1], "other.test", rate=20, max_requests=5)
        started = time.monotonic()
        loop.start()
        loop.join(timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    window = loop.window(started, time.monotonic())
    assert window["requests"] == 5 and window["failed"] == 5, window
    assert loop.samples[0].detail == "HTTP 404"
