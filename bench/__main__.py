"""`python -m bench [NAME ...]`: run benchmarks (all by default) and update docs/benchmarks.md.

rollout and zero_downtime share one 3-host fleet when both run in one command;
each still makes (and removes) its own when run alone.
"""

from __future__ import annotations

import compileall
import importlib
import os
import sys
from pathlib import Path

BENCHMARKS = ("startup", "plan", "rollout", "zero_downtime", "scaling")
SHARE_FLEET = ("rollout", "zero_downtime")


def main(argv: list[str]) -> None:
    names = argv or list(BENCHMARKS)
    for name in names:
        if name not in BENCHMARKS:
            raise SystemExit(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    _compile_bytecode()
    sharing = [n for n in names if n in SHARE_FLEET]
    for name in names:
        if name in SHARE_FLEET and len(sharing) > 1:
            if name == sharing[0]:
                _run_sharing(sharing)
            continue
        print(f"== bench {name}", flush=True)
        importlib.import_module(f"bench.{name}").main()


def _compile_bytecode() -> None:
    """Time the CLI as a `pip install` leaves it: with its modules compiled. A shell
    with PYTHONDONTWRITEBYTECODE=1 would otherwise make every timed command compile
    the checkout's ~90 modules again (~0.2 s each run on these machines)."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    root = Path(__file__).resolve().parent.parent
    for directory in (root / "stagecraft", root / "collections"):
        compileall.compile_dir(str(directory), quiet=1)


def _run_sharing(names: list[str]) -> None:
    from bench.fleet import fleet

    with fleet(3, "bs") as shared:
        for name in names:
            print(f"== bench {name} (shared fleet {shared.name})", flush=True)
            importlib.import_module(f"bench.{name}").main(shared=shared)


main(sys.argv[1:])
