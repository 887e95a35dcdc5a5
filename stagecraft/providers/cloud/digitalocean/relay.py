"""A relay on 127.0.0.1 between the community.digitalocean modules and the API.

The modules send each request once and fail on a 429 or a 5xx; they also need the
token as a module argument, where it would travel through Ansible's variables. The
playbook therefore talks to this relay (``digitalocean_api_url``), which sends every
request on with the token (the modules send none) through :func:`api.send`, so the
retries are the same as stagecraft's own reads, and keeps the failed answers, so a
failed run is reported as DigitalOcean's refusal of a named resource rather than as
a module's message. The relay lives as long as one playbook run.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from stagecraft.errors import ProviderError
from stagecraft.providers.cloud.digitalocean.api import Answer, api_error, send

#: Headers of the API's answers passed back to the modules.
_PASSED_HEADERS = ("content-type", "ratelimit-limit", "ratelimit-remaining",
                   "ratelimit-reset", "retry-after", "link")


@dataclass(frozen=True)
class Refusal:
    """One request the API refused (after retries)."""

    method: str
    path: str
    body: Any
    answer: Answer

    @property
    def expected(self) -> bool:
        """A 404 to a read is how the modules ask whether something exists."""
        return self.answer.status == 404 and self.method == "GET"

    def error(self) -> ProviderError:
        return api_error(self.method, self.path, self.answer, self.body)


class Relay:
    """The relay's server, its URL, and the refusals it saw."""

    def __init__(self, upstream: str, token: str,
                 on_retry: Callable[[str], None] | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self._token = token
        self._on_retry = on_retry
        self.refusals: list[Refusal] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v2"

    def first_refusal(self) -> Refusal | None:
        """The refusal that explains a failed run: the first that was not an expected
        404 (later ones tend to follow from it)."""
        with self._lock:
            return next((r for r in self.refusals if not r.expected), None)

    def _forward(self, method: str, path: str, body: bytes | None) -> Answer:
        answer = send(self.upstream, self._token, method, path, body, on_retry=self._on_retry)
        with self._lock:
            self.requests += 1
            if answer.status >= 400 or answer.status == 0:
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                self.refusals.append(Refusal(method, path, parsed, answer))
        return answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                path = self.path
                if path.startswith("/v2/"):
                    path = path[len("/v2/"):]
                answer = relay._forward(self.command, path, body)
                status = answer.status or 502
                payload = answer.body if answer.status else json.dumps(
                    {"id": "bad_gateway", "message": answer.reason}).encode()
                self.send_response(status)
                for name in _PASSED_HEADERS:
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # the relay's traffic is not for stderr

        return Handler

    def serve(self) -> threading.Thread:
        thread = threading.Thread(target=self._server.serve_forever, name="do-relay",
                                  daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def relay(upstream: str, token: str,
          on_retry: Callable[[str], None] | None = None) -> Iterator[Relay]:
    """A running relay to ``upstream`` for the duration of the block."""
    server = Relay(upstream, token, on_retry)
    server.serve()
    try:
        yield server
    finally:
        server.close()
