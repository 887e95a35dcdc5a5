"""`stagecraft dev` end to end on examples/devapp, as a developer runs it.

`stagecraft dev --detach --yes` starts the database (examples/devapp/db, PostgreSQL
in a container of this machine's Docker Engine), the backend's dev runner (Python,
reloads itself) and Vite (from the npm registry), and Traefik over HTTPS with a
certificate from mkcert's CA (a temporary CAROOT: the machine's trust store is not
touched). Headless Chromium (tests/browser.py) trusts only that CA and loads
https://app.localhost:<port>/; the page shows data the backend read from the
database. A backend file change is served without stagecraft restarting the
process, and `stagecraft dev down` leaves no process, container or /etc/hosts line.

STAGECRAFT_UPDATE_SCREENSHOT=1 writes the page's screenshot to docs/dev-screenshot.png.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from stagecraft.identity import process_alive as alive
from tests.browser import render

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "devapp"
SCREENSHOT = REPO / "docs" / "dev-screenshot.png"
VENV_BIN = Path(sys.executable).parent
STAGECRAFT = str(VENV_BIN / "stagecraft")
HOST = "app.localhost"
GREETING = "hello from the backend"


def run(argv: list[str], cwd: Path, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    for tool in ("mkcert", "npm", "docker", "curl"):
        assert shutil.which(tool), f"{tool} is missing: run `make setup` and `make doctor`"
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 5432))
        except OSError:
            pytest.fail("127.0.0.1:5432 is taken: the example's database publishes there",
                        pytrace=False)
    work = tmp_path_factory.mktemp("dev")
    directory = work / "devapp"
    shutil.copytree(EXAMPLE, directory, ignore=shutil.ignore_patterns(
        "node_modules", "dist", "__pycache__", ".stagecraft"))
    name = f"dv{uuid.uuid4().hex[:7]}"
    config = directory / "stagecraft.yml"
    config.write_text(config.read_text().replace("name: devapp", f"name: {name}", 1))
    env = {**os.environ, "CAROOT": str(work / "caroot"), "NO_COLOR": "1",
           # The dev commands' python3 is this venv's (it has psycopg).
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    installed = run(["npm", "ci", "--no-audit", "--no-fund"], directory / "frontend", env)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    hosts_before = Path("/etc/hosts").read_bytes()
    state = {"dir": directory, "env": env, "name": name, "hosts_before": hosts_before}
    try:
        yield state
    finally:
        run([STAGECRAFT, "dev", "down"], directory, env, timeout=180)
        subprocess.run(["docker", "volume", "rm", "-f", f"{name}-dev-pgdata"],
                       capture_output=True, check=False)
        subprocess.run(["docker", "image", "rm", "-f", f"{name}-dev-db:dev"],
                       capture_output=True, check=False)


def https(app: dict, port: int, path: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-fsS", "--max-time", "10", "--cacert",
                           str(Path(app["env"]["CAROOT"]) / "rootCA.pem"),
                           f"https://{HOST}:{port}{path}"],
                          capture_output=True, text=True, timeout=30, check=False)


def test_dev_serves_the_app_over_https_reloads_and_goes_down_clean(app: dict) -> None:
    directory, env = app["dir"], app["env"]
    started_at = time.monotonic()
    started = run([STAGECRAFT, "dev", "--detach", "--yes", "--output", "json"], directory, env)
    assert started.returncode == 0, started.stderr[-6000:]
    print(f"\ndev --detach ready in {time.monotonic() - started_at:.1f} s")
    table = json.loads(started.stdout.strip().splitlines()[-1])
    rows = {row["service"]: row for row in table["rows"]}
    assert set(rows) == {"api", "web", "db", "traefik"}, rows
    assert rows["db"]["runs"].startswith(f"container {app['name']}-dev-db-1 (127.0.0.1:5432)")
    url = rows["web"]["urls"][0]
    port = int(url.rsplit(":", 1)[1])
    assert url == f"https://{HOST}:{port}"
    assert rows["api"]["urls"] == [f"https://{HOST}:{port}/api"]

    # app.localhost does not resolve through glibc here: dev added it to /etc/hosts.
    hosts_text = Path("/etc/hosts").read_text()
    assert f"127.0.0.1\t{HOST}" in hosts_text and table["unresolved"] == []

    # The page, in a browser that trusts only the session's CA.
    ca = Path(env["CAROOT"]) / "rootCA.pem"
    shot = SCREENSHOT if os.environ.get("STAGECRAFT_UPDATE_SCREENSHOT") == "1" else \
        directory / "page.png"
    page = render(f"{url}/", ca_cert=ca, wait_text=("status", "loaded"),
                  texts=["greeting", "items"], screenshot=shot, timeout=120)
    assert page.status == 200, page
    assert page.texts["greeting"] == GREETING, page
    assert [line.strip() for line in (page.texts["items"] or "").split("\n") if line.strip()] \
        in (["apple", "bread", "cheese"], ["applebreadcheese"]), page.texts
    print(f"page rendered in {page.seconds:.1f} s ({page.reloads} reloads): {page.texts}")

    # A backend change is served without stagecraft restarting the dev process.
    before = json.loads(run([STAGECRAFT, "dev", "status", "--output", "json"], directory,
                            env).stdout)
    backend_pid = json.loads((directory / ".stagecraft" / "dev" / "state.json")
                             .read_text())["groups"]["backend"]
    assert before["processes"]["backend"] is True
    messages = directory / "backend" / "devapi" / "messages.py"
    messages.write_text(messages.read_text().replace(GREETING, "hello after an edit"))
    answered = wait_for(lambda: (r := https(app, port, "/api/hello")).returncode == 0
                        and "hello after an edit" in r.stdout and r, 60, "the edited greeting")
    assert json.loads(answered.stdout)["message"] == "hello after an edit"
    state = json.loads((directory / ".stagecraft" / "dev" / "state.json").read_text())
    assert state["groups"]["backend"] == backend_pid and alive(backend_pid)
    assert "exited with code" not in (directory / ".stagecraft" / "dev" / "logs" /
                                      "backend.log").read_text()
    again = render(f"{url}/", ca_cert=ca, wait_text=("status", "loaded"), texts=["greeting"],
                   timeout=120)
    assert again.texts["greeting"] == "hello after an edit"

    # The secrets reach the processes, never the state or the logs.
    password = (directory / ".env.dev").read_text().split("POSTGRES_PASSWORD=")[1].split()[0]
    logs = "".join(p.read_text() for p in (directory / ".stagecraft" / "dev" / "logs").glob("*.log"))
    assert password not in logs
    assert password not in (directory / ".stagecraft" / "dev" / "state.json").read_text()

    # down: nothing left.
    groups = [int(pid) for pid in state["groups"].values()]
    down = run([STAGECRAFT, "dev", "down"], directory, env, timeout=180)
    assert down.returncode == 0, down.stderr
    assert [pid for pid in [state["pid"], *groups] if alive(pid)] == []
    left = subprocess.run(["docker", "ps", "-a", "--filter", f"label=org.stagecraft.dev={app['name']}",
                           "--format", "{{.Names}}"], capture_output=True, text=True, check=True)
    assert left.stdout.split() == []
    assert Path("/etc/hosts").read_bytes() == app["hosts_before"]
    assert not (directory / ".stagecraft" / "dev" / "state.json").exists()
    # The database's volume stays for the next session.
    volume = subprocess.run(["docker", "volume", "inspect", f"{app['name']}-dev-pgdata"],
                            capture_output=True, check=False)
    assert volume.returncode == 0
