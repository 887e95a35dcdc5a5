"""The shop's worker: logs a line every WORKER_INTERVAL seconds (default 5) until
SIGTERM or SIGINT, then exits 0 at once."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading


def run(stop: threading.Event, interval: float) -> int:
    """Tick until ``stop`` is set; return the number of ticks."""
    version = os.environ.get("APP_VERSION", "dev")
    host = socket.gethostname()
    ticks = 0
    while not stop.is_set():
        ticks += 1
        print(f"worker: tick {ticks} (version {version} on {host})", flush=True)
        stop.wait(interval)
    return ticks


def main() -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        print(f"worker: {signal.Signals(signum).name}: stopping", flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ticks = run(stop, float(os.environ.get("WORKER_INTERVAL", "5")))
    print(f"worker: stopped after {ticks} tick(s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
