"""The twin's HTTP server: routing, bearer-token auth, DigitalOcean's error bodies and
rate-limit headers, injected faults, the ``/_twin`` control endpoints and the record of
every exchange (``--record FILE``, one JSON line each).

It listens on 127.0.0.1 only; each request runs on a thread of its own
(``ThreadingHTTPServer``), the handlers share one ``State`` behind its lock.
"""

from __future__ import annotations

import collections
import json
import math
import re
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from stagecraft_twins.digitalocean.api import Request, ResourcesApi, Response, Twin
from stagecraft_twins.digitalocean.droplets import ComputeApi
from stagecraft_twins.digitalocean.firewalls import FirewallsApi
from stagecraft_twins.digitalocean.state import ApiError
from stagecraft_twins.digitalocean.volumes import VolumesApi

RATE_LIMIT = 5000
RATE_WINDOW_SECONDS = 3600
ERROR_IDS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
             409: "conflict", 422: "unprocessable_entity", 429: "too_many_requests",
             500: "server_error", 503: "service_unavailable"}
ERROR_MESSAGES = {429: "API Rate limit exceeded.", 500: "Server was unable to give you a response.",
                  503: "Service is currently unavailable. Please try again later."}

Handler = Callable[[Request], Response]


class Route:
    """A method and a path template such as ``/v2/droplets/{droplet_id}``."""

    def __init__(self, method: str, template: str, handler: Handler) -> None:
        self.method = method
        self.template = template
        self.handler = handler
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self.pattern = re.compile(f"^{pattern}/?$")


class Fault:
    """An answer to give instead of the real one, to the next ``times`` matching requests."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.method = str(spec.get("method") or "").upper()
        self.path = re.compile(str(spec.get("path") or ".*"))
        self.status = int(spec.get("status", 500))
        self.times = int(spec.get("times", 1))
        self.body = spec.get("body")
        self.headers = {str(k).lower(): str(v) for k, v in (spec.get("headers") or {}).items()}
        if not 100 <= self.status <= 599 or self.times < 1:
            raise ValueError("status must be an HTTP status and times at least 1")

    def matches(self, method: str, path: str) -> bool:
        return (not self.method or self.method == method) and bool(self.path.search(path))

    def describe(self) -> dict[str, Any]:
        return {"method": self.method or None, "path": self.path.pattern, "status": self.status,
                "times": self.times, "body": self.body, "headers": self.headers}


class TwinServer(ThreadingHTTPServer):
    """The HTTP server of one twin."""

    daemon_threads = True

    def __init__(self, port: int, twin: Twin, compute: ComputeApi, token: str,
                 record_path: Path | None) -> None:
        super().__init__(("127.0.0.1", port), TwinRequestHandler)
        self.twin = twin
        self.token = token
        self.record_path = record_path
        self.record_lock = threading.Lock()
        apis = [ResourcesApi(twin), FirewallsApi(twin), compute, VolumesApi(twin)]
        self.routes = [Route(m, t, h) for api in apis for m, t, h in api.routes()]
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.rate_window_start = time.time()
        self.rate_used = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def route(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        """The route for a request and its path parameters (None: no such endpoint)."""
        for route in self.routes:
            found = route.pattern.match(path)
            if found and route.method == method:
                return route, found.groupdict()
        return None, {}

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def rate_headers(self) -> dict[str, str]:
        """DigitalOcean's rate-limit headers, counting this request."""
        with self.lock:
            current = time.time()
            if current - self.rate_window_start >= RATE_WINDOW_SECONDS:
                self.rate_window_start, self.rate_used = current, 0
            self.rate_used += 1
            return {"ratelimit-limit": str(RATE_LIMIT),
                    "ratelimit-remaining": str(max(RATE_LIMIT - self.rate_used, 0)),
                    "ratelimit-reset": str(int(self.rate_window_start + RATE_WINDOW_SECONDS))}

    def record(self, exchange: dict[str, Any]) -> None:
        if self.record_path is None:
            return
        line = json.dumps(exchange, sort_keys=False) + "\n"
        with self.record_lock, open(self.record_path, "a", encoding="utf-8") as record:
            record.write(line)


def error_body(status: int, error_id: str | None, message: str | None,
               request_id: str) -> dict[str, Any]:
    return {"id": error_id or ERROR_IDS.get(status, "error"),
            "message": message or ERROR_MESSAGES.get(status, "The request failed."),
            "request_id": request_id}


class TwinRequestHandler(BaseHTTPRequestHandler):
    """Answers one connection's requests: ``/v2`` as DigitalOcean, ``/_twin`` as control."""

    server: TwinServer
    protocol_version = "HTTP/1.1"
    server_version = "stagecraft-digitalocean-twin"

    def do_GET(self) -> None:
        self.handle_request()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the record file is the log of exchanges

    def handle_request(self) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        request_id = str(uuid.uuid4())
        try:
            body = json.loads(raw) if raw.strip() else None
            parse_error = False
        except ValueError:
            body, parse_error = None, True
        authorized = self.headers.get("Authorization", "") == f"Bearer {self.server.token}"
        if path.startswith("/_twin"):
            response = self.control(path, body, authorized, request_id)
            self.write(response.status, *self.prepare(response, request_id))
            return
        route, params = self.server.route(self.command, path)
        if not authorized:
            response = Response(401, error_body(401, "unauthorized", "Unable to authenticate you",
                                                request_id))
        elif parse_error:
            response = Response(400, error_body(400, "bad_request", "error parsing request body",
                                                request_id))
        else:
            response = self.answer(route, params, path, query, body, request_id)
        headers, payload = self.prepare(response, request_id)
        with self.server.lock:
            self.server.counts[f"{self.command} {route.template if route else path}"] += 1
        # Recorded before it is sent: whoever has the answer finds it in the record.
        self.server.record({"method": self.command, "path": path, "query": query,
                            "request_body": body, "status": response.status,
                            "response_headers": headers, "response_body": response.body})
        self.write(response.status, headers, payload)

    def answer(self, route: Route | None, params: dict[str, str], path: str,
               query: dict[str, list[str]], body: Any, request_id: str) -> Response:
        fault = self.server.take_fault(self.command, path)
        if fault is not None:
            return self.fault_response(fault, request_id)
        if route is None:
            return Response(404, error_body(404, "not_found", "The resource you were accessing "
                                            "could not be found.", request_id))
        request = Request(self.command, path, query, body, self.server.base_url, params)
        try:
            return route.handler(request)
        except ApiError as error:
            return Response(error.status, error_body(error.status, error.error_id,
                                                     error.message, request_id))
        except Exception:  # a bug of the twin: answer as DigitalOcean's 500 does, and say why
            traceback.print_exc(file=sys.stderr)
            return Response(500, error_body(500, "server_error", None, request_id))

    @staticmethod
    def fault_response(fault: Fault, request_id: str) -> Response:
        body = fault.body
        if body is None and fault.status >= 400:
            body = error_body(fault.status, None, None, request_id)
        elif isinstance(body, dict) and {"id", "message"} <= body.keys():
            body = {**body, "request_id": body.get("request_id", request_id)}
        headers = dict(fault.headers)
        if fault.status == 429:
            headers.setdefault("retry-after", "1")
            headers["ratelimit-remaining"] = "0"
        return Response(fault.status, body, headers)

    def prepare(self, response: Response, request_id: str) -> tuple[dict[str, str], bytes]:
        """The response's headers (lowercase names, as recorded) and its encoded body."""
        headers = self.server.rate_headers()
        headers["x-request-id"] = request_id
        headers.update(response.headers)
        payload = b""
        if response.body is not None and response.status != 204:
            payload = json.dumps(response.body).encode()
            headers["content-type"] = "application/json; charset=utf-8"
        if response.status != 204:
            headers["content-length"] = str(len(payload))
        return headers, payload

    def write(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    # ---- control ----------------------------------------------------------------

    def control(self, path: str, body: Any, authorized: bool, request_id: str) -> Response:
        """The ``/_twin`` endpoints: faults, account limits, request counts."""
        if not authorized:
            return Response(401, error_body(401, "unauthorized", "Unable to authenticate you",
                                            request_id))
        server, twin = self.server, self.server.twin
        if path == "/_twin/faults" and self.command == "POST":
            if not isinstance(body, dict):
                return Response(400, error_body(400, "bad_request", "a fault object is needed",
                                                request_id))
            if body.get("droplet_stuck"):
                times, seconds = body.get("times", 1), body.get("seconds")
                if (not isinstance(times, int) or isinstance(times, bool) or times < 1
                        or (seconds is not None and (isinstance(seconds, bool) or not
                                                     isinstance(seconds, (int, float))
                                                     or seconds <= 0))):
                    return Response(400, error_body(
                        400, "bad_request", "droplet_stuck takes times (an integer >= 1) "
                        "and seconds (a number > 0, or none: stuck until deleted)", request_id))
                twin.add_stuck_faults(times, math.inf if seconds is None else float(seconds))
                return Response(201, {"fault": {"droplet_stuck": True, "times": times,
                                                "seconds": seconds}})
            try:
                fault = Fault(body)
            except (TypeError, ValueError, re.error) as error:
                return Response(400, error_body(400, "bad_request", str(error), request_id))
            with server.lock:
                server.faults.append(fault)
            return Response(201, {"fault": fault.describe()})
        if path == "/_twin/faults" and self.command == "GET":
            with server.lock:
                return Response(200, {"faults": [f.describe() for f in server.faults],
                                      "droplet_stuck": len(twin.stuck_faults)})
        if path == "/_twin/faults" and self.command == "DELETE":
            with server.lock:
                server.faults.clear()
            with twin.fault_lock:
                twin.stuck_faults.clear()
            return Response(204)
        if path == "/_twin/account" and self.command == "PATCH":
            return self.patch_account(body, request_id)
        if path == "/_twin/requests" and self.command == "GET":
            with server.lock:
                counts = dict(sorted(server.counts.items()))
            return Response(200, {"total": sum(counts.values()), "requests": counts})
        return Response(404, error_body(404, "not_found", "no such control endpoint", request_id))

    def patch_account(self, body: Any, request_id: str) -> Response:
        state = self.server.twin.state
        if not isinstance(body, dict):
            return Response(400, error_body(400, "bad_request", "an object is needed", request_id))
        with state.lock:
            for name in ("droplet_limit", "volume_limit"):
                if name in body:
                    value = body[name]
                    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                        return Response(422, error_body(422, "unprocessable_entity",
                                                        f"{name} must be a whole number",
                                                        request_id))
                    state.account[name] = value
            state.save()
            return Response(200, {"account": dict(state.account)})
