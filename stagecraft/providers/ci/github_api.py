"""A small client of GitHub's REST API: the calls `secrets sync --to github` and
`ci run` make, and nothing else.

Standard library only (urllib). The base URL comes from GITHUB_API_URL (Actions sets
it; default https://api.github.com), the token from GITHUB_TOKEN or GH_TOKEN. Every
request names API version 2022-11-28. A 429 or 5xx (and a 403 that is a rate limit) is
retried after what Retry-After / x-ratelimit-reset say, or a growing backoff; other
error answers become a GitHubError that says which call failed and what to do.
Values of secrets only leave this process sealed (see ``seal``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stagecraft.errors import ProviderError, UsageError

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
MEDIA_TYPE = "application/vnd.github+json"
MAX_PER_PAGE = 100
_RETRY_STATUSES = {429, 500, 502, 503, 504}
_MAX_WAIT = 60.0  # never sleep longer than this for one retry


class GitHubError(ProviderError):
    """GitHub answered an error (or could not be reached) for one call."""

    def __init__(self, message: str, *, status: int | None = None, endpoint: str = "",
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.endpoint = endpoint

    def to_dict(self) -> dict:
        data = super().to_dict()
        data.update(status=self.status, endpoint=self.endpoint)
        return data


@dataclass(frozen=True)
class Repo:
    """A repository on GitHub: owner/name."""

    owner: str
    name: str

    def __str__(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def path(self) -> str:
        return f"/repos/{_q(self.owner)}/{_q(self.name)}"


_REPO = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))/([A-Za-z0-9._-]{1,100})$")
_REMOTE = re.compile(
    r"^(?:https?://(?:[^@/]+@)?[^/]+/|ssh://(?:[^@/]+@)?[^/]+/|[^@/:]+@[^:/]+:)"
    r"(?P<owner>[^/]+)/(?P<name>[^/]+?)(?:\.git)?/?$")


def parse_repo(text: str) -> Repo:
    """``owner/name`` as a Repo; UsageError for anything else."""
    found = _REPO.match(text.strip())
    if not found or found.group(2) in (".", ".."):
        raise UsageError(f"'{text}' is not a GitHub repository",
                         hint="write --repo OWNER/NAME, e.g. --repo acme/shop")
    return Repo(found.group(1), found.group(2).removesuffix(".git"))


def repo_from_remote(url: str) -> Repo:
    """The repository of a git remote URL: https://github.com/o/r(.git),
    git@github.com:o/r.git or ssh://git@github.com/o/r.git."""
    found = _REMOTE.match(url.strip())
    if not found:
        raise UsageError(f"cannot tell the GitHub repository from the remote URL '{url}'",
                         hint="pass --repo OWNER/NAME")
    return parse_repo(f"{found.group('owner')}/{found.group('name')}")


def _git(project_dir: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=project_dir, capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def repo_of(project_dir: Path, given: str | None) -> Repo:
    """--repo when given, else the repository of `git remote get-url origin`."""
    if given:
        return parse_repo(given)
    url = _git(project_dir, "remote", "get-url", "origin")
    if url is None:
        raise UsageError("no --repo given and this project has no git remote 'origin'",
                         hint="pass --repo OWNER/NAME")
    return repo_from_remote(url)


def current_branch(project_dir: Path) -> str:
    """The checked-out branch (for `ci run --ref`)."""
    branch = _git(project_dir, "symbolic-ref", "--quiet", "--short", "HEAD")
    if branch is None:
        raise UsageError("HEAD is not on a branch, so there is no default --ref",
                         hint="pass --ref BRANCH (or a tag)")
    return branch


def token_from_env(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    token = environ.get("GITHUB_TOKEN") or environ.get("GH_TOKEN")
    if not token:
        raise UsageError(
            "no GitHub token: GITHUB_TOKEN and GH_TOKEN are not set",
            hint="export GITHUB_TOKEN=... (a fine-grained token with 'Secrets' and "
                 "'Actions' read and write on the repository; in Actions, "
                 "${{ secrets.GITHUB_TOKEN }} or a token with those permissions)")
    return token


def seal(public_key: str, value: str) -> str:
    """``value`` encrypted for GitHub: a libsodium sealed box to the repository's (or
    environment's) public key (base64), as base64."""
    from nacl.public import PublicKey, SealedBox

    box = SealedBox(PublicKey(base64.b64decode(public_key)))
    return base64.b64encode(box.encrypt(value.encode("utf-8"))).decode("ascii")


def _q(part: str) -> str:
    return urllib.parse.quote(str(part), safe="")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any = None


def next_link(header: str | None) -> str | None:
    """The rel="next" URL of a Link header."""
    for part in (header or "").split(","):
        found = re.match(r'\s*<([^>]*)>\s*;(.*)', part)
        if found and re.search(r'rel="?next"?', found.group(2)):
            return found.group(1)
    return None


@dataclass
class GitHubClient:
    """Calls to GitHub's REST API with one token."""

    token: str = field(repr=False)
    base_url: str = DEFAULT_API_URL
    retries: int = 5
    sleep: Callable[[float], None] = time.sleep
    timeout: float = 30.0
    on_retry: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> GitHubClient:
        environ = os.environ if environ is None else environ
        return cls(token=token_from_env(environ),
                   base_url=environ.get("GITHUB_API_URL") or DEFAULT_API_URL, **kwargs)

    # ----------------------------------------------------------------- transport

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                body: Any = None, what: str = "", not_found: str | None = None) -> Answer:
        """One call (``path`` from the base URL, or a whole URL on it), retried as the
        module says; GitHubError for an error answer."""
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        if not url.startswith(self.base_url + "/"):
            raise GitHubError(f"GitHub pointed to {url}, outside {self.base_url}",
                              hint="check GITHUB_API_URL")
        if query:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(
                {k: v for k, v in query.items() if v is not None})
        endpoint = f"{method} {urllib.parse.urlsplit(url).path}"
        data = json.dumps(body).encode() if body is not None else None
        attempt = 0
        while True:
            attempt += 1
            answer = self._send(method, url, data, endpoint)
            delay = self._retry_delay(answer, attempt)
            if delay is None:
                break
            if self.on_retry is not None:
                self.on_retry(f"GitHub: {endpoint} answered {answer.status or 'nothing'}; "
                              f"retrying in {delay:.0f}s")
            self.sleep(delay)
        if answer.status >= 400 or answer.status == 0:
            raise self._error(answer, endpoint, what, not_found)
        return answer

    def _send(self, method: str, url: str, data: bytes | None, endpoint: str) -> Answer:
        headers = {"Accept": MEDIA_TYPE, "X-GitHub-Api-Version": API_VERSION,
                   "User-Agent": "stagecraft"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return self._answer(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            return self._answer(error.code, error.headers, error.read())
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            return Answer(0, {}, {"message": f"cannot reach {self.base_url}: {reason}"})

    @staticmethod
    def _answer(status: int, headers: Any, raw: bytes) -> Answer:
        lowered = {k.lower(): v for k, v in headers.items()} if headers else {}
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"message": raw.decode("utf-8", "replace")[:200]}
        return Answer(status, lowered, body)

    def _retry_delay(self, answer: Answer, attempt: int) -> float | None:
        rate_limited = answer.status == 403 and (
            answer.headers.get("x-ratelimit-remaining") == "0"
            or "retry-after" in answer.headers)
        if not (answer.status in _RETRY_STATUSES or answer.status == 0 or rate_limited):
            return None
        if attempt > self.retries:
            return None
        after = answer.headers.get("retry-after", "")
        if after.strip().isdigit():
            return min(float(after), _MAX_WAIT)
        reset = answer.headers.get("x-ratelimit-reset", "")
        if reset.strip().isdigit() and answer.headers.get("x-ratelimit-remaining") == "0":
            return min(max(float(reset) - time.time(), 1.0), _MAX_WAIT)
        return min(2.0 ** (attempt - 1), _MAX_WAIT)

    def _error(self, answer: Answer, endpoint: str, what: str,
               not_found: str | None) -> GitHubError:
        said = answer.body.get("message") if isinstance(answer.body, dict) else None
        doing = f"{what} ({endpoint})" if what else endpoint
        said_part = f": {said}" if said else ""
        status = answer.status
        if status == 0:
            return GitHubError(f"GitHub did not answer {doing}{said_part}", endpoint=endpoint,
                               hint="check the network and GITHUB_API_URL")
        if status == 401:
            return GitHubError(f"GitHub refused the token (401{said_part}) for {doing}",
                               status=status, endpoint=endpoint,
                               hint="set GITHUB_TOKEN (or GH_TOKEN) to a valid, unexpired token")
        if status == 403:
            return GitHubError(f"GitHub forbids {doing} (403{said_part})", status=status,
                               endpoint=endpoint,
                               hint="give the token access to this repository: fine-grained "
                                    "tokens need 'Secrets' / 'Actions' read and write, "
                                    "classic tokens the 'repo' scope")
        if status == 404:
            return GitHubError(f"GitHub found nothing for {doing} (404{said_part})",
                               status=status, endpoint=endpoint,
                               hint=not_found or "check the repository name, and that the "
                                                 "token can see the repository (GitHub "
                                                 "answers 404 when it cannot)")
        if status == 422:
            details = answer.body.get("errors") if isinstance(answer.body, dict) else None
            extra = f" ({'; '.join(map(str, details))})" if details else ""
            return GitHubError(f"GitHub refused {doing} as invalid (422{said_part}){extra}",
                               status=status, endpoint=endpoint,
                               hint="check the names and values given to the command")
        if status in _RETRY_STATUSES or status == 403:
            return GitHubError(f"GitHub kept answering {status} to {doing}{said_part}",
                               status=status, endpoint=endpoint,
                               hint="GitHub is busy or rate limiting: try again later "
                                    "(https://www.githubstatus.com)")
        return GitHubError(f"GitHub answered {status} to {doing}{said_part}", status=status,
                           endpoint=endpoint, hint="see GitHub's REST API documentation")

    def pages(self, path: str, key: str, *, query: Mapping[str, Any] | None = None,
              per_page: int = MAX_PER_PAGE, what: str = "",
              not_found: str | None = None, limit: int | None = None) -> Iterator[dict]:
        """The items under ``key`` of every page (Link rel="next"), at most ``limit``."""
        url: str | None = path
        params: Mapping[str, Any] | None = {**(query or {}), "per_page": per_page}
        count = 0
        while url is not None:
            answer = self.request("GET", url, query=params, what=what, not_found=not_found)
            items = (answer.body or {}).get(key) or []
            for item in items:
                yield item
                count += 1
                if limit is not None and count >= limit:
                    return
            url, params = next_link(answer.headers.get("link")), None

    # ---------------------------------------------------------------- secrets

    @staticmethod
    def _scope_path(repo: Repo, environment: str | None) -> str:
        if environment is None:
            return f"{repo.path}/actions/secrets"
        return f"{repo.path}/environments/{_q(environment)}/secrets"

    @staticmethod
    def _scope_hint(repo: Repo, environment: str | None) -> str:
        if environment is None:
            return (f"check that {repo} exists and that the token can see it "
                    "(GitHub answers 404 when it cannot)")
        return (f"create the environment '{environment}' in {repo} (Settings > Environments), "
                "or pick another with --environment-scope, or sync repository secrets "
                "with --repo-level")

    def secrets(self, repo: Repo, environment: str | None = None) -> list[dict]:
        """The secrets on GitHub (name, created_at, updated_at; never values)."""
        where = f"environment {environment} of {repo}" if environment else str(repo)
        return list(self.pages(self._scope_path(repo, environment), "secrets",
                               what=f"listing the secrets of {where}",
                               not_found=self._scope_hint(repo, environment)))

    def public_key(self, repo: Repo, environment: str | None = None) -> dict:
        """{"key_id", "key"}: the key values are sealed to."""
        answer = self.request("GET", self._scope_path(repo, environment) + "/public-key",
                              what="getting the public key secrets are sealed to",
                              not_found=self._scope_hint(repo, environment))
        return answer.body

    def put_secret(self, repo: Repo, name: str, value: str, key: Mapping[str, str],
                   environment: str | None = None) -> str:
        """Seal ``value`` to ``key`` and store it as ``name``: "created" or "updated"."""
        body = {"encrypted_value": seal(key["key"], value), "key_id": key["key_id"]}
        answer = self.request("PUT", f"{self._scope_path(repo, environment)}/{_q(name)}",
                              body=body, what=f"storing secret {name}",
                              not_found=self._scope_hint(repo, environment))
        return "created" if answer.status == 201 else "updated"

    # ---------------------------------------------------------------- actions

    def dispatch(self, repo: Repo, workflow: str, ref: str,
                 inputs: Mapping[str, str] | None = None) -> dict | None:
        """Start ``workflow`` on ``ref``: the new run's ids when GitHub returns them
        (return_run_details), else None (then find it with ``runs``)."""
        body: dict[str, Any] = {"ref": ref, "return_run_details": True}
        if inputs:
            body["inputs"] = dict(inputs)
        answer = self.request(
            "POST", f"{repo.path}/actions/workflows/{_q(workflow)}/dispatches", body=body,
            what=f"starting workflow {workflow} on {ref}",
            not_found=f"check that .github/workflows/{workflow} exists on the default branch "
                      f"of {repo} (stagecraft ci init writes it) and that the token can see it")
        return answer.body if answer.status == 200 and isinstance(answer.body, dict) else None

    def runs(self, repo: Repo, workflow: str, *, branch: str | None = None,
             event: str | None = None, limit: int = 20) -> list[dict]:
        """The newest runs of ``workflow`` (newest first)."""
        return list(self.pages(
            f"{repo.path}/actions/workflows/{_q(workflow)}/runs", "workflow_runs",
            query={"branch": branch, "event": event}, per_page=min(limit, MAX_PER_PAGE),
            what=f"listing the runs of {workflow}", limit=limit))

    def run(self, repo: Repo, run_id: int) -> dict:
        return self.request("GET", f"{repo.path}/actions/runs/{int(run_id)}",
                            what=f"reading run {run_id}").body

    def jobs(self, repo: Repo, run_id: int) -> list[dict]:
        return list(self.pages(f"{repo.path}/actions/runs/{int(run_id)}/jobs", "jobs",
                               what=f"reading the jobs of run {run_id}"))
