"""Requests through the edge before and during a rollout of the routed web service
on the 3-host fleet (h1 [edge, app], h2 and h3 [app]).

A load loop at a steady rate (bench/load.py, 50 req/s, one connection per
request, Host header = the route's domain) runs for a few seconds before the
deploy and through it; the figures of each window are compared.
"""

from __future__ import annotations

import os
import time

from bench.fleet import TUNING, Fleet, fleet
from bench.load import LoadLoop
from bench.phases import breakdown, newest_run
from bench.report import machine, verdict, write_section

RATE = float(os.environ.get("BENCH_RATE", "100"))
BEFORE_SECONDS = float(os.environ.get("BENCH_BEFORE_SECONDS", "10"))
P99_TARGET = 1.5
NOTE = ("The load loop shares the machine's cores with Ansible and the host containers, "
        "so p99 moves a lot between runs (1.5x to 2.7x seen); a rate under the target means "
        "the loop fell behind its schedule, never that it sent a burst.")


def measure(project: Fleet) -> dict:
    port, host_header = project.edge()
    loop = LoadLoop(port, host_header, rate=RATE, max_requests=int(RATE * 900))
    loop.start()
    try:
        started = time.monotonic()
        time.sleep(BEFORE_SECONDS)
        version = project.bump_version()
        deploy_start = time.monotonic()
        project.stagecraft("deploy", "--yes", "--skip-build")
        deploy_end = time.monotonic()
        time.sleep(1)  # a few answers after the deploy, in case the first came later
    finally:
        loop.stop()
    first = loop.first_answer(version, deploy_start)
    return {"before": loop.window(started, deploy_start), "during": loop.window(deploy_start, deploy_end),
            "deploy_s": deploy_end - deploy_start, "run": newest_run(project.dir),
            "first_new_s": None if first is None else first - deploy_start}


def section(figures: dict, project_name: str) -> str:
    before, during = figures["before"], figures["during"]
    ratio = during["p99_ms"] / before["p99_ms"] if before["p99_ms"] else float("inf")

    def row(name: str, w: dict) -> str:
        return (f"| {name} | {w['seconds']:.1f} s | {w['requests']} | {w['rate']:.0f}/s | {w['failed']} "
                f"| {w['p50_ms']:.1f} ms | {w['p99_ms']:.1f} ms | {w['max_ms']:.0f} ms |")

    lines = [
        "## Zero downtime: requests during a rollout (3 hosts)",
        "",
        f"Machine: {machine()}.",
        "",
        f"Fleet `{project_name}` (local cloud): h1 [edge, app], h2 [app], h3 [app]; {TUNING}. "
        f"A load loop at {RATE:.0f} req/s (one new connection per request, `GET /version` with the "
        "route's Host header on the edge's published port) runs "
        f"{BEFORE_SECONDS:.0f} s before `deploy --yes --skip-build` of a changed web service "
        f"(all 3 hosts roll at once) and through it ({figures['deploy_s']:.0f} s).",
        "",
        "| window | length | requests | rate | failed | p50 | p99 | max |",
        "|---|---|---|---|---|---|---|---|",
        row("before", before),
        row("during the rollout", during),
        "",
        "| figure | value | target | result |",
        "|---|---|---|---|",
        f"| failed requests during the rollout | {during['failed']} | 0 | "
        f"{'met' if during['failed'] == 0 else 'missed by ' + str(during['failed'])} |",
        f"| p99 during / p99 before | {ratio:.2f}x | <= {P99_TARGET:g}x | {verdict(ratio, P99_TARGET)} |",
        "| time to first byte of the new version after `deploy` starts | "
        + ("never answered" if figures["first_new_s"] is None else f"{figures['first_new_s']:.1f} s")
        + f" (deploy took {figures['deploy_s']:.1f} s) | (recorded) | - |",
    ]
    lines += ["", NOTE]
    if during["failed"]:
        lines += ["", f"First failures: {'; '.join(during['first_failures'])}."]
    if during["failed"] or ratio > P99_TARGET:
        lines += ["", "The rollout's run:", "", breakdown(figures["run"])]
    return "\n".join(lines)


def main(shared: Fleet | None = None) -> None:
    with fleet(3, "bz", shared=shared) as project:
        figures = measure(project)
        body = section(figures, project.name)
    print(body)
    write_section("zero_downtime", body)


if __name__ == "__main__":
    main()
