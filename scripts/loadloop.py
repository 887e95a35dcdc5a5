#!/usr/bin/env python3
"""A bounded load loop against the edge on 127.0.0.1: COUNT requests, then it stops.

    loadloop.py --port 23305 --host shop.localhost --count 2000 [--path /version]

Prints one JSON line: requests sent, failed (with the first reasons), the versions
seen (from /version's JSON), and p50/p99 latency in milliseconds. Exit 0 always:
the caller decides what a failure means.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from collections import Counter


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", required=True, help="Host header (the route's domain)")
    parser.add_argument("--path", default="/version")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between requests")
    parser.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args()
    failures: list[str] = []
    versions: Counter[str] = Counter()
    latencies: list[float] = []
    deadline = time.monotonic() + args.max_seconds
    sent = 0
    while sent < args.count and time.monotonic() < deadline:
        sent += 1
        started = time.monotonic()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=5)
            conn.request("GET", args.path, headers={"Host": args.host})
            response = conn.getresponse()
            body = response.read()
            conn.close()
            if response.status != 200:
                failures.append(f"HTTP {response.status}")
            elif args.path == "/version":
                versions[str(json.loads(body).get("version"))] += 1
        except (OSError, http.client.HTTPException, ValueError) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        latencies.append((time.monotonic() - started) * 1000)
        time.sleep(args.interval)
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * p))], 1) if latencies else 0.0

    print(json.dumps({"sent": sent, "failed": len(failures), "first_failures": failures[:5],
                      "versions": dict(versions), "p50_ms": pct(0.50), "p99_ms": pct(0.99)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
