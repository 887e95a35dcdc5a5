"""Writing benchmark results into docs/benchmarks.md, one section per benchmark."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "docs" / "benchmarks.md"

_HEADER = """# Benchmarks

Produced by `make bench` or `.venv/bin/python -m bench [NAME ...]` (no name: all of
them; `rollout` and `zero_downtime` then share one fleet). Each benchmark rewrites
its own section below, with the machine it ran on (cores, RAM, kernel, Docker
Engine, commit) and the date. Figures are ratios to a baseline measured in the same
run, because these machines are noisy; absolute times are given for context only.
A missed target is reported here, never failed: nothing asserts a time.

| command | what it measures | targets |
|---|---|---|
| `.venv/bin/python -m bench startup` | `stagecraft --version` against `python -c 'import click'` | <= 2x |
| `.venv/bin/python -m bench plan` | load + validate + render + plan of generated 50- and 500-host x 40-service configs, in a fresh process each; peak RSS | 500/50 <= 12x; < 300 MB |
| `.venv/bin/python -m bench rollout` | on a 3-host local fleet: no-op redeploy and one-service rollout against `docker compose up -d` of the same files over SSH | no-op <= 1.3x; one service <= 1.5x |
| `.venv/bin/python -m bench zero_downtime` | 50 req/s through the edge before and during a rollout on 3 hosts | 0 failed; p99 during/before <= 2x |
| `.venv/bin/python -m bench scaling` | one-service rollout on 1, 3 and 6 hosts | 6 hosts / 1 host <= 2x |

Fleet benchmarks make their own local fleets under unique project names (`b...`)
and remove them at the end, also on error (`BENCH_KEEP_FLEET=1` keeps them for
debugging). `BENCH_ROUNDS` (default 3) sets the repetitions of rollout and scaling.
"""


#: An absolute path: a "/" that starts a word (no letter, digit, dot, slash, tilde, dash
#: or ">" just before it, so "500/50", "req/s" and "<venv>/lib" are not paths). It ends
#: at white space or at a character that follows a path in pstats or Markdown output.
_ABSOLUTE_PATH = re.compile(r"(?<![\w./~>-])/[^\s:()'\"`<>,;\[\]]+")


def _under(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` ("" for root itself), or None when it is not inside."""
    root = root.rstrip("/")
    if not root:
        return None
    if path == root:
        return ""
    if path.startswith(root + "/"):
        return path[len(root) + 1:]
    return None


def relative_paths(text: str, *, repo: Path | str = REPO, venv: str | None = None,
                   stdlib: str | None = None, tmp: str | None = None) -> str:
    """``text`` without the absolute paths of the machine it was measured on.

    - inside the virtual environment (``venv``, default sys.prefix): ``<venv>/...``
      (checked before the repository, since .venv/ sits inside the clone);
    - inside the repository (``repo``): relative to its root (``.`` for the root);
    - inside Python's standard library (``stdlib``): ``<python>/...``;
    - a file in a temporary directory (``tmp``, default the system's, e.g.
      ``/tmp/tmpab12cd34/noop.prof``): its plain name, ``noop.prof``.

    Other absolute paths (``/opt/stagecraft`` on a host, say) are left as they are.
    Benchmark results are committed, so they must read the same on any clone.
    """
    repo = str(repo)
    venv = sys.prefix if venv is None else venv
    stdlib = sysconfig.get_paths()["stdlib"] if stdlib is None else stdlib
    tmp = tempfile.gettempdir() if tmp is None else tmp

    def shorten(match: re.Match[str]) -> str:
        path = match.group(0)
        rest = _under(path, venv)
        if rest is not None:
            return f"<venv>/{rest}" if rest else "<venv>"
        rest = _under(path, repo)
        if rest is not None:
            return rest or "."
        rest = _under(path, stdlib)
        if rest is not None:
            return f"<python>/{rest}" if rest else "<python>"
        rest = _under(path, tmp)
        if rest and "/" in rest:  # a file in a temporary directory: only its name
            return rest.rsplit("/", 1)[1]
        return path

    return _ABSOLUTE_PATH.sub(shorten, text)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
    except OSError:
        rev = ""
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}){mem}, "
            f"Python {platform.python_version()}, {docker_version()}commit {rev or 'unknown'}, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def docker_version() -> str:
    """"Docker Engine X, " when a daemon answers, else ""."""
    try:
        version = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                                 capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return f"Docker Engine {version}, " if version else ""


def verdict(value: float, target: float, unit: str = "x") -> str:
    """"met" when ``value`` is at most ``target``, else "missed by" the excess."""
    if value <= target:
        return "met"
    return f"missed by {value - target:.1f}{unit} ({value / target:.2f}x the target)"


def write_section(name: str, body: str) -> Path:
    """Replace (or add) the section of benchmark ``name`` in docs/benchmarks.md.

    Paths of this machine in ``body`` are written relative to the repository
    (:func:`relative_paths`).
    """
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else _HEADER
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{relative_paths(body).rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(RESULTS)
    return RESULTS
