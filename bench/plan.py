"""Plan time and peak memory for big generated configs: 50 and 500 hosts x 40
services, every service on every host (2,000 and 20,000 service instances).

Each size runs in a fresh child process (``python -m bench.plan --child FILE``)
that loads and validates stagecraft.yml, renders every host
(stagecraft.render.host.render_fleet, as `deploy` does) with fake private IPs,
images and secrets, and builds the plan against an empty ledger
(stagecraft.plan.build_plan). Peak RSS comes from getrusage in the child.
When 500/50 misses its target, the 500-host run is repeated under cProfile and
the top of the profile goes into the section.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import machine, relative_paths, verdict, write_section

SIZES = (50, 500)
SERVICES = 40
ROUTED = 8  # services with a route (and a healthcheck)
SECRET = "DB_PASSWORD"
RATIO_TARGET = 12.0  # 10x the hosts may cost at most 12x the time
MEMORY_TARGET_MB = 300.0


def generate_config(hosts: int, services: int = SERVICES) -> str:
    """stagecraft.yml text: one environment `prod` on ``hosts`` hosts (cloud local)."""
    lines = ["version: 1", "project:", "  name: bigplan", "  registry:",
             "    server: registry.example.com", "    username: deploy",
             "    password: ${secret:REGISTRY_PASSWORD}", "providers:",
             "  cloud: { kind: local }", "  network: { kind: none }", "services:"]
    for s in range(services):
        lines.append(f"  svc{s:02d}:")
        lines.append(f"    image: registry.example.com/bigplan/svc{s:02d}:1.{s}.0")
        lines.append("    port: 8080")
        if s < ROUTED:
            lines.append("    healthcheck: { path: /up, interval: 5s, timeout: 3s, retries: 3 }")
            lines.append(f"    routes: [{{ host: \"svc{s:02d}.{{domain}}\" }}]")
        lines.append(f"    env: {{ SERVICE_INDEX: \"{s}\", LOG_LEVEL: info, FEATURE_X: \"on\" }}")
        lines.append(f"    secrets: [{SECRET}]")
        lines.append(f"    replicas: {1 + s % 3}")
        lines.append("    on: [app]")
    lines += ["environments:", "  prod:", "    domain: example.com", "    hosts:"]
    for h in range(hosts):
        roles = "edge, app" if h < 2 else "app"
        lines.append(f"      - {{ name: host-{h:04d}, roles: [{roles}] }}")
    lines.append("    rollout: { batch: 10, health_timeout: 60s, drain: 10s }")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ the child


def child(config_path: str, profile: bool) -> None:
    """Load, render, plan; print one JSON line of timings and peak RSS."""
    started = time.perf_counter()
    from stagecraft.config.loader import load_config
    from stagecraft.plan import build_plan
    from stagecraft.render.host import render_fleet
    from stagecraft.render.state import RenderInput, TlsSettings
    imported = time.perf_counter()
    rss_after_imports = _current_rss_mb()

    def work() -> dict[str, float]:
        t0 = time.perf_counter()
        env = load_config(Path(config_path)).environment("prod")
        t1 = time.perf_counter()
        inp = RenderInput(
            release_id="20260101T000000Z-bench",
            images={name: f"{svc.image}@sha256:{'ab' * 32}" for name, svc in env.services.items()},
            private_ips={h.name: f"10.{i // 250}.{i % 250}.10" for i, h in enumerate(env.hosts)},
            secrets={SECRET: "not-a-real-secret", "REGISTRY_PASSWORD": "x"},
            tls=TlsSettings(mode="acme", email="ops@example.com"))
        renders = render_fleet(env, inp)
        t2 = time.perf_counter()
        plan = build_plan({n: r.state for n, r in renders.items()},
                          {h.name: None for h in env.hosts}, release_id=inp.release_id)
        t3 = time.perf_counter()
        assert plan.has_changes  # an empty ledger: every service is added
        return {"load_s": t1 - t0, "render_s": t2 - t1, "plan_s": t3 - t2, "total_s": t3 - t0,
                "hosts": len(renders), "changes": plan.change_count}

    if profile:
        import cProfile
        import io
        import pstats
        profiler = cProfile.Profile()
        profiler.enable()
        figures = work()
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(18)
        stats.sort_stats("tottime").print_stats(12)
        figures["profile"] = _trim_profile(out.getvalue())
    else:
        figures = work()
    figures["import_s"] = imported - started
    figures["rss_after_imports_mb"] = rss_after_imports
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures))


def _current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _trim_profile(text: str) -> str:
    """pstats output without its preamble, paths relative to the repository."""
    keep = [line for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith(("Ordered by", "List reduced"))
            and "function calls" not in line]
    return relative_paths("\n".join(keep))


def _run_child(config: Path, profile: bool = False) -> dict:
    argv = [sys.executable, "-m", "bench.plan", "--child", str(config)]
    if profile:
        argv.append("--profile")
    result = subprocess.run(argv, capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    if result.returncode != 0:
        raise SystemExit(f"plan child failed for {config}:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------- the parent


def main() -> None:
    runs = int(os.environ.get("BENCH_PLAN_RUNS", "3"))
    results: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        configs = {}
        for hosts in SIZES:
            configs[hosts] = Path(tmp) / f"{hosts}" / "stagecraft.yml"
            configs[hosts].parent.mkdir()
            configs[hosts].write_text(generate_config(hosts))
        # Alternate sizes across runs; keep each size's fastest run (the least disturbed).
        samples: dict[int, list[dict]] = {h: [] for h in SIZES}
        for _ in range(runs):
            for hosts in SIZES:
                figures = _run_child(configs[hosts])
                samples[hosts].append(figures)
                print(f"{hosts} hosts: {figures['total_s']:.2f}s, peak {figures['peak_rss_mb']:.0f} MiB",
                      flush=True)
        for hosts in SIZES:
            results[hosts] = min(samples[hosts], key=lambda f: f["total_s"])
        small, big = results[SIZES[0]], results[SIZES[-1]]
        ratio = big["total_s"] / small["total_s"]
        peak = max(r["peak_rss_mb"] for r in samples[SIZES[-1]])
        profile = ""
        if ratio > RATIO_TARGET or peak >= MEMORY_TARGET_MB:
            profile = _run_child(configs[SIZES[-1]], profile=True)["profile"]

    lines = [
        "## Plan: load, render and plan of big configs",
        "",
        f"Machine: {machine()}.",
        "",
        f"Generated stagecraft.yml: N hosts (2 edge+app, the rest app, cloud `local`) x {SERVICES} "
        f"services on every host ({ROUTED} routed with healthchecks, each with env, a secret and "
        "1-3 replicas). A fresh child process per size loads and validates the config, renders "
        "every host (`render_fleet`) and builds the plan against an empty ledger. "
        f"Fastest of {runs} runs per size, sizes alternated; peak RSS is the child's maximum.",
        "",
        "| hosts | service instances | load+validate | render | plan | total | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for hosts in SIZES:
        r = results[hosts]
        lines.append(f"| {hosts} | {hosts * SERVICES} | {r['load_s']:.2f} s | {r['render_s']:.2f} s "
                     f"| {r['plan_s']:.3f} s | {r['total_s']:.2f} s | {r['peak_rss_mb']:.0f} MiB |")
    lines += [
        "",
        f"Imports take {big['import_s']:.2f} s and {big['rss_after_imports_mb']:.0f} MiB before any work "
        f"(not in the totals). Rendering is {big['render_s'] / big['total_s']:.0%} of the 500-host total.",
        "",
        "| figure | value | target | result |",
        "|---|---|---|---|",
        f"| time 500 hosts / 50 hosts | {ratio:.1f}x | <= {RATIO_TARGET:.0f}x | "
        f"{verdict(ratio, RATIO_TARGET)} |",
        f"| peak RSS at 500 hosts | {peak:.0f} MiB | < {MEMORY_TARGET_MB:.0f} MB | "
        f"{verdict(peak, MEMORY_TARGET_MB, unit=' MiB')} |",
    ]
    if profile:
        lines += ["", "Profile of the 500-host run (cProfile, top entries by cumulative and own time):",
                  "", "```", profile, "```"]
    body = "\n".join(lines)
    print(body)
    write_section("plan", body)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--child":
        child(sys.argv[2], "--profile" in sys.argv[3:])
    else:
        main()
