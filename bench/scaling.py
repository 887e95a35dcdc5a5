"""Rollout time of one changed service on 1 and 20 hosts (BENCH_SCALING_SIZES, e.g.
"1,3,6", changes the sizes).

The fleets (h1 [edge, app], the others [app]; the shop's routed web service on
every host) are created at the same time, since bootstrap is most of the cost,
and removed at the end even on error. Then `deploy --yes --skip-build` of a
changed env value of web is timed on each, sizes alternating in order across
rounds; medians, and the ratio of the biggest fleet to 1 host.
"""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from bench.fleet import TUNING, fleet
from bench.phases import breakdown, newest_run
from bench.report import machine, verdict, write_section

SIZES = tuple(int(n) for n in os.environ.get("BENCH_SCALING_SIZES", "1,20").split(","))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
RATIO_TARGET = 2.0


def main() -> None:
    with ExitStack() as stack:
        # Enter the fleets in parallel; ExitStack removes each one that was made.
        with ThreadPoolExecutor(max_workers=len(SIZES)) as pool:
            futures = {n: pool.submit(lambda n=n: _enter(stack, n)) for n in SIZES}
            fleets = {n: f.result() for n, f in futures.items()}
        samples: dict[int, list[float]] = {n: [] for n in SIZES}
        for i in range(ROUNDS):
            for n in (SIZES if i % 2 == 0 else tuple(reversed(SIZES))):
                fleets[n].bump_version()
                samples[n].append(fleets[n].timed("deploy", "--yes", "--skip-build"))
            print(f"round {i + 1}: " + ", ".join(f"{n} hosts {s[-1]:.1f}s" for n, s in samples.items()),
                  flush=True)
        medians = {n: statistics.median(s) for n, s in samples.items()}
        ratio = medians[SIZES[-1]] / medians[SIZES[0]]
        biggest = breakdown(newest_run(fleets[SIZES[-1]].dir)) if ratio > RATIO_TARGET else ""
        names = ", ".join(f"`{fleets[n].name}` ({n})" for n in SIZES)

    lines = [
        f"## Scaling: one-service rollout on {', '.join(map(str, SIZES[:-1]))} and {SIZES[-1]} hosts",
        "",
        f"Machine: {machine()}.",
        "",
        f"Fleets {names} (local cloud), made at the same time and removed after: h1 [edge, app], "
        f"the others [app]; the shop's web service on every host; {TUNING}. Each round times "
        "`deploy --yes --skip-build` after one env value of web changed, on every fleet in turn "
        f"(order reversed every other round); medians of {ROUNDS} rounds.",
        "",
        "| hosts | median | runs | ratio to 1 host |",
        "|---|---|---|---|",
    ]
    for n in SIZES:
        lines.append(f"| {n} | {medians[n]:.1f} s | {', '.join(f'{x:.1f}' for x in samples[n])} "
                     f"| {medians[n] / medians[SIZES[0]]:.2f}x |")
    lines += [
        "",
        "| figure | value | target | result |",
        "|---|---|---|---|",
        f"| {SIZES[-1]} hosts / {SIZES[0]} host | {ratio:.2f}x | <= {RATIO_TARGET:.0f}x | {verdict(ratio, RATIO_TARGET)} |",
    ]
    if biggest:
        lines += ["", f"Where the {SIZES[-1]}-host rollout's time goes (its last run; all hosts in one batch, "
                  "so the per-host times overlap):",
                  "", biggest]
    body = "\n".join(lines)
    print(body)
    write_section("scaling", body)


def _enter(stack: ExitStack, hosts: int):
    started = time.perf_counter()
    made = stack.enter_context(fleet(hosts, f"b{hosts}s"))
    print(f"fleet of {hosts} ready in {time.perf_counter() - started:.0f}s", flush=True)
    return made


if __name__ == "__main__":
    main()
