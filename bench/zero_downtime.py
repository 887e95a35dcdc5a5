"""Requests through the edge before and during a rollout of the routed web service
on the 3-host fleet (h1 [edge, app], h2 and h3 [app]).

A load loop at a steady rate (bench/load.py, 100 req/s, one connection per
request, Host header = the route's domain) runs for a few seconds before the
deploy and through it; the figures of each window are compared.

The baseline, in the same run and under the same load: the zero-downtime floor
(bench/floor.py ``roll``) does the same container work on every host (6 new
containers started, health, a Traefik switch, drain, stop) with no Ansible, under
its own compose project that takes no traffic. Its window says how much of the
p99 rise is that work on this machine's shared cores rather than stagecraft's.
"""

from __future__ import annotations

import os
import time

from bench.fleet import TUNING, Fleet, fleet
from bench.floor import Floor
from bench.load import LoadLoop
from bench.phases import breakdown, newest_run
from bench.report import machine, verdict, write_section

RATE = float(os.environ.get("BENCH_RATE", "100"))
BEFORE_SECONDS = float(os.environ.get("BENCH_BEFORE_SECONDS", "10"))
P99_TARGET = 1.5
SETTLE_SECONDS = 5  # after the deploy's last containers stopped, before the floor's roll
NOTE = ("Everything here shares the machine's 2 cores: the load loop, the controller's "
        "Ansible, the edge's Traefik and the new containers starting on every host. On real "
        "machines each has its own. The loop runs at nice -10 to stand for clients elsewhere; "
        "the edge and the app containers do not, so p99 during the rollout includes their waits "
        "for a core while 6 new containers start. The floor's row shows that part alone: the "
        "same container work with no Ansible. A rate under the target means the loop fell "
        "behind its schedule (each request waits for the one before), never that it sent a burst.")
NOTE_NOT_PRIORITISED = ("The load loop could not raise its priority (not root), so it also "
                        "waited for a core like everything else.")


def measure(project: Fleet) -> dict:
    port, host_header = project.edge()
    floor = Floor(project)
    # Untimed, before any load: the floor's release A (the current one) running
    # beside stagecraft's containers, as its roll needs old containers to replace.
    floor.prepare("a")
    floor.roll("a")
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
        floor.prepare("b")  # the release stagecraft just made, for the floor (untimed)
        time.sleep(SETTLE_SECONDS)
        floor_start = time.monotonic()
        floor.roll("b")
        floor_end = time.monotonic()
    finally:
        loop.stop()
        floor.down()
    first = loop.first_answer(version, deploy_start)
    return {"before": loop.window(started, deploy_start), "during": loop.window(deploy_start, deploy_end),
            "floor": loop.window(floor_start, floor_end),
            "prioritised": loop.priority_applied,
            "deploy_s": deploy_end - deploy_start, "run": newest_run(project.dir),
            "first_new_s": None if first is None else first - deploy_start}


def _p99_ratio(window: dict, baseline: dict) -> float:
    return window["p99_ms"] / baseline["p99_ms"] if baseline["p99_ms"] else float("inf")


def section(figures: dict, project_name: str) -> str:
    before, during, floor = figures["before"], figures["during"], figures["floor"]
    ratio, floor_ratio = _p99_ratio(during, before), _p99_ratio(floor, before)

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
        f"(all 3 hosts roll at once) and through it ({figures['deploy_s']:.0f} s). "
        f"Then, {SETTLE_SECONDS} s after the deploy, under the same load: the zero-downtime floor "
        "(bench/floor.py `roll`) does the same container work on every host with no Ansible, "
        "under a compose project of its own that takes no traffic: the baseline of this run.",
        "",
        "| window | length | requests | rate | failed | p50 | p99 | max |",
        "|---|---|---|---|---|---|---|---|",
        row("before", before),
        row("during the rollout", during),
        row("during the zero-downtime floor's roll", floor),
        "",
        "| figure | value | target | result |",
        "|---|---|---|---|",
        f"| failed requests during the rollout | {during['failed']} | 0 | "
        f"{'met' if during['failed'] == 0 else 'missed by ' + str(during['failed'])} |",
        f"| p99 during / p99 before | {ratio:.2f}x | <= {P99_TARGET:g}x | {verdict(ratio, P99_TARGET)} |",
        f"| baseline: p99 during the floor's roll / p99 before | {floor_ratio:.2f}x | (recorded) | - |",
        f"| p99 during the rollout / p99 during the floor's roll | "
        f"{_p99_ratio(during, floor):.2f}x | (recorded) | - |",
        "| time to first byte of the new version after `deploy` starts | "
        + ("never answered" if figures["first_new_s"] is None else f"{figures['first_new_s']:.1f} s")
        + f" (deploy took {figures['deploy_s']:.1f} s) | (recorded) | - |",
    ]
    lines += ["", NOTE]
    if not figures.get("prioritised", False):
        lines += ["", NOTE_NOT_PRIORITISED]
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
