"""Start-up time of the CLI: `stagecraft --version` and `stagecraft validate`,
as ratios to `python -c 'import click'` (the floor for any click program),
with peak memory (max RSS) of each."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.report import REPO, machine, verdict, write_section

RUNS = int(os.environ.get("BENCH_RUNS", "15"))
VERSION_TARGET = 2.0


def _measure(argv: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and max RSS (MiB) of one run."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(argv)}")
    return elapsed, usage.ru_maxrss / 1024


def _series(argv: list[str], cwd: Path) -> tuple[float, float]:
    _measure(argv, cwd)  # warm the page cache and .pyc files
    times, rss = [], []
    for _ in range(RUNS):
        seconds, mib = _measure(argv, cwd)
        times.append(seconds)
        rss.append(mib)
    return statistics.median(times), max(rss)


def main() -> None:
    python = sys.executable
    stagecraft = str(Path(python).with_name("stagecraft"))
    example = REPO / "examples" / "shop"
    cases = [
        ("baseline: python -c 'import click'", [python, "-c", "import click"]),
        ("stagecraft --version", [stagecraft, "--version"]),
        ("stagecraft validate (examples/shop, 3 environments)", [stagecraft, "validate"]),
    ]
    # Interleave nothing: each series runs back to back, baseline first and last,
    # and the baseline used is the mean of the two, to absorb drift.
    results = {}
    base_first = _series(cases[0][1], example)
    for label, argv in cases[1:]:
        results[label] = _series(argv, example)
    base_last = _series(cases[0][1], example)
    base = ((base_first[0] + base_last[0]) / 2, max(base_first[1], base_last[1]))

    lines = [
        "## CLI start-up",
        "",
        f"Machine: {machine()}. Median of {RUNS} runs after one warm-up.",
        "",
        "| command | median | ratio to baseline | max RSS |",
        "|---|---|---|---|",
        f"| {cases[0][0]} | {base[0] * 1000:.0f} ms | 1.00 | {base[1]:.0f} MiB |",
    ]
    for label, (seconds, mib) in results.items():
        lines.append(f"| {label} | {seconds * 1000:.0f} ms | {seconds / base[0]:.2f} | {mib:.0f} MiB |")
    version_ratio = results["stagecraft --version"][0] / base[0]
    lines += ["", "| figure | value | target | result |", "|---|---|---|---|",
              f"| `stagecraft --version` / `import click` | {version_ratio:.2f}x | <= {VERSION_TARGET:.0f}x "
              f"| {verdict(version_ratio, VERSION_TARGET)} |"]
    lines += ["", "`--version` imports no subcommand; `validate` imports pydantic, the models "
              "and PyYAML, and resolves every environment."]
    body = "\n".join(lines)
    print(body)
    write_section("startup", body)


if __name__ == "__main__":
    main()
