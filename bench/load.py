"""A paced load loop against the edge on 127.0.0.1 (like scripts/loadloop.py, but
at a fixed rate, in a thread, and stoppable): one new connection per request.

The loop's thread runs at a higher priority (nice -10, when allowed): it stands for
clients on other machines, so its latencies should be the edge's answers, not the
loop's own waits for a core that the controller's Ansible and the host containers
hold on this machine. ``priority_applied`` says whether it was."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from dataclasses import dataclass


@dataclass
class Sample:
    started: float  # time.monotonic()
    ms: float
    ok: bool
    detail: str = ""
    version: str = ""  # the APP_VERSION the answer named (GET /version's JSON)


class LoadLoop(threading.Thread):
    def __init__(self, port: int, host_header: str, rate: float = 50.0,
                 max_requests: int = 20_000, path: str = "/version", nice: int = -10) -> None:
        super().__init__(daemon=True)
        self.port, self.host_header, self.path = port, host_header, path
        self.nice = nice  # this thread's nice value (Linux keeps one per thread)
        self.priority_applied = False
        self.rate = rate  # requests per second, scheduled on a fixed clock
        self.max_requests = max_requests  # the loop always ends by itself
        self.samples: list[Sample] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)

    def run(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
            self.priority_applied = True
        except OSError:  # not root: the loop competes for a core like everything else
            pass
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._halt.is_set() and len(self.samples) < self.max_requests:
            started = time.monotonic()
            ok, detail, version = True, "", ""
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", self.path, headers={"Host": self.host_header})
                response = conn.getresponse()
                body = response.read()
                conn.close()
                if response.status != 200:
                    ok, detail = False, f"HTTP {response.status}"
                else:
                    version = _version_of(body)
            except (OSError, http.client.HTTPException) as exc:
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            self.samples.append(Sample(started, (time.monotonic() - started) * 1000, ok, detail,
                                       version))
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                self._halt.wait(delay)
            else:
                next_at = time.monotonic()  # behind schedule: no burst to catch up

    def first_answer(self, version: str, after: float) -> float | None:
        """When the first request started after ``after`` that ``version`` answered
        (time.monotonic()), or None."""
        return next((s.started for s in self.samples
                     if s.started >= after and s.ok and s.version == version), None)

    def window(self, start: float, end: float) -> dict:
        """Figures of the requests started in [start, end)."""
        chosen = [s for s in self.samples if start <= s.started < end]
        latencies = sorted(s.ms for s in chosen)

        def pct(p: float) -> float:
            return latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else 0.0

        failures = [s.detail for s in chosen if not s.ok]
        seconds = max(end - start, 1e-9)
        return {"requests": len(chosen), "failed": len(failures), "first_failures": failures[:5],
                "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": latencies[-1] if latencies else 0.0,
                "seconds": seconds, "rate": len(chosen) / seconds}


def _version_of(body: bytes) -> str:
    try:
        return str(json.loads(body).get("version", ""))
    except (ValueError, AttributeError):
        return ""
