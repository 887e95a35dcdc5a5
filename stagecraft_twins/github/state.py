"""What the GitHub stand-in knows: repositories with their environments, secrets and
workflows, and the runs dispatches start.

Each repository and each environment has its own libsodium key pair, as on GitHub,
so a value PUT sealed to the wrong key fails to open here too, and tests can read
the value that arrived (``secret_value``). Runs move one step each time someone
reads them: queued, then each job in progress, then completed with the workflow's
configured conclusion; so a follower sees every status in order, however fast it polls.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ApiError(Exception):
    """An error answer: status and GitHub's message."""

    def __init__(self, status: int, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


def now_iso(at: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if at is None else at))


@dataclass
class KeyPair:
    """A sealed-box key pair and GitHub's key id for it."""

    private: PrivateKey = field(default_factory=PrivateKey.generate)

    @property
    def key(self) -> str:
        return base64.b64encode(bytes(self.private.public_key)).decode()

    @property
    def key_id(self) -> str:
        # GitHub's key ids are long digit strings.
        return str(int(hashlib.sha256(bytes(self.private.public_key)).hexdigest()[:15], 16))

    def open(self, encrypted: str) -> str:
        return SealedBox(self.private).decrypt(base64.b64decode(encrypted)).decode("utf-8")


@dataclass
class Secret:
    value: str
    created_at: str
    updated_at: str


@dataclass
class Scope:
    """Where secrets live: a repository or one of its environments."""

    keys: KeyPair = field(default_factory=KeyPair)
    secrets: dict[str, Secret] = field(default_factory=dict)


@dataclass
class WorkflowSpec:
    """A workflow file of a repository, and how its runs end."""

    file: str
    name: str = "deploy"
    jobs: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("deploy", ("Set up job", "Check out", "Deploy", "Complete job")),)
    conclusion: str = "success"  # success | failure | cancelled
    failing_step: str = "Deploy"  # the step that fails when conclusion is failure
    inputs: tuple[str, ...] = ("environment",)
    dispatchable: bool = True  # has a workflow_dispatch trigger


@dataclass
class Run:
    id: int
    number: int
    workflow: WorkflowSpec
    workflow_id: int
    branch: str
    event: str
    created: float
    step: int = 0  # 0 queued, 1..len(jobs) job k-1 in progress, len(jobs)+1 completed
    shown: int = 0  # the step the last read of the run showed; its jobs show the same


@dataclass
class Repository:
    owner: str
    name: str
    id: int
    scope: Scope = field(default_factory=Scope)
    environments: dict[str, Scope] = field(default_factory=dict)
    workflows: dict[str, tuple[int, WorkflowSpec]] = field(default_factory=dict)
    branches: set[str] = field(default_factory=lambda: {"main"})
    runs: list[Run] = field(default_factory=list)


class StandInState:
    """Every repository of the stand-in, behind one lock."""

    def __init__(self, html_url: str = "https://github.com") -> None:
        self.lock = threading.RLock()
        self.repos: dict[tuple[str, str], Repository] = {}
        self.html_url = html_url
        self._ids = itertools.count(1001)

    # ------------------------------------------------------------- set up (tests)

    def add_repo(self, full_name: str, *, environments: tuple[str, ...] = (),
                 workflows: tuple[WorkflowSpec, ...] = (),
                 branches: tuple[str, ...] = ("main",)) -> Repository:
        owner, name = full_name.split("/")
        with self.lock:
            repo = Repository(owner, name, next(self._ids), branches=set(branches))
            for env in environments:
                repo.environments[env] = Scope()
            for spec in workflows:
                repo.workflows[spec.file] = (next(self._ids), spec)
            self.repos[(owner.lower(), name.lower())] = repo
            return repo

    def secret_value(self, full_name: str, name: str, environment: str | None = None) -> str:
        """The value that arrived (tests only: GitHub never answers values)."""
        return self._scope(self.repo(*full_name.split("/")), environment).secrets[name].value

    def set_secret(self, full_name: str, name: str, value: str,
                   environment: str | None = None, at: float | None = None) -> None:
        scope = self._scope(self.repo(*full_name.split("/")), environment)
        stamp = now_iso(at)
        scope.secrets[name] = Secret(value, stamp, stamp)

    # ------------------------------------------------------------- API operations

    def repo(self, owner: str, name: str) -> Repository:
        found = self.repos.get((owner.lower(), name.lower()))
        if found is None:
            raise ApiError(404, "Not Found")
        return found

    @staticmethod
    def _scope(repo: Repository, environment: str | None) -> Scope:
        if environment is None:
            return repo.scope
        scope = repo.environments.get(environment)
        if scope is None:
            raise ApiError(404, "Not Found")
        return scope

    def secrets(self, repo: Repository, environment: str | None) -> list[dict[str, str]]:
        with self.lock:
            scope = self._scope(repo, environment)
            return [{"name": name, "created_at": s.created_at, "updated_at": s.updated_at}
                    for name, s in sorted(scope.secrets.items())]

    def public_key(self, repo: Repository, environment: str | None) -> dict[str, str]:
        scope = self._scope(repo, environment)
        return {"key_id": scope.keys.key_id, "key": scope.keys.key}

    def put_secret(self, repo: Repository, environment: str | None, name: str,
                   body: Any) -> bool:
        """Store a sealed value; True when the secret is new (201), False (204) when
        it replaced one."""
        with self.lock:
            scope = self._scope(repo, environment)
            if not isinstance(body, dict) or not isinstance(body.get("encrypted_value"), str) \
                    or not isinstance(body.get("key_id"), str):
                raise ApiError(422, "Invalid request.\n\n\"encrypted_value\" and \"key_id\" "
                                    "are required.")
            if not SECRET_NAME.match(name) or name.upper().startswith("GITHUB_"):
                raise ApiError(422, "Secret names can only contain alphanumeric characters "
                                    "([a-z], [A-Z], [0-9]) or underscores (_), must not start "
                                    "with a number or GITHUB_.")
            if body["key_id"] != scope.keys.key_id:
                raise ApiError(422, "Bad request - key_id does not match the public key.")
            try:
                value = scope.keys.open(body["encrypted_value"])
            except (CryptoError, ValueError, UnicodeDecodeError):
                raise ApiError(422, "Bad request - could not decrypt encrypted_value.") from None
            stamp = now_iso()
            name = name.upper()  # GitHub keeps secret names upper case
            old = scope.secrets.get(name)
            scope.secrets[name] = Secret(value, old.created_at if old else stamp, stamp)
            return old is None

    def workflow(self, repo: Repository, workflow_id: str) -> tuple[int, WorkflowSpec]:
        for number, spec in repo.workflows.values():
            if workflow_id in (spec.file, str(number)):
                return number, spec
        raise ApiError(404, "Not Found")

    def dispatch(self, repo: Repository, workflow_id: str, body: Any) -> Run:
        with self.lock:
            number, spec = self.workflow(repo, workflow_id)
            if not isinstance(body, dict) or not isinstance(body.get("ref"), str):
                raise ApiError(422, "Invalid request.\n\n\"ref\" wasn't supplied.")
            if not spec.dispatchable:
                raise ApiError(422, "Workflow does not have 'workflow_dispatch' trigger")
            ref = body["ref"].removeprefix("refs/heads/")
            if ref not in repo.branches:
                raise ApiError(422, f"No ref found for: {body['ref']}")
            inputs = body.get("inputs") or {}
            unexpected = sorted(set(inputs) - set(spec.inputs))
            if unexpected:
                raise ApiError(422, "Unexpected inputs provided: "
                                    + str(unexpected).replace("'", '"'))
            run = Run(id=next(self._ids) * 1000, number=len(repo.runs) + 1, workflow=spec,
                      workflow_id=number, branch=ref, event="workflow_dispatch",
                      created=time.time())
            repo.runs.append(run)
            return run

    def runs(self, repo: Repository, workflow_id: str, query: dict[str, str]) -> list[Run]:
        with self.lock:
            number, _spec = self.workflow(repo, workflow_id)
            found = [r for r in repo.runs if r.workflow_id == number
                     and r.branch == query.get("branch", r.branch)
                     and r.event == query.get("event", r.event)
                     and self.status(r)[0] == query.get("status", self.status(r)[0])]
            return sorted(found, key=lambda r: -r.id)

    def find_run(self, repo: Repository, run_id: int) -> Run:
        for run in repo.runs:
            if run.id == run_id:
                return run
        raise ApiError(404, "Not Found")

    def advance(self, run: Run) -> None:
        """A read of the run: what it showed is what its jobs show until the next read,
        and the next read shows the next step."""
        with self.lock:
            run.shown = run.step
            run.step = min(run.step + 1, len(run.workflow.jobs) + 1)

    @staticmethod
    def status(run: Run) -> tuple[str, str | None]:
        if run.shown == 0:
            return "queued", None
        if run.shown <= len(run.workflow.jobs):
            return "in_progress", None
        return "completed", run.workflow.conclusion

    # ------------------------------------------------------------- JSON shapes

    def run_json(self, repo: Repository, run: Run, api: str) -> dict[str, Any]:
        status, conclusion = self.status(run)
        full = f"{repo.owner}/{repo.name}"
        url = f"{api}/repos/{full}/actions/runs/{run.id}"
        sha = hashlib.sha1(f"{full}{run.branch}".encode()).hexdigest()
        created = now_iso(run.created)
        return {
            "id": run.id, "name": run.workflow.name, "node_id": f"WFR_{run.id}",
            "head_branch": run.branch, "head_sha": sha, "path": f".github/workflows/{run.workflow.file}",
            "display_title": run.workflow.name, "run_number": run.number, "run_attempt": 1,
            "event": run.event, "status": status, "conclusion": conclusion,
            "workflow_id": run.workflow_id, "check_suite_id": run.id + 1,
            "check_suite_node_id": f"CS_{run.id + 1}", "url": url,
            "html_url": f"{self.html_url}/{full}/actions/runs/{run.id}",
            "pull_requests": [], "created_at": created, "updated_at": now_iso(),
            "run_started_at": created, "jobs_url": f"{url}/jobs", "logs_url": f"{url}/logs",
            "check_suite_url": f"{api}/repos/{full}/check-suites/{run.id + 1}",
            "artifacts_url": f"{url}/artifacts", "cancel_url": f"{url}/cancel",
            "rerun_url": f"{url}/rerun", "previous_attempt_url": None,
            "workflow_url": f"{api}/repos/{full}/actions/workflows/{run.workflow_id}",
            "head_commit": {"id": sha, "tree_id": sha[::-1], "message": "a commit",
                            "timestamp": created,
                            "author": {"name": "Mona", "email": "mona@example.com"},
                            "committer": {"name": "Mona", "email": "mona@example.com"}},
            "repository": self.repo_json(repo, api),
            "head_repository": self.repo_json(repo, api),
        }

    def jobs_json(self, repo: Repository, run: Run, api: str) -> list[dict[str, Any]]:
        full = f"{repo.owner}/{repo.name}"
        status, conclusion = self.status(run)
        jobs = []
        for index, (name, steps) in enumerate(run.workflow.jobs):
            job_id = run.id + 10 + index
            position = run.shown - 1  # the job in progress
            failing = conclusion == "failure" and index == len(run.workflow.jobs) - 1
            if status == "completed":
                job_status, job_conclusion = "completed", (
                    "failure" if failing else "cancelled" if conclusion == "cancelled"
                    and index == len(run.workflow.jobs) - 1 else "success")
            elif index < position:
                job_status, job_conclusion = "completed", "success"
            elif index == position:
                job_status, job_conclusion = "in_progress", None
            else:
                job_status, job_conclusion = "queued", None
            step_rows = []
            failed_yet = False
            for number, step in enumerate(steps, 1):
                if job_status == "queued":
                    row = ("queued", None)
                elif job_status == "in_progress":
                    row = ("in_progress", None) if number == 1 else ("queued", None)
                elif failing and failed_yet:
                    row = ("completed", "skipped")
                elif failing and step == run.workflow.failing_step:
                    failed_yet = True
                    row = ("completed", "failure")
                else:
                    row = ("completed", job_conclusion if job_conclusion != "failure"
                           else "success")
                step_rows.append({"name": step, "status": row[0], "conclusion": row[1],
                                  "number": number,
                                  "started_at": None if row[0] == "queued" else now_iso(run.created),
                                  "completed_at": now_iso() if row[0] == "completed" else None})
            jobs.append({
                "id": job_id, "run_id": run.id, "workflow_name": run.workflow.name,
                "head_branch": run.branch, "run_url": f"{api}/repos/{full}/actions/runs/{run.id}",
                "run_attempt": 1, "node_id": f"CR_{job_id}",
                "head_sha": hashlib.sha1(f"{full}{run.branch}".encode()).hexdigest(),
                "url": f"{api}/repos/{full}/actions/jobs/{job_id}",
                "html_url": f"{self.html_url}/{full}/actions/runs/{run.id}/job/{job_id}",
                "status": job_status, "conclusion": job_conclusion,
                "created_at": now_iso(run.created),
                "started_at": now_iso(run.created),
                "completed_at": now_iso() if job_status == "completed" else None,
                "name": name, "steps": step_rows,
                "check_run_url": f"{api}/repos/{full}/check-runs/{job_id}",
                "labels": ["ubuntu-latest"],
                "runner_id": None if job_status == "queued" else 7,
                "runner_name": None if job_status == "queued" else "GitHub Actions 7",
                "runner_group_id": None if job_status == "queued" else 0,
                "runner_group_name": None if job_status == "queued" else "GitHub Actions",
            })
        return jobs

    @staticmethod
    def repo_json(repo: Repository, api: str) -> dict[str, Any]:
        full = f"{repo.owner}/{repo.name}"
        base = f"{api}/repos/{full}"
        owner_url = f"{api}/users/{repo.owner}"
        owner = {
            "login": repo.owner, "id": repo.id + 7, "node_id": f"U_{repo.id + 7}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{repo.id + 7}",
            "gravatar_id": "", "url": owner_url, "html_url": f"https://github.com/{repo.owner}",
            "followers_url": f"{owner_url}/followers",
            "following_url": f"{owner_url}/following{{/other_user}}",
            "gists_url": f"{owner_url}/gists{{/gist_id}}",
            "starred_url": f"{owner_url}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{owner_url}/subscriptions",
            "organizations_url": f"{owner_url}/orgs", "repos_url": f"{owner_url}/repos",
            "events_url": f"{owner_url}/events{{/privacy}}",
            "received_events_url": f"{owner_url}/received_events", "type": "User",
            "site_admin": False,
        }
        templated = {
            "archive_url": "{archive_format}{/ref}", "assignees_url": "assignees{/user}",
            "blobs_url": "git/blobs{/sha}", "branches_url": "branches{/branch}",
            "collaborators_url": "collaborators{/collaborator}",
            "comments_url": "comments{/number}", "commits_url": "commits{/sha}",
            "compare_url": "compare/{base}...{head}", "contents_url": "contents/{+path}",
            "contributors_url": "contributors", "deployments_url": "deployments",
            "downloads_url": "downloads", "events_url": "events", "forks_url": "forks",
            "git_commits_url": "git/commits{/sha}", "git_refs_url": "git/refs{/sha}",
            "git_tags_url": "git/tags{/sha}", "hooks_url": "hooks",
            "issue_comment_url": "issues/comments{/number}",
            "issue_events_url": "issues/events{/number}", "issues_url": "issues{/number}",
            "keys_url": "keys{/key_id}", "labels_url": "labels{/name}",
            "languages_url": "languages", "merges_url": "merges",
            "milestones_url": "milestones{/number}",
            "notifications_url": "notifications{?since,all,participating}",
            "pulls_url": "pulls{/number}", "releases_url": "releases{/id}",
            "stargazers_url": "stargazers", "statuses_url": "statuses/{sha}",
            "subscribers_url": "subscribers", "subscription_url": "subscription",
            "tags_url": "tags", "teams_url": "teams", "trees_url": "git/trees{/sha}",
        }
        data: dict[str, Any] = {key: f"{base}/{tail}" for key, tail in templated.items()}
        data.update({
            "id": repo.id, "node_id": f"R_{repo.id}", "name": repo.name, "full_name": full,
            "owner": owner, "private": True, "html_url": f"https://github.com/{full}",
            "description": None, "fork": False, "url": base,
        })
        return data
