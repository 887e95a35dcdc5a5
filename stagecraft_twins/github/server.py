"""The GitHub stand-in's HTTP side: routing, token check, pagination with Link headers,
injected faults, and a record of every exchange for the OpenAPI check.

It listens on 127.0.0.1 only, on a thread of the process that starts it (tests), so
a CLI run as a subprocess reaches it through GITHUB_API_URL like any GitHub.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from stagecraft_twins.github.state import ApiError, Repository, StandInState

DOCS = "https://docs.github.com/rest"
API_VERSIONS = ("2022-11-28", "2026-03-10")

Handler = Callable[["Call"], tuple[int, Any, dict[str, str]]]


@dataclass
class Call:
    """One request as the handlers see it."""

    method: str
    path: str
    params: dict[str, str]
    query: dict[str, list[str]]
    body: Any
    base_url: str

    def one(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Fault:
    """An answer to give instead of the real one, ``times`` times."""

    method: str
    path: re.Pattern[str]
    status: int
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "Service Unavailable"


class GitHubStandIn:
    """A stand-in of api.github.com for tests: ``with GitHubStandIn(token=...) as gh``
    serves on ``gh.url``; ``gh.state`` sets up repositories and reads what arrived;
    ``gh.exchanges`` records every request and answer."""

    def __init__(self, token: str = "stand-in-token", *, state: StandInState | None = None):
        self.token = token
        self.state = state or StandInState()
        self.exchanges: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        # False: answer dispatches 204 without the run, as GitHub did before
        # return_run_details (clients must then find the run in the list).
        self.run_details = True
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = [
            (m, re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", t) + "$"), h)
            for m, t, h in self._route_table()]

    # ---------------------------------------------------------------- life

    def start(self) -> GitHubStandIn:
        stand_in = self

        class _Handler(_RequestHandler):
            owner = stand_in

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True,
                                        name="github-stand-in")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> GitHubStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the stand-in first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail(self, method: str, path: str, status: int, *, times: int = 1,
             headers: dict[str, str] | None = None, message: str = "Service Unavailable") -> None:
        """Answer the next ``times`` requests matching ``method`` and ``path`` (a regex)
        with ``status``."""
        with self._lock:
            self.faults.append(Fault(method.upper(), re.compile(path), status, times,
                                     dict(headers or {}), message))

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.method in ("", method) and fault.path.search(path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def record(self, exchange: dict[str, Any]) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    # ---------------------------------------------------------------- routes

    def _route_table(self) -> list[tuple[str, str, Handler]]:
        repo = "/repos/{owner}/{repo}"
        env = repo + "/environments/{environment_name}"
        return [
            ("GET", repo + "/actions/secrets/public-key", self._public_key),
            ("GET", repo + "/actions/secrets", self._list_secrets),
            ("PUT", repo + "/actions/secrets/{secret_name}", self._put_secret),
            ("GET", env + "/secrets/public-key", self._public_key),
            ("GET", env + "/secrets", self._list_secrets),
            ("PUT", env + "/secrets/{secret_name}", self._put_secret),
            ("POST", repo + "/actions/workflows/{workflow_id}/dispatches", self._dispatch),
            ("GET", repo + "/actions/workflows/{workflow_id}/runs", self._list_runs),
            ("GET", repo + "/actions/runs/{run_id}", self._get_run),
            ("GET", repo + "/actions/runs/{run_id}/jobs", self._list_jobs),
        ]

    def _repo(self, call: Call) -> Repository:
        return self.state.repo(call.params["owner"], call.params["repo"])

    def _public_key(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        return 200, self.state.public_key(self._repo(call), call.params.get("environment_name")), {}

    def _list_secrets(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        items = self.state.secrets(self._repo(call), call.params.get("environment_name"))
        return self._page(call, "secrets", items)

    def _put_secret(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        created = self.state.put_secret(self._repo(call), call.params.get("environment_name"),
                                        call.params["secret_name"], call.body)
        return (201, {}, {}) if created else (204, None, {})

    def _dispatch(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo = self._repo(call)
        run = self.state.dispatch(repo, call.params["workflow_id"], call.body)
        if self.run_details and isinstance(call.body, dict) \
                and call.body.get("return_run_details") is True:
            shown = self.state.run_json(repo, run, call.base_url)
            return 200, {"workflow_run_id": run.id, "run_url": shown["url"],
                         "html_url": shown["html_url"]}, {}
        return 204, None, {}

    def _list_runs(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo = self._repo(call)
        filters = {k: v for k in ("branch", "event", "status") if (v := call.one(k))}
        runs = self.state.runs(repo, call.params["workflow_id"], filters)
        return self._page(call, "workflow_runs",
                          [self.state.run_json(repo, r, call.base_url) for r in runs])

    def _run(self, call: Call):
        repo = self._repo(call)
        try:
            run_id = int(call.params["run_id"])
        except ValueError:
            raise ApiError(404, "Not Found") from None
        return repo, self.state.find_run(repo, run_id)

    def _get_run(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo, run = self._run(call)
        self.state.advance(run)
        return 200, self.state.run_json(repo, run, call.base_url), {}

    def _list_jobs(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo, run = self._run(call)
        return self._page(call, "jobs", self.state.jobs_json(repo, run, call.base_url))

    @staticmethod
    def _page(call: Call, key: str, items: list[Any]) -> tuple[int, Any, dict[str, str]]:
        """GitHub's pagination: per_page (default 30, at most 100), page, Link header."""
        try:
            per_page = max(1, min(int(call.one("per_page", "30") or 30), 100))
            page = max(1, int(call.one("page", "1") or 1))
        except ValueError:
            per_page, page = 30, 1
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        links = []
        kept = {k: v[0] for k, v in call.query.items() if k not in ("page", "per_page")}

        def link(number: int, rel: str) -> str:
            query = urlencode({**kept, "per_page": per_page, "page": number})
            return f'<{call.base_url}{call.path}?{query}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        headers = {"Link": ", ".join(links)} if links else {}
        return 200, {"total_count": len(items), key: chunk}, headers

    # ---------------------------------------------------------------- one request

    def handle(self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes
               ) -> tuple[int, Any, dict[str, str]]:
        split = urlsplit(raw_path)
        path = split.path
        query = parse_qs(split.query, keep_blank_values=True)
        exchange: dict[str, Any] = {
            "method": method, "path": path, "query": query,
            "request_headers": {k: v for k, v in headers.items()
                                if k in ("accept", "x-github-api-version", "content-type")},
            "authorized": "authorization" in headers,
        }
        body: Any = None
        try:
            if raw_body:
                try:
                    body = json.loads(raw_body)
                except ValueError:
                    raise ApiError(400, "Problems parsing JSON") from None
            exchange["request_body"] = body
            status, answer, extra = self._answer(method, path, query, headers, body)
        except ApiError as error:
            status, extra = error.status, {}
            answer = {"message": error.message, "documentation_url": DOCS,
                      "status": str(error.status)}
            if error.errors:
                answer["errors"] = error.errors
        exchange.update(status=status, response_body=answer,
                        response_headers={k.lower(): v for k, v in extra.items()})
        self.record(exchange)
        return status, answer, extra

    def _answer(self, method: str, path: str, query: dict[str, list[str]],
                headers: dict[str, str], body: Any) -> tuple[int, Any, dict[str, str]]:
        auth = headers.get("authorization", "")
        if not auth:
            raise ApiError(401, "Requires authentication")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() not in ("bearer", "token") or token != self.token:
            raise ApiError(401, "Bad credentials")
        version = headers.get("x-github-api-version")
        if version is not None and version not in API_VERSIONS:
            raise ApiError(400, f"Unsupported 'X-GitHub-Api-Version' header: {version}")
        fault = self._take_fault(method, path)
        if fault is not None:
            message = fault.message if fault.status != 429 else "API rate limit exceeded"
            return fault.status, {"message": message, "documentation_url": DOCS,
                                  "status": str(fault.status)}, fault.headers
        for route_method, pattern, handler in self.routes:
            found = pattern.match(path)
            if found and route_method == method:
                params = {k: unquote(v) for k, v in found.groupdict().items()}
                call = Call(method, path, params, query, body, self.url)
                return handler(call)
        raise ApiError(404, "Not Found")


class _RequestHandler(BaseHTTPRequestHandler):
    owner: GitHubStandIn
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, answer, extra = self.owner.handle(self.command, self.path, headers, raw)
        data = b"" if answer is None else json.dumps(answer).encode()
        self.send_response(status)
        if answer is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-GitHub-Api-Version-Selected", "2022-11-28")
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        if data:
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # exchanges are recorded, not logged
