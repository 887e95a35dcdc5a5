"""`stagecraft ci run`, run as a process against the stand-in of GitHub's API (every
exchange checked against GitHub's OpenAPI description), and the core it calls
(stagecraft/providers/ci/runs.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stagecraft.errors import RunFailed, UsageError
from stagecraft.providers.ci.runs import Follower, failed_parts, parse_inputs, start_run
from stagecraft.providers.ci.github_api import GitHubClient, Repo
from stagecraft_twins.github import WorkflowSpec
from tests.github_stand_in import REPO, TOKEN, github  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[2]
TWO_JOBS = (("build", ("Set up job", "Build")), ("deploy", ("Set up job", "Deploy", "Notify")))


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for args in (["init", "-q", "-b", "main"],
                 ["remote", "add", "origin", "https://github.com/acme/shop.git"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True)
    return tmp_path


def workflow(github, **kwargs) -> None:
    github.state.repo("acme", "shop").workflows.clear()
    github.state.add_repo(REPO, environments=("local",), branches=("main", "release"),
                          workflows=(WorkflowSpec("stagecraft-deploy.yml", jobs=TWO_JOBS,
                                                  **kwargs),))


def env_for(github) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STAGECRAFT_", "GITHUB_", "GH_"))}
    env.update(PYTHONPATH=str(ROOT), GITHUB_API_URL=github.url, GITHUB_TOKEN=TOKEN)
    return env


def ci_run(checkout: Path, github, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stagecraft", "ci", "run", "--interval", "10ms",
                           *args], cwd=checkout, env=env_for(github), capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)


def test_a_successful_run_is_followed_to_the_end(checkout: Path, github) -> None:
    workflow(github)
    done = ci_run(checkout, github, "--input", "environment=local")
    assert done.returncode == 0, done.stderr
    run_id = github.state.repo("acme", "shop").runs[0].id
    url = f"https://github.com/acme/shop/actions/runs/{run_id}"
    assert done.stdout == (
        f"started stagecraft-deploy.yml on main in acme/shop: run {run_id}\n  {url}\n"
        f"run {run_id}: queued\n"
        "  job build: queued\n"
        "  job deploy: queued\n"
        f"run {run_id}: in_progress\n"
        "  job build: in_progress\n"
        "  job build: completed (success)\n"
        "  job deploy: in_progress\n"
        "  job deploy: completed (success)\n"
        f"run {run_id}: completed (success)\n"
        f"run {run_id} succeeded\n")
    dispatch = next(x for x in github.exchanges if x["method"] == "POST")
    assert dispatch["request_body"] == {"ref": "main", "return_run_details": True,
                                        "inputs": {"environment": "local"}}


def test_a_failed_run_exits_6_naming_job_step_and_url(checkout: Path, github) -> None:
    workflow(github, conclusion="failure")
    done = ci_run(checkout, github, "--ref", "release")
    assert done.returncode == 6
    run = github.state.repo("acme", "shop").runs[0]
    assert run.branch == "release"
    assert done.stderr.endswith(
        f"error: run {run.id} of stagecraft-deploy.yml concluded failure: failed deploy "
        f"(Deploy)\nhint: see the run's logs: "
        f"https://github.com/acme/shop/actions/runs/{run.id}\n")


def test_json_prints_one_object_per_change(checkout: Path, github) -> None:
    workflow(github)
    done = ci_run(checkout, github, "--output", "json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["event"] for e in events][:2] == ["started", "run"]
    assert events[-1]["event"] == "done" and events[-1]["conclusion"] == "success"
    jobs = [(e["job"], e["status"]) for e in events if e["event"] == "job"]
    assert ("deploy", "completed") in jobs and ("build", "in_progress") in jobs


def test_no_follow_starts_the_run_and_returns(checkout: Path, github) -> None:
    workflow(github)
    done = ci_run(checkout, github, "--no-follow")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("started stagecraft-deploy.yml on main in acme/shop: run ")
    assert [x["method"] for x in github.exchanges] == ["POST"]


def test_dry_run_says_what_it_would_start_and_asks_github_nothing(checkout: Path,
                                                                 github) -> None:
    workflow(github)
    done = ci_run(checkout, github, "--dry-run", "--input", "environment=local")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("dry run: would start stagecraft-deploy.yml on main in acme/shop "
                           "with inputs environment\n")
    assert github.exchanges == []


def test_an_unexpected_input_is_github_s_422(checkout: Path, github) -> None:
    workflow(github)
    done = ci_run(checkout, github, "--input", "colour=blue")
    assert done.returncode == 8
    assert '(422: Unexpected inputs provided: ["colour"])' in done.stderr


def test_ctrl_c_stops_following_and_says_the_run_goes_on(checkout: Path, github) -> None:
    workflow(github)
    process = subprocess.Popen(
        [sys.executable, "-m", "stagecraft", "ci", "run", "--interval", "30s"], cwd=checkout,
        env=env_for(github), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL)
    try:
        for line in process.stdout:
            if line.startswith("run ") and line.rstrip().endswith("queued"):
                break
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    run_id = github.state.repo("acme", "shop").runs[0].id
    assert process.returncode == 130
    assert (f"error: stopped following run {run_id}; the run goes on: "
            f"https://github.com/acme/shop/actions/runs/{run_id}\n") in err


def test_without_run_details_the_run_is_found_in_the_list(github) -> None:
    workflow(github)
    github.run_details = False
    client = GitHubClient(token=TOKEN, base_url=github.url)
    run = start_run(client, Repo("acme", "shop"), "stagecraft-deploy.yml", "main", {})
    assert run["id"] == github.state.repo("acme", "shop").runs[0].id
    listed = [x for x in github.exchanges if x["path"].endswith("/runs")]
    assert listed[0]["query"]["event"] == ["workflow_dispatch"]
    assert listed[0]["query"]["branch"] == ["main"]


def test_the_follower_backs_off_while_nothing_changes() -> None:
    class Fake:
        def __init__(self) -> None:
            self.reads = 0

        def run(self, repo, run_id):
            self.reads += 1
            return {"id": 1, "status": "completed" if self.reads >= 5 else "in_progress",
                    "conclusion": "success" if self.reads >= 5 else None}

        def jobs(self, repo, run_id):
            return []

    slept: list[float] = []
    Follower(Fake(), None, 1, interval=2, max_interval=5, sleep=slept.append).follow()
    assert slept == [2, 3.0, 4.5, 5]


def test_failed_parts_name_job_and_failed_steps() -> None:
    jobs = [{"name": "build", "conclusion": "success", "steps": []},
            {"name": "deploy", "conclusion": "failure",
             "steps": [{"name": "Deploy", "conclusion": "failure"},
                       {"name": "Notify", "conclusion": "skipped"}]},
            {"name": "smoke", "conclusion": "timed_out", "steps": []}]
    assert failed_parts(jobs) == ["deploy (Deploy)", "smoke (timed_out)"]


def test_inputs_must_be_key_value() -> None:
    assert parse_inputs(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(UsageError):
        parse_inputs(["novalue"])


def test_run_failed_is_exit_6() -> None:
    assert int(RunFailed("x").exit_code) == 6
