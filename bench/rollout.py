"""Deploy time against its floor on a 3-host local fleet (h1 [edge, app], h2 and
h3 [app]; the shop's routed web service, 2 replicas, on all three).

(a) no-op: `stagecraft deploy --yes --skip-build` with nothing changed, against
    `docker compose up -d --wait` of the same compose files with nothing changed;
(b) one service: one env value of web changed, then `deploy --yes --skip-build`,
    against `up -d --wait` of the compose file of the other release (A -> B, B -> A).

The floor (bench/floor.py) runs one SSH command per host, all hosts in parallel,
under its own compose project without Traefik labels. Measurements alternate
between stagecraft and the floor (and which goes first) to cancel drift; the
figures are medians and ratios to the floor measured in the same run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.fleet import TUNING, Fleet, fleet
from bench.floor import Floor
from bench.phases import breakdown, ledger_phases, newest_run
from bench.report import machine, relative_paths, verdict, write_section

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
# What the compose_rollout module does per host (module_utils/_rollout.py), to read
# the per-host seconds below against.
ROLL_STEPS = (
    "Per host, the rollout module: scales web up beside the old containers (`up --no-recreate "
    "--scale`), polls every 0.2 s until the new ones are healthy (start period 1s + 1s interval), "
    "writes them as web's servers into Traefik's file provider and polls Traefik's API until it "
    "serves exactly them, sleeps `drain` (1 s) for requests in flight, then stops and removes the "
    "old ones.")
NOOP_TARGET = 1.3
# One-service rollout: against the zero-downtime floor, and against `up -d --wait`.
ONE_SERVICE_ZD_TARGET = 1.3
ONE_SERVICE_TARGET = 2.5


def measure(project: Fleet, rounds: int = ROUNDS) -> dict:
    floor = Floor(project)
    samples: dict[str, list[float]] = {"noop": [], "noop_floor": [], "one": [], "one_floor": [],
                                       "one_zd_floor": []}
    try:
        # Untimed set-up: floor release A is the current one; one stagecraft rollout
        # makes release B, whose files become floor release B.
        floor.prepare("a")
        floor.up("a")
        project.bump_version()
        project.stagecraft("deploy", "--yes", "--skip-build")
        floor.prepare("b")
        floor.roll("a")
        floor_state = roll_state = "a"
        noop_output = ""
        one_span = (0.0, 0.0)
        for i in range(rounds):
            stagecraft_first = i % 2 == 0
            # (a) no-op
            for who in (("sc", "floor") if stagecraft_first else ("floor", "sc")):
                if who == "sc":
                    started = time.perf_counter()
                    result = project.stagecraft("deploy", "--yes", "--skip-build")
                    samples["noop"].append(time.perf_counter() - started)
                    said = (result.stderr + result.stdout).strip().splitlines()
                    noop_output = said[-1] if said else ""
                else:
                    samples["noop_floor"].append(floor.up(floor_state))
            # (b) one service changed
            order = ("sc", "floor", "zd") if stagecraft_first else ("zd", "floor", "sc")
            for who in order:
                if who == "sc":
                    project.bump_version()
                    one_started = time.time()
                    samples["one"].append(project.timed("deploy", "--yes", "--skip-build"))
                    one_span = (one_started, time.time())
                elif who == "floor":
                    floor_state = "b" if floor_state == "a" else "a"
                    samples["one_floor"].append(floor.up(floor_state))
                else:
                    roll_state = "b" if roll_state == "a" else "a"
                    samples["one_zd_floor"].append(floor.roll(roll_state))
            print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in samples.items()),
                  flush=True)
    finally:
        floor.down()
    medians = {k: statistics.median(v) for k, v in samples.items()}
    releases = project.releases()
    last_rollout = next(r["id"] for r in reversed(releases) if r.get("result") == "succeeded")
    return {"samples": samples, "medians": medians, "noop_output": noop_output,
            "rollout_breakdown": breakdown(newest_run(project.dir), started=one_span[0],
                                           ended=one_span[1]),
            "rollout_ledger": ledger_phases(releases, last_rollout)}


def profile_noop(project: Fleet, top: int = 14) -> str:
    """cProfile of one no-op deploy (controller side), top entries by cumulative time."""
    import pstats
    import io

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "noop.prof"
        stagecraft_bin = Path(sys.executable).with_name("stagecraft")
        subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), str(stagecraft_bin),
                        "deploy", "--yes", "--skip-build"], cwd=project.dir, capture_output=True,
                       env={**os.environ, "STAGECRAFT_ENV": "local"}, timeout=600)
        if not out.exists():
            return "(profile failed)"
        text = io.StringIO()
        pstats.Stats(str(out), stream=text).sort_stats("cumulative").print_stats(
            r"stagecraft/(?!cli/main|cli/context)|subprocess|\(_find_and_load\)", top)
    lines = [line for line in text.getvalue().splitlines()
             if line.strip() and "function calls" not in line and not line.lstrip().startswith(
                 ("Ordered by", "List reduced"))]
    # pstats names files by absolute path, and its first line names the temporary
    # .prof file: written relative to the repository, and only the file's name.
    return relative_paths("\n".join(lines))


def section(figures: dict, rounds: int, project_name: str, noop_profile: str) -> str:
    m = figures["medians"]
    noop_ratio = m["noop"] / m["noop_floor"]
    one_ratio = m["one"] / m["one_floor"]
    zd_ratio = m["one"] / m["one_zd_floor"]

    def series(name: str) -> str:
        return ", ".join(f"{x:.1f}" for x in figures["samples"][name])

    lines = [
        "## Rollout: deploy against its floor (3 hosts)",
        "",
        f"Machine: {machine()}.",
        "",
        f"Fleet `{project_name}` (local cloud): h1 [edge, app], h2 [app], h3 [app]; the shop's "
        f"web service (examples/shop/app) routed through the edge; {TUNING}. Floor: the hosts' "
        "own compose files applied by `docker compose up -d --wait`, one SSH command per host (stagecraft's "
        "SSH options and control sockets), all hosts in parallel, under compose project "
        "`<project>-local-floor` with the Traefik labels stripped (it never takes traffic). "
        f"{rounds} rounds; stagecraft and the floor alternate (and which goes first); medians.",
        "",
        "| case | stagecraft | floor | ratio | target | result |",
        "|---|---|---|---|---|---|",
        f"| no-op redeploy (`deploy --yes --skip-build`, nothing changed), against `up -d --wait` "
        f"| {m['noop']:.1f} s | {m['noop_floor']:.1f} s | {noop_ratio:.2f}x | <= {NOOP_TARGET}x "
        f"| {verdict(noop_ratio, NOOP_TARGET)} |",
        f"| one service (web's APP_VERSION changed), against the zero-downtime floor "
        f"| {m['one']:.1f} s | {m['one_zd_floor']:.1f} s | {zd_ratio:.2f}x "
        f"| <= {ONE_SERVICE_ZD_TARGET}x | {verdict(zd_ratio, ONE_SERVICE_ZD_TARGET)} |",
        f"| one service, against `up -d --wait` | {m['one']:.1f} s | {m['one_floor']:.1f} s "
        f"| {one_ratio:.2f}x | <= {ONE_SERVICE_TARGET}x | {verdict(one_ratio, ONE_SERVICE_TARGET)} |",
        "",
        f"All runs (s): no-op {series('noop')}; its floor {series('noop_floor')}; one service "
        f"{series('one')}; its zero-downtime floor {series('one_zd_floor')}; its `up -d --wait` "
        f"floor {series('one_floor')}.",
        f"The no-op deploy said: \"{figures['noop_output']}\".",
    ]
    if one_ratio > ONE_SERVICE_TARGET or zd_ratio > ONE_SERVICE_ZD_TARGET:
        lines += ["", "Where the one-service rollout's time goes (the last one measured). "
                  "The floor does not wait for health or drain; a rollout starts the new containers "
                  "next to the old ones on every host at once (one batch), waits for their health, "
                  "then drains the old ones.",
                  "", ROLL_STEPS, "", figures["rollout_ledger"], "", figures["rollout_breakdown"]]
    if noop_ratio > NOOP_TARGET and noop_profile:
        lines += ["", "Profile of one no-op deploy (cProfile of the CLI process, by cumulative time; "
                  "time in `subprocess`/`select` is waiting for SSH or Ansible):", "", "```",
                  noop_profile, "```"]
    return "\n".join(lines)


def main(shared: Fleet | None = None) -> None:
    with fleet(3, "br", shared=shared) as project:
        figures = measure(project)
        m = figures["medians"]
        noop_profile = profile_noop(project) if m["noop"] / m["noop_floor"] > NOOP_TARGET else ""
        body = section(figures, ROUNDS, project.name, noop_profile)
    print(body)
    write_section("rollout", body)


if __name__ == "__main__":
    main()
