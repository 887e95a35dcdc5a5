"""The HTTP server: ``python -m devapi.server``.

Listens on HOST:PORT (default 0.0.0.0:8080, what a container wants; stagecraft dev
passes HOST=127.0.0.1 and a free PORT) and answers:

    GET /up          200 "ok" (health)
    GET /api/hello   {"message": messages.GREETING}
    GET /api/items   [{"id": ..., "name": ...}, ...] from table items

One line per request goes to stdout. SIGTERM or SIGINT stops it cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devapi import db, messages


def _log(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


class Handler(BaseHTTPRequestHandler):
    server_version = "devapi"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(send_body=False)

    def _route(self) -> tuple[int, str, bytes]:
        path = self.path.split("?", 1)[0]
        if path == "/up":
            return 200, "text/plain; charset=utf-8", b"ok"
        if path == "/api/hello":
            return _json(200, {"message": messages.GREETING})
        if path == "/api/items":
            try:
                return _json(200, db.fetch_items())
            except db.DatabaseUnavailable as exc:
                _log(f"devapi: database unavailable: {exc}")
                return _json(503, {"error": f"database unavailable: {exc}"})
        if path == "/api" or path.startswith("/api/"):
            return _json(404, {"error": f"no such endpoint: {path}"})
        return 404, "text/plain; charset=utf-8", b"not found"

    def _answer(self, send_body: bool) -> None:
        started = time.monotonic()
        try:
            status, content_type, body = self._route()
        except Exception as exc:  # noqa: BLE001 (a bug answers 500, the server stays up)
            _log(f"devapi: error on {self.path}: {type(exc).__name__}: {exc}")
            status, content_type, body = _json(500, {"error": "internal error"})
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)
        elapsed_ms = (time.monotonic() - started) * 1000
        client = self.headers.get("X-Forwarded-For") or self.client_address[0]
        _log(f'{client} "{self.command} {self.path}" {status} {len(body)}B {elapsed_ms:.1f}ms')

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # _answer writes the request's line, with its duration

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        # http.server's own messages (a malformed request, a timeout) go to stdout too.
        _log(f"devapi: {self.client_address[0]}: {format % args}")


def _json(status: int, value: object) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(value).encode("utf-8")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _watch_parent(parent_pid: int, server: Server) -> None:
    """Under devapi.dev: stop when the runner is gone (even killed with SIGKILL)."""
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    _log("devapi: the dev runner is gone: stopping")
    server.shutdown()


def main() -> int:
    host = os.environ.get("HOST", "0.0.0.0")
    port = int(os.environ.get("PORT", "8080"))
    server = Server((host, port), Handler)

    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            # shutdown() waits for serve_forever to return: not from this thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    runner_pid = os.environ.get("DEVAPI_RUNNER_PID")
    if runner_pid and runner_pid.isdigit():
        threading.Thread(target=_watch_parent, args=(int(runner_pid), server),
                         daemon=True).start()

    _log(f"devapi: listening on http://{host}:{port} (pid {os.getpid()})")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    _log("devapi: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
