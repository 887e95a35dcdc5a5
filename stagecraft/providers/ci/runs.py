"""`stagecraft ci run`: start a workflow on GitHub Actions and follow its run.

The run is found from the dispatch itself when GitHub returns its id (the API's
``return_run_details``), else as the newest workflow_dispatch run of that workflow on
that branch created since the dispatch. Following polls the run and its jobs, with a
delay that grows while nothing changes and starts over when something does, and
reports each change of the run or of a job as an event (a dict).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from stagecraft.errors import ProviderError, RunFailed, UsageError

Event = dict[str, Any]


def parse_inputs(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """--input key=value pairs as the dispatch's inputs."""
    inputs: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--input {pair!r} is not key=value",
                             hint="write --input environment=production")
        inputs[key.strip()] = value
    return inputs


def _time(text: str | None) -> float:
    if not text:
        return 0.0
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def start_run(client, repo, workflow: str, ref: str, inputs: Mapping[str, str], *,
              clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
              wait: float = 60.0) -> dict:
    """Dispatch ``workflow`` on ``ref``: the run it started ({"id", "html_url"} at least)."""
    dispatched_at = clock()
    started = client.dispatch(repo, workflow, ref, inputs)
    if started is not None:
        return {"id": started["workflow_run_id"], "html_url": started["html_url"]}
    # GitHub said 204 without the run: it appears in the list within seconds. Runs
    # created a little before the dispatch count too (clocks differ).
    deadline = clock() + wait
    delay = 1.0
    while True:
        for run in client.runs(repo, workflow, branch=ref, event="workflow_dispatch", limit=10):
            if _time(run.get("created_at")) >= dispatched_at - 30:
                return run
        if clock() >= deadline:
            raise ProviderError(
                f"workflow {workflow} was started on {ref}, but its run did not show up "
                f"within {wait:.0f}s", hint=f"look for it on GitHub: https://github.com/{repo}/actions")
        sleep(delay)
        delay = min(delay * 2, 10.0)


@dataclass
class Follower:
    """Polls one run until it completes, reporting every change as an event."""

    client: Any
    repo: Any
    run_id: int
    interval: float = 5.0
    max_interval: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    on_event: Callable[[Event], None] = lambda event: None
    run: dict = field(default_factory=dict)
    jobs: list[dict] = field(default_factory=list)
    _seen: dict[str, tuple] = field(default_factory=dict)

    def poll(self) -> bool:
        """One look at the run and its jobs; True when something changed."""
        self.run = self.client.run(self.repo, self.run_id)
        self.jobs = self.client.jobs(self.repo, self.run_id)
        changed = False
        state = (self.run.get("status"), self.run.get("conclusion"))
        run_event = None
        if self._seen.get("run") != state:
            self._seen["run"] = state
            changed = True
            run_event = {"event": "run", "run_id": self.run_id, "status": state[0],
                         "conclusion": state[1], "html_url": self.run.get("html_url")}
            if state[0] != "completed":  # a run's end is told after its jobs'
                self.on_event(run_event)
                run_event = None
        for job in self.jobs:
            key = f"job:{job['id']}"
            state = (job.get("status"), job.get("conclusion"))
            if self._seen.get(key) != state:
                self._seen[key] = state
                changed = True
                self.on_event({"event": "job", "run_id": self.run_id, "job": job["name"],
                               "status": state[0], "conclusion": state[1]})
        if run_event is not None:
            self.on_event(run_event)
        return changed

    def follow(self) -> dict:
        """Poll until the run completes; the run as GitHub last showed it."""
        delay = self.interval
        while True:
            changed = self.poll()
            if self.run.get("status") == "completed":
                return self.run
            delay = self.interval if changed else min(delay * 1.5, self.max_interval)
            self.sleep(delay)


def failed_parts(jobs: list[dict]) -> list[str]:
    """``job (step)`` for each job that did not succeed (skipped ones are fine)."""
    parts = []
    for job in jobs:
        if job.get("conclusion") in (None, "success", "skipped", "neutral"):
            continue
        steps = [s["name"] for s in job.get("steps") or []
                 if s.get("conclusion") not in (None, "success", "skipped", "neutral")]
        parts.append(f"{job['name']} ({', '.join(steps)})" if steps
                     else f"{job['name']} ({job.get('conclusion')})")
    return parts


def check_conclusion(run: dict, jobs: list[dict], workflow: str) -> None:
    """RunFailed unless the run concluded success."""
    conclusion = run.get("conclusion")
    if conclusion == "success":
        return
    failed = failed_parts(jobs)
    detail = f": failed {', '.join(failed)}" if failed else ""
    raise RunFailed(f"run {run['id']} of {workflow} concluded {conclusion}{detail}",
                    hint=f"see the run's logs: {run.get('html_url')}")
