"""The example app on a local fleet, for the fleet tests that drive the CLI.

Shared by tests/e2e/test_deploy.py, tests/e2e/test_failures.py and
tests/integration/test_ops_fleet.py: a copy of examples/shop under a unique
project name in its own git repository, the CLI run as a subprocess against the
`local` environment, and HTTP requests through the edge host's published port.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGECRAFT = str(Path(sys.executable).with_name("stagecraft"))
EXAMPLE = REPO / "examples" / "shop"
ENV = {**os.environ, "STAGECRAFT_ENV": "local"}


def stagecraft(project: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    # stdin is not a terminal here: commands that would ask must refuse instead.
    return subprocess.run([STAGECRAFT, *args], cwd=project, capture_output=True, text=True,
                          check=False, timeout=timeout, stdin=subprocess.DEVNULL, env=ENV)


# The example's local cloud line; copy_example names the host image on it.
LOCAL_CLOUD = "cloud:    { kind: local }"


def copy_example(parent: Path, prefix: str, edits: Mapping[str, str] | None = None, *,
                 host_image: str = "docker") -> Path:
    """examples/shop in ``parent``/shop as a git repository, renamed to ``<prefix><hex>``
    so fleets never collide; ``edits`` replace text in stagecraft.yml before the commit.

    ``host_image``: the local cloud's host image. Tests about deploys take ``docker``
    (Docker already installed, as a cloud's Docker image has it: each bootstrap skips
    a ~20 s CPU-bound apt install); tests of a bare host's first bootstrap take
    ``debian-13``.
    """
    directory = parent / "shop"
    shutil.copytree(EXAMPLE, directory, ignore=shutil.ignore_patterns(".stagecraft", "__pycache__"))
    config = directory / "stagecraft.yml"
    text = config.read_text().replace("name: shop", f"name: {prefix}{uuid.uuid4().hex[:7]}", 1)
    assert LOCAL_CLOUD in text, f"examples/shop/stagecraft.yml lost the line {LOCAL_CLOUD!r}"
    text = text.replace(LOCAL_CLOUD, f"cloud:    {{ kind: local, image: {host_image} }}", 1)
    for old, new in (edits or {}).items():
        text = text.replace(old, new, 1)
    config.write_text(text)
    write_local_secrets(directory)
    (directory / ".gitignore").write_text(".stagecraft/\n.env.*\n!.env.*.example\n")
    for command in (["init", "-q"], ["config", "user.name", "tests"],
                    ["config", "user.email", "tests@example.com"], ["add", "-A"],
                    ["commit", "-qm", "example app"]):
        subprocess.run(["git", *command], cwd=directory, check=True)
    return directory


# Edits of copy_example that leave the database and its migrations out: for fleet
# tests about other things, so each deploy does not also run two migration phases.
WITHOUT_DB = {
    "roles: [edge, app, db], volumes: [pgdata] }": "roles: [edge, app] }",
    "\nmigrations:\n  engine: raw": "\nx-migrations:\n  engine: raw",
    "    migrations: { host: local-1 }": "    x-migrations: { host: local-1 }",
    "    secrets: [DATABASE_URL]": "    secrets: []",
    "\n  db:\n    build: { context: db }": "\n  x-db:\n    build: { context: db }",
}


def write_local_secrets(project: Path) -> str:
    """.env.local from the example's .env.local.example, with a random password."""
    password = uuid.uuid4().hex
    example = (project / ".env.local.example").read_text()
    (project / ".env.local").write_text(example.replace("change-me", password))
    return password


@contextmanager
def fleet(project: Path) -> Iterator[Path]:
    """The project's local fleet, up and bootstrapped; removed afterwards, also on failure."""
    try:
        up = stagecraft(project, "infra", "up", "--bootstrap")
        assert up.returncode == 0, up.stderr[-4000:]
        yield project
    finally:
        down = stagecraft(project, "infra", "down", "--yes")
        assert down.returncode == 0, down.stderr[-4000:]


def project_name(project: Path) -> str:
    return config_value(project, "name")


def config_value(project: Path, key: str) -> str:
    """The first `key: value` of stagecraft.yml (project name, domain)."""
    return next(line.split(":", 1)[1].strip()
                for line in (project / "stagecraft.yml").read_text().splitlines()
                if line.strip().startswith(f"{key}:"))


def set_env_value(project: Path, name: str, value: str) -> None:
    """Rewrite `NAME: value` in the web service's env of stagecraft.yml and commit."""
    path = project / "stagecraft.yml"
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(f"{name}:"):
            indent = line[: len(line) - len(line.lstrip())]
            lines[i] = f"{indent}{name}: \"{value}\""
            break
    else:
        raise AssertionError(f"{name} not found in {path}")
    path.write_text("\n".join(lines) + "\n")
    subprocess.run(["git", "commit", "-qam", f"{name}={value}"], cwd=project, check=True)


def host_records(project: Path) -> dict[str, dict]:
    hosts = json.loads((project / ".stagecraft" / "local" / "hosts.json").read_text())["hosts"]
    return {h["name"]: h for h in hosts}


def releases(project: Path) -> list[dict]:
    listed = stagecraft(project, "releases", "list", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


class Edge:
    """HTTP requests to the edge host's published port, with the route's Host header."""

    def __init__(self, port: int, host_header: str, address: str = "127.0.0.1") -> None:
        self.port = port
        self.host_header = host_header
        self.address = address

    @classmethod
    def of(cls, project: Path) -> Edge:
        port = next(h["http_port"] for h in host_records(project).values()
                    if "edge" in h["roles"])
        return cls(port, config_value(project, "domain"))

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        conn = http.client.HTTPConnection(self.address, self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": self.host_header})
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def version(self) -> str:
        status, body = self.get("/version")
        assert status == 200, (status, body)
        return json.loads(body)["version"]

    def versions_by_container(self, requests: int = 20) -> dict[str, set[str]]:
        """Which version each web container answered with, over ``requests`` requests."""
        seen: dict[str, set[str]] = {}
        for _ in range(requests):
            status, body = self.get("/version")
            assert status == 200, (status, body)
            data = json.loads(body)
            seen.setdefault(data["host"], set()).add(data["version"])
        return seen


# Requests a load loop sends at least (it goes on while the command runs).
LOAD_REQUESTS = 2000


class LoadLoop(threading.Thread):
    """A load loop that runs until it is stopped and has sent at least ``count``
    requests: it covers the whole command it runs beside, however slow the machine."""

    def __init__(self, edge: Edge, count: int = LOAD_REQUESTS, max_seconds: float = 1800) -> None:
        super().__init__(daemon=True)
        self.edge, self.count, self.max_seconds = edge, count, max_seconds
        self.failures: list[str] = []
        self.versions: Counter[str] = Counter()
        self.sent = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        # The deadline only keeps a broken edge from hanging the suite.
        deadline = time.monotonic() + self.max_seconds
        while (self.sent < self.count or not self.stopped.is_set()) \
                and time.monotonic() < deadline:
            self.sent += 1
            try:
                status, body = self.edge.get("/version")
                if status != 200:
                    self.failures.append(f"HTTP {status}: {body[:120]}")
                else:
                    self.versions[json.loads(body)["version"]] += 1
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.01)


def run_under_load(edge: Edge, *args: str, project: Path,
                   runner: Callable[..., subprocess.CompletedProcess] = stagecraft,
                   ) -> tuple[subprocess.CompletedProcess, LoadLoop]:
    """Run a stagecraft command (through ``runner(project, *args)``) while a load loop
    runs; the loop goes on until the command is done and it has sent its count."""
    loop = LoadLoop(edge)
    loop.start()
    result = runner(project, *args)
    loop.stopped.set()
    loop.join(timeout=loop.max_seconds)
    assert not loop.is_alive(), "the load loop did not stop"
    return result, loop
