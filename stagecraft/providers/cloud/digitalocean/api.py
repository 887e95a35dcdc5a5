"""DigitalOcean's API v2 over HTTP: reads for planning and status, and the one place
that decides what to retry and what an error answer means for a user.

Writes go through the community.digitalocean modules (the role `digitalocean`), which
do not retry; the relay (relay.py) sends their requests through :func:`send`, so
their calls and stagecraft's reads share the same retries and the same errors.

Retries: a 429 is retried for every method (the API did nothing), waiting what
``retry-after`` or ``ratelimit-reset`` says; a 5xx or a dropped connection is
retried for reads, PUT and DELETE (repeating them is harmless), and for POST only on
502, 503 and 504 (the request did not reach the API). Backoff doubles from 1 s, at
most 30 s a wait, for at most ``RETRY_BUDGET`` seconds in all.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stagecraft.errors import ProviderError

#: The real API; stagecraft.yml's ``providers.cloud.api_url`` replaces it (a twin).
DEFAULT_API_URL = "https://api.digitalocean.com/v2"
#: Seconds one request may wait for retries in all, before its last answer counts.
RETRY_BUDGET = 120.0
MAX_WAIT = 30.0
REQUEST_TIMEOUT = 60.0
#: Largest page the API serves; lists are read with it to make the fewest calls.
PER_PAGE = 200

_IDEMPOTENT = {"GET", "HEAD", "PUT", "DELETE"}
_POST_RETRIED = {502, 503, 504}
_CONNECTION_FAILED = 0  # status of an exchange that got no answer


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status (0: no answer), lower-case headers, the raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    reason: str = ""

    def json(self) -> Any:
        """The body as JSON; None when it is empty or not JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def retry_delay(method: str, answer: Answer, attempt: int, now: float) -> float | None:
    """Seconds to wait before trying ``method`` again after ``answer`` (the
    ``attempt``-th, from 1), or None when it must not be retried."""
    backoff = min(MAX_WAIT, 2.0 ** (attempt - 1))
    if answer.status == 429:
        after = answer.headers.get("retry-after", "")
        if after.strip().isdigit():
            return min(MAX_WAIT, max(1.0, float(after)))
        reset = answer.headers.get("ratelimit-reset", "")
        if reset.strip().isdigit():
            return min(MAX_WAIT, max(1.0, float(reset) - now))
        return backoff
    retried = method in _IDEMPOTENT or (method == "POST" and answer.status in _POST_RETRIED)
    if answer.status == _CONNECTION_FAILED or answer.status >= 500:
        # A dropped connection on a POST may have created the thing: never repeat one.
        if answer.status == _CONNECTION_FAILED and method not in _IDEMPOTENT:
            return None
        return backoff if retried else None
    return None


Opener = Callable[[urllib.request.Request, float], Answer]


def _urlopen(request: urllib.request.Request, timeout: float) -> Answer:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return Answer(response.status, {k.lower(): v for k, v in response.headers.items()},
                          response.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, {k.lower(): v for k, v in exc.headers.items()},
                      exc.read() or b"")
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return Answer(_CONNECTION_FAILED, {}, b"", reason=str(reason))


def send(base_url: str, token: str, method: str, path: str, body: bytes | None = None, *,
         opener: Opener = _urlopen, sleep: Callable[[float], None] = time.sleep,
         on_retry: Callable[[str], None] | None = None,
         budget: float = RETRY_BUDGET) -> Answer:
    """Send one request (``path`` relative to the base URL, query included), retrying
    as the module docstring says; return the last answer."""
    url = f"{base_url.rstrip('/')}/{path.lstrip('/')}"
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        answer = opener(request, REQUEST_TIMEOUT)
        delay = retry_delay(method, answer, attempt, time.time())
        if delay is None or time.monotonic() - started + delay > budget:
            return answer
        if on_retry is not None:
            what = f"HTTP {answer.status}" if answer.status else f"no answer ({answer.reason})"
            on_retry(f"DigitalOcean: {method} /{path.split('?')[0].lstrip('/')} got {what}; "
                     f"trying again in {delay:g} s")
        sleep(delay)


# ------------------------------------------------------------------ errors

_PATH_NOUNS = {
    "droplets": "droplet", "volumes": "volume", "firewalls": "firewall", "vpcs": "VPC",
    "account/keys": "SSH key", "tags": "tag", "actions": "action", "account": "account",
    "regions": "regions", "sizes": "sizes", "images": "image",
}


def describe(method: str, path: str, body: Any = None) -> str:
    """What a request does, for people: "create droplet shop-prod-web-1",
    "resize droplet 3164494", "read droplets"."""
    bare = urllib.parse.urlsplit(path).path.strip("/")
    bare = re.sub(r"^v2/", "", bare)
    parts = bare.split("/")
    noun = next((n for p, n in _PATH_NOUNS.items() if bare == p or bare.startswith(p + "/")),
                parts[0] if parts else "resource")
    body = body if isinstance(body, Mapping) else {}
    name = body.get("name") or body.get("volume_name")
    if parts[-1] == "actions" and body.get("type"):
        target = parts[1] if len(parts) > 2 else (body.get("volume_name") or "")
        return f"{body['type']} {noun} {target}".rstrip()
    verb = {"GET": "read", "POST": "create", "PUT": "update", "PATCH": "update",
            "DELETE": "delete"}.get(method, method.lower())
    if method == "GET" and len(parts) == 1:
        return f"read {parts[0]}"
    target = name or (parts[1] if len(parts) > 1 else "")
    return f"{verb} {noun} {target}".rstrip()


def api_error(method: str, path: str, answer: Answer, body: Any = None) -> ProviderError:
    """The error a user sees for a failed request: what was refused, DigitalOcean's own
    words, and what to do."""
    what = describe(method, path, body)
    data = answer.json()
    message = data.get("message") if isinstance(data, Mapping) else None
    words = f": {message}" if message else ""
    again = ("nothing is half-recorded: `stagecraft infra up` continues where this "
             "one stopped")
    status = answer.status
    if status == _CONNECTION_FAILED:
        return ProviderError(f"DigitalOcean API did not answer ({what}): {answer.reason}",
                             hint=f"check the network and providers.cloud.api_url; {again}")
    if status == 401:
        return ProviderError(
            f"DigitalOcean did not accept the API token ({what}: HTTP 401{words})",
            hint="check the token that providers.cloud.token names: a personal access "
            "token with read and write scope (cloud.digitalocean.com → API → Tokens)")
    if status == 403:
        return ProviderError(
            f"DigitalOcean refused to {what} (HTTP 403{words})",
            hint="give the token write access to droplets, volumes, firewalls, VPCs, "
            "SSH keys and tags (a custom-scoped token lacks one of them), or remove what "
            "blocks it")
    if status == 404:
        return ProviderError(f"DigitalOcean has no such resource ({what}: HTTP 404{words})",
                             hint=f"it was removed outside stagecraft; {again}")
    if status == 422:
        hint = "fix the value it names in stagecraft.yml (providers.cloud or the host)"
        if message and "limit" in message.lower():
            hint = ("raise the account's limit (cloud.digitalocean.com → Settings → "
                    "Team, or ask support), or remove resources you do not need")
        return ProviderError(f"DigitalOcean refused to {what} (HTTP 422{words})", hint=hint)
    if status == 429:
        return ProviderError(f"DigitalOcean rate-limited {what} and kept refusing (HTTP 429)",
                             hint=f"wait a few minutes; {again}")
    return ProviderError(f"DigitalOcean failed to {what} (HTTP {status}{words})",
                         hint=f"see status.digitalocean.com; {again}")


# ------------------------------------------------------------------ client


@dataclass
class DigitalOceanAPI:
    """Reads of DigitalOcean's API (lists follow the pages), with :func:`send`'s retries."""

    base_url: str
    token: str = field(repr=False)
    on_retry: Callable[[str], None] | None = None
    opener: Opener = _urlopen
    sleep: Callable[[float], None] = time.sleep

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer of one request; ProviderError (api_error) on a failure."""
        raw = json.dumps(body).encode() if body is not None else None
        answer = send(self.base_url, self.token, method, path, raw, opener=self.opener,
                      sleep=self.sleep, on_retry=self.on_retry)
        if not 200 <= answer.status < 300:
            raise api_error(method, path, answer, body)
        return answer.json()

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", _with_query(path, query))

    def list(self, path: str, key: str, **query: Any) -> list[dict[str, Any]]:
        """Every item of a paginated list (``key`` names it in the answer)."""
        items: list[dict[str, Any]] = []
        next_path: str | None = _with_query(path, {**query, "per_page": PER_PAGE, "page": 1})
        for _page in range(10_000):
            if next_path is None:
                break
            data = self.request("GET", next_path) or {}
            items.extend(data.get(key) or [])
            following = ((data.get("links") or {}).get("pages") or {}).get("next")
            next_path = _relative(self.base_url, following) if following else None
        return items


def _with_query(path: str, query: Mapping[str, Any]) -> str:
    present = {k: v for k, v in query.items() if v is not None}
    return f"{path}?{urllib.parse.urlencode(present)}" if present else path


def _relative(base_url: str, url: str) -> str:
    """A ``links.pages.next`` URL as a path under the base URL (the API answers with
    absolute URLs; the query is what matters)."""
    split = urllib.parse.urlsplit(url)
    base_path = urllib.parse.urlsplit(base_url).path.rstrip("/")
    path = split.path[len(base_path):] if split.path.startswith(base_path) else split.path
    return f"{path.lstrip('/')}?{split.query}" if split.query else path.lstrip("/")
