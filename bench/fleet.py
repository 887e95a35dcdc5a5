"""Local fleets for the deploy benchmarks: a copy of examples/shop's app under a
unique project name, hosts made by the local cloud, torn down after.

The config is the shop's web service alone (no worker), tuned for quick
rollouts: a new container is probed every second while it starts (Docker's
start_interval, which stagecraft renders for a start period), then every 10 s, so
idle fleets of 20 hosts do not spend the machine's cores on healthchecks; 1s drain,
5s stop grace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from bench.report import REPO

STAGECRAFT = str(Path(sys.executable).with_name("stagecraft"))
EXAMPLE_APP = REPO / "examples" / "shop" / "app"
KEEP = os.environ.get("BENCH_KEEP_FLEET") == "1"  # debugging: leave the fleet up

CONFIG = """\
# Benchmark fleet: the shop's web service (examples/shop/app) on every app host.
version: 1
project:
  name: {name}
providers:
  backend: {{ kind: generic }}
  network: {{ kind: none }}
  cloud: {{ kind: local, image: docker }}
  secrets: {{ kind: envfile, path: ".env.{{env}}" }}
services:
  web:
    build: {{ context: app }}
    port: 8080
    healthcheck: {{ path: /up, interval: 10s, timeout: 2s, retries: 3, start_period: 10s }}
    env:
      APP_VERSION: "1"
      APP_FAIL_HEALTH: "0"
    replicas: 2
    stop_grace: 5s
    on: [app]
    routes:
      - {{ host: "{{domain}}" }}
environments:
  local:
    domain: {name}.localhost
    hosts:
{hosts}
    rollout: {{ batch: {batch}, health_timeout: 30s, drain: 1s }}
"""

TUNING = ("healthcheck every 1s while a container starts (start period 10s), then every 10s "
          "(3 retries), rollout batch = every host "
          "(hosts roll in parallel; each host replaces its containers start-first), "
          "drain 1s, stop grace 5s, 2 replicas of web per host, no worker")


def host_roles(count: int) -> list[tuple[str, list[str]]]:
    """The first host is [edge, app], the others [app]."""
    return [(f"h{i + 1}", ["edge", "app"] if i == 0 else ["app"]) for i in range(count)]


def sh(argv: list[str], cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}:\n"
                           f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


class Fleet:
    """A project directory with its local fleet; ``stagecraft(...)`` runs the CLI in it."""

    def __init__(self, hosts: int, prefix: str = "b") -> None:
        self.name = f"{prefix}{uuid.uuid4().hex[:7]}"
        self.root = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        self.dir = self.root / "project"
        self.hosts = host_roles(hosts)
        self.up = False
        self.deployed = False

    def create_project(self) -> None:
        self.dir.mkdir()
        shutil.copytree(EXAMPLE_APP, self.dir / "app", ignore=shutil.ignore_patterns("__pycache__"))
        hosts = "\n".join(f"      - {{ name: {n}, roles: [{', '.join(r)}] }}" for n, r in self.hosts)
        (self.dir / "stagecraft.yml").write_text(CONFIG.format(name=self.name, hosts=hosts, batch=len(self.hosts)))
        (self.dir / ".gitignore").write_text(".stagecraft/\n")
        for argv in (["git", "init", "-q"], ["git", "config", "user.name", "bench"],
                     ["git", "config", "user.email", "bench@example.com"],
                     ["git", "add", "-A"], ["git", "commit", "-qm", "benchmark app"]):
            sh(argv, cwd=self.dir)

    def stagecraft(self, *args: str, check: bool = True, timeout: float = 1200) -> subprocess.CompletedProcess:
        result = subprocess.run([STAGECRAFT, *args], cwd=self.dir, capture_output=True, text=True,
                                timeout=timeout, env={**os.environ, "STAGECRAFT_ENV": "local"})
        if check and result.returncode != 0:
            raise RuntimeError(f"stagecraft {' '.join(args)} exited {result.returncode}:\n"
                               f"{result.stderr[-6000:]}")
        return result

    def timed(self, *args: str) -> float:
        started = time.perf_counter()
        self.stagecraft(*args)
        return time.perf_counter() - started

    def infra_up(self) -> float:
        self.create_project()
        self.up = True  # from here on, infra down must run
        return self.timed("infra", "up", "--bootstrap")

    def infra_down(self) -> None:
        if KEEP:
            print(f"BENCH_KEEP_FLEET=1: fleet {self.name} left up in {self.dir}", flush=True)
            return
        if self.up:
            result = self.stagecraft("infra", "down", "--yes", check=False)
            if result.returncode != 0:
                print(f"warning: infra down of {self.name} failed: {result.stderr[-2000:]}",
                      file=sys.stderr)
        shutil.rmtree(self.root, ignore_errors=True)

    def first_deploy(self) -> float:
        """The first deploy (with the image build); later ones may --skip-build."""
        if self.deployed:
            return 0.0
        seconds = self.timed("deploy", "--yes")
        self.deployed = True
        return seconds

    def bump_version(self) -> str:
        """A new APP_VERSION for web (unique, so every call is a one-service change)."""
        version = f"v{time.time_ns() // 1_000_000 % 10**9}"
        self.set_env_value("APP_VERSION", version)
        return version

    def set_env_value(self, name: str, value: str) -> None:
        """Rewrite ``NAME: value`` in web's env and commit (deploys record the git sha)."""
        path = self.dir / "stagecraft.yml"
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip().startswith(f"{name}:"):
                indent = line[: len(line) - len(line.lstrip())]
                lines[i] = f'{indent}{name}: "{value}"'
                break
        else:
            raise RuntimeError(f"{name} not in {path}")
        path.write_text("\n".join(lines) + "\n")
        sh(["git", "commit", "-qam", f"{name}={value}"], cwd=self.dir)

    # ----------------------------------------------------------------- reading state

    def edge(self) -> tuple[int, str]:
        """(published HTTP port of the edge on 127.0.0.1, route host)."""
        records = json.loads((self.dir / ".stagecraft" / "local" / "hosts.json").read_text())["hosts"]
        port = next(h["http_port"] for h in records if "edge" in h["roles"])
        return port, f"{self.name}.localhost"

    def releases(self) -> list[dict]:
        path = self.dir / ".stagecraft" / "releases.json"
        data = json.loads(path.read_text())
        return data["releases"] if isinstance(data, dict) else data


@contextmanager
def fleet(hosts: int, prefix: str = "b", shared: Fleet | None = None):
    """A bootstrapped and deployed fleet of ``hosts`` hosts, removed at the end even
    on error. ``shared``: a fleet made by the caller, used (and left) as it is."""
    if shared is not None:
        shared.first_deploy()
        yield shared
        return
    created = Fleet(hosts, prefix)
    try:
        seconds = created.infra_up()
        print(f"fleet {created.name}: {hosts} hosts up in {seconds:.0f}s", flush=True)
        seconds = created.first_deploy()
        print(f"fleet {created.name}: first deploy (with build) in {seconds:.0f}s", flush=True)
        yield created
    finally:
        created.infra_down()
