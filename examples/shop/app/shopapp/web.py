"""The shop's web service: a threaded HTTP server that stops gracefully.

Endpoints:
  /up       health: 200 "ok", or 500 when APP_FAIL_HEALTH is set (a deliberately
            unhealthy release, for rollout tests) or the database (when
            DATABASE_URL is set) does not answer
  /version  JSON: the APP_VERSION of this release (``version``), the container's
            hostname (``host``, also as ``hostname``) and, with a database, what
            it holds (``db``: newest migration per phase, item count, columns)
  /sleep    answers after ?ms= milliseconds (at most 10 s): an in-flight request
            that a graceful stop must let finish
  /         a line of text naming the version and the container

On SIGTERM (or SIGINT) it stops accepting connections, lets requests in flight
finish, and exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from shopapp import db

MAX_SLEEP_MS = 10_000


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class Handler(BaseHTTPRequestHandler):
    """One request. HTTP/1.0: one request per connection, so no idle keep-alive
    connection can hold a stop back."""

    server_version = "shop"

    def do_GET(self) -> None:  # noqa: N802 (the http.server naming)
        url = urlsplit(self.path)
        if url.path == "/up":
            if _flag("APP_FAIL_HEALTH"):
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "unhealthy (APP_FAIL_HEALTH)\n")
                return
            if db.enabled():
                try:
                    db.ping()
                except Exception as exc:  # noqa: BLE001 - any failure means not ready
                    self._send(HTTPStatus.INTERNAL_SERVER_ERROR, f"database: {exc}\n")
                    return
            self._send(HTTPStatus.OK, "ok\n")
        elif url.path == "/version":
            host = socket.gethostname()
            data: dict[str, object] = {"version": _version(), "host": host, "hostname": host}
            if db.enabled():
                try:
                    data["db"] = db.facts()
                except Exception as exc:  # noqa: BLE001 - shown, not fatal
                    data["db"] = {"error": str(exc)}
            body = json.dumps(data)
            self._send(HTTPStatus.OK, body + "\n", "application/json")
        elif url.path == "/sleep":
            try:
                ms = int(parse_qs(url.query).get("ms", ["1000"])[0])
            except ValueError:
                self._send(HTTPStatus.BAD_REQUEST, "ms must be a whole number\n")
                return
            time.sleep(min(max(ms, 0), MAX_SLEEP_MS) / 1000)
            self._send(HTTPStatus.OK, f"slept {ms} ms\n")
        elif url.path == "/":
            self._send(HTTPStatus.OK, f"shop {_version()} on {socket.gethostname()}\n")
        else:
            self._send(HTTPStatus.NOT_FOUND, "not found\n")

    def _send(self, status: HTTPStatus, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        if urlsplit(self.path).path != "/up":  # health probes every 2 s would drown the log
            sys.stderr.write(f"web: {self.address_string()} {format % args}\n")


class Server(ThreadingHTTPServer):
    """Each request in its own thread; server_close() waits for them (non-daemon)."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True


def _version() -> str:
    return os.environ.get("APP_VERSION", "dev")


def make_server(host: str = "0.0.0.0", port: int = 8080) -> Server:
    return Server((host, port), Handler)


def serve(server: Server) -> None:
    """Serve until SIGTERM/SIGINT, then stop gracefully. Must run in the main thread."""

    def stop(signum: int, _frame: object) -> None:
        print(f"web: {signal.Signals(signum).name}: finishing requests in flight, then exiting",
              file=sys.stderr, flush=True)
        # shutdown() waits for serve_forever() to return: call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()  # closes the listening socket, joins request threads
    print("web: stopped", file=sys.stderr, flush=True)


def main() -> int:
    port = int(os.environ.get("PORT", "8080"))
    server = make_server("0.0.0.0", port)
    print(f"web: version {_version()} listening on :{port}", file=sys.stderr, flush=True)
    serve(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
