"""The rollout scenario's test app: GET / answers the VERSION environment variable,
GET /up is the health probe (200, or 500 when FAIL=1)."""

import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/up":
            healthy = os.environ.get("FAIL") != "1"
            status, body = (200, b"up\n") if healthy else (500, b"failing on purpose\n")
        else:
            status, body = 200, os.environ.get("VERSION", "unknown").encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        # One line per probe would bury the app's own lines in `docker logs`.
        pass


# PID 1 ignores SIGTERM unless it handles it: stop at once, like a well-behaved app.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(f"serving {os.environ.get('VERSION')} on {os.environ.get('PORT', '8080')}", flush=True)
ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler).serve_forever()
