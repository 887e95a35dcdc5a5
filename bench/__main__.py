"""`python -m bench [NAME ...]`: run benchmarks (all by default) and update docs/benchmarks.md."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("startup",)


def main(argv: list[str]) -> None:
    names = argv or list(BENCHMARKS)
    for name in names:
        if name not in BENCHMARKS:
            raise SystemExit(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
        print(f"== bench {name}", flush=True)
        importlib.import_module(f"bench.{name}").main()


main(sys.argv[1:])
