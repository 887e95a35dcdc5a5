"""`python -m bench [NAME ...]`: run benchmarks (all by default) and update docs/benchmarks.md.

rollout and zero_downtime share one 3-host fleet when both run in one command;
each still makes (and removes) its own when run alone.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("startup", "plan", "rollout", "zero_downtime", "scaling")
SHARE_FLEET = ("rollout", "zero_downtime")


def main(argv: list[str]) -> None:
    names = argv or list(BENCHMARKS)
    for name in names:
        if name not in BENCHMARKS:
            raise SystemExit(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    sharing = [n for n in names if n in SHARE_FLEET]
    for name in names:
        if name in SHARE_FLEET and len(sharing) > 1:
            if name == sharing[0]:
                _run_sharing(sharing)
            continue
        print(f"== bench {name}", flush=True)
        importlib.import_module(f"bench.{name}").main()


def _run_sharing(names: list[str]) -> None:
    from bench.fleet import fleet

    with fleet(3, "bs") as shared:
        for name in names:
            print(f"== bench {name} (shared fleet {shared.name})", flush=True)
            importlib.import_module(f"bench.{name}").main(shared=shared)


main(sys.argv[1:])
