"""`stagecraft build --no-push` for real: the shop example app built with Docker and
run (endpoints, non-root user, the unhealthy switch, graceful stops), a failing
build reported with its service and last lines, and an Encore.ts service built
through the Encore CLI STAND-IN (tests/fixtures/encore-standin/encore).

Pushing goes to a throwaway registry (Distribution with basic auth) on 127.0.0.1.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "shop"
STANDIN_DIR = REPO / "tests" / "fixtures" / "encore-standin"
STAGECRAFT = str(Path(sys.executable).with_name("stagecraft"))
RUNTIME = "stagecraft/runtime:latest"


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check,
                          timeout=timeout)


def image_exists(ref: str) -> bool:
    return docker("image", "inspect", ref, check=False).returncode == 0


def base_image() -> str:
    """The image the app builds FROM: the runtime image (built if the local cloud can),
    else the host image's Debian base, which has python3 too."""
    if image_exists(RUNTIME):
        return RUNTIME
    try:
        from stagecraft.providers.cloud.local.service_images import ensure_runtime_image
    except ImportError:
        ensure_runtime_image = None
    if ensure_runtime_image is not None:
        return ensure_runtime_image()
    from stagecraft.providers.cloud.local import ensure_host_image

    ensure_host_image()
    tags = docker("images", "stagecraft/host-base", "--format",
                  "{{.Repository}}:{{.Tag}}").stdout.split()
    assert tags, "ensure_host_image left no stagecraft/host-base image"
    return tags[0]


def stagecraft(project: Path, *args: str, path_prefix: str | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "STAGECRAFT_ENV": "local"}
    if path_prefix:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    return subprocess.run([STAGECRAFT, *args], cwd=project, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture
def cleanup() -> Iterator[dict[str, list[str]]]:
    made: dict[str, list[str]] = {"containers": [], "images": []}
    yield made
    if made["containers"]:
        docker("rm", "-f", "-v", *made["containers"], check=False)
    if made["images"]:
        docker("image", "rm", "-f", *made["images"], check=False)


def copy_example(tmp_path: Path, name: str, base: str | None) -> Path:
    project = tmp_path / "shop"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".stagecraft", "__pycache__"))
    config = project / "stagecraft.yml"
    text = config.read_text().replace("name: shop\n", f"name: {name}\n", 1)
    if base is not None:
        text = text.replace("build: { context: app }",
                            f'build: {{ context: app, args: {{ BASE_IMAGE: "{base}" }} }}', 1)
        assert base in text
    config.write_text(text)
    return project


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def run_web(image: str, name: str, *env: str) -> int:
    """Start a container of ``image`` published on 127.0.0.1; wait until it answers."""
    flags = [arg for pair in (("-e", e) for e in env) for arg in pair]
    docker("run", "-d", "--name", name, "-p", "127.0.0.1::8080", *flags, image)
    port = int(docker("port", name, "8080/tcp").stdout.strip().splitlines()[0].rsplit(":", 1)[1])
    deadline = time.monotonic() + 30
    while True:
        try:
            get(port, "/version", timeout=2)
            return port
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(docker("logs", name, check=False).stderr)
            time.sleep(0.2)


def exit_code(container: str) -> int:
    return int(docker("inspect", "--format", "{{.State.ExitCode}}", container).stdout)


def test_the_example_app_builds_and_runs(tmp_path, cleanup):
    name = f"bt{uuid.uuid4().hex[:7]}"
    project = copy_example(tmp_path, name, base_image())
    built = stagecraft(project, "build", "--no-push", "--release", "itest1", "--output", "json")
    image = f"{name}-web:itest1"
    cleanup["images"].append(image)
    assert built.returncode == 0, built.stderr[-4000:]
    result = json.loads(built.stdout)
    assert result["release"] == "itest1" and result["pushed"] is False
    web, worker = result["images"]["web"], result["images"]["worker"]
    assert (web["push_ref"], web["pull_ref"], web["digest"], web["source"]) == \
        (image, image, None, "build")
    assert web["image_id"].startswith("sha256:")
    assert (worker["pull_ref"], worker["source"], worker["from_service"]) == \
        (image, "from", "web")
    assert image_exists(image)

    # The web service: endpoints, a non-root user, and version from the environment.
    web_name = f"{name}-web-1"
    cleanup["containers"].append(web_name)
    port = run_web(image, web_name, "APP_VERSION=v5")
    assert get(port, "/up") == (200, "ok\n")
    version = json.loads(get(port, "/version")[1])
    container_id = docker("inspect", "--format", "{{.Id}}", web_name).stdout.strip()
    assert version == {"version": "v5", "host": container_id[:12], "hostname": container_id[:12]}
    assert docker("exec", web_name, "id", "-u").stdout.strip() == "10001"

    # The deliberately unhealthy variant.
    sick_name = f"{name}-web-sick"
    cleanup["containers"].append(sick_name)
    sick = run_web(image, sick_name, "APP_FAIL_HEALTH=1")
    assert get(sick, "/up")[0] == 500

    # docker stop sends SIGTERM: the request in flight finishes, the exit code is 0.
    slow = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    slow.request("GET", "/sleep?ms=2000")
    assert get(port, "/up")[0] == 200  # accepted after the slow one: it is in flight
    stopper = threading.Thread(target=docker, args=("stop", "-t", "10", web_name))
    stopper.start()
    response = slow.getresponse()
    assert (response.status, response.read().decode()) == (200, "slept 2000 ms\n")
    stopper.join(timeout=60)
    assert exit_code(web_name) == 0
    logs = docker("logs", web_name).stderr
    assert "web: SIGTERM: finishing requests in flight" in logs and "web: stopped" in logs

    # The worker runs from the same image with its command, and stops cleanly too.
    worker_name = f"{name}-worker-1"
    cleanup["containers"].append(worker_name)
    docker("run", "-d", "--name", worker_name, "-e", "WORKER_INTERVAL=0.5", image,
           "python3", "-m", "shopapp.worker")
    deadline = time.monotonic() + 30
    while "worker: tick 2" not in docker("logs", worker_name).stdout:
        assert time.monotonic() < deadline, docker("logs", worker_name).stdout
        time.sleep(0.2)
    docker("stop", "-t", "10", worker_name)
    assert exit_code(worker_name) == 0
    assert "worker: stopped after" in docker("logs", worker_name).stdout


def test_a_failing_build_names_the_service_and_shows_the_last_lines(tmp_path, cleanup):
    name = f"bt{uuid.uuid4().hex[:7]}"
    project = copy_example(tmp_path, name, None)
    (project / "app" / "Dockerfile").write_text("FROM scratch\nCOPY no-such-file /\n")
    failed = stagecraft(project, "build", "worker", "--no-push", "--release", "bad1")
    cleanup["images"].append(f"{name}-web:bad1")
    assert failed.returncode == 9, failed.stderr
    lines = failed.stderr.splitlines()
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("error:")):]
    assert lines[0] == (f"error: service 'web': building {name}-web:bad1 failed (exit code 1); "
                        "last lines of output:")
    assert any("no-such-file" in line for line in lines[1:])
    assert lines[-1].startswith("hint: read the build output above")


def test_an_encore_service_builds_through_the_encore_cli_standin(tmp_path, cleanup):
    """The Encore CLI cannot be installed here: its STAND-IN is first on PATH."""
    name = f"bt{uuid.uuid4().hex[:7]}"
    project = tmp_path / "encore-shop"
    (project / "backend").mkdir(parents=True)
    (project / "backend" / "encore.app").write_text(json.dumps({"id": name}))
    (project / "stagecraft.yml").write_text(f"""
version: 1
project: {{ name: {name} }}
providers: {{ backend: {{ kind: encore-ts }} }}
services:
  api: {{ build: {{ context: backend }}, on: [app] }}
environments:
  local: {{ hosts: [{{ name: h1, roles: [app] }}] }}
""")
    calls = tmp_path / "encore-calls.jsonl"
    os.environ["ENCORE_STANDIN_LOG"] = str(calls)
    try:
        built = stagecraft(project, "build", "--no-push", "--release", "enc1", "--output",
                           "json", path_prefix=str(STANDIN_DIR))
    finally:
        del os.environ["ENCORE_STANDIN_LOG"]
    tag = f"{name}-api:enc1"
    cleanup["images"].append(tag)
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["images"]["api"]["pull_ref"] == tag
    assert [json.loads(line) for line in calls.read_text().splitlines()] == [
        {"argv": ["build", "docker", tag], "cwd": str(project / "backend")}]
    labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}",
                               tag).stdout)
    assert labels["dev.encore.app-id"] == name

    # Without the CLI on PATH the same build is an environment error (exit 10).
    missing = subprocess.run([STAGECRAFT, "build", "--no-push"], cwd=project,
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "STAGECRAFT_ENV": "local",
                                  "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"})
    assert missing.returncode == 10, missing.stderr
    assert "the Encore CLI (`encore`) is not on PATH" in missing.stderr


# ------------------------------------------------------------------ pushing


REGISTRY_CONFIG = """\
version: 0.1
log: { level: warn }
storage: { filesystem: { rootdirectory: /var/lib/docker-registry } }
http: { addr: ":5000" }
auth: { htpasswd: { realm: stagecraft-test, path: /etc/stagecraft-test/htpasswd } }
"""


def registry_image() -> str:
    """Debian's docker-registry (Distribution 2.8), as the local cloud builds it."""
    if image_exists("stagecraft/registry:latest"):
        return "stagecraft/registry:latest"
    try:
        from stagecraft.providers.cloud.local.service_images import ensure_registry_image
    except ImportError:
        pytest.skip("no registry image on this machine and no way to build one yet")
    return ensure_registry_image()


def test_build_pushes_with_a_throwaway_login_and_reports_the_digest(tmp_path, cleanup):
    """A registry with basic auth on 127.0.0.1 (plain HTTP: Docker trusts loopback)."""
    from stagecraft.deploy.build import BuildFailed, RegistryTarget, build_images
    from stagecraft.config.loader import load_config
    from stagecraft.errors import ProviderError

    image = registry_image()
    name = f"bt{uuid.uuid4().hex[:7]}"
    files = tmp_path / "registry"
    files.mkdir()
    files.chmod(0o755)
    password = uuid.uuid4().hex
    htpasswd = docker("run", "--rm", "--entrypoint", "htpasswd", image, "-Bbn", "pusher",
                      password).stdout
    (files / "htpasswd").write_text(htpasswd)
    (files / "config.yml").write_text(REGISTRY_CONFIG)
    for path in files.iterdir():
        path.chmod(0o644)
    registry = f"{name}-registry"
    cleanup["containers"].append(registry)
    docker("run", "-d", "--name", registry, "-p", "127.0.0.1::5000", "-v",
           f"{files}:/etc/stagecraft-test:ro", image, "serve", "/etc/stagecraft-test/config.yml")
    port = int(docker("port", registry, "5000/tcp").stdout.split(":")[-1])
    deadline = time.monotonic() + 30
    while True:
        try:
            if get(port, "/v2/")[0] == 401:  # up, and asking for credentials
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, docker("logs", registry, check=False).stderr
        time.sleep(0.2)

    project = tmp_path / "project"
    (project / "api").mkdir(parents=True)
    (project / "api" / "Dockerfile").write_text("FROM scratch\nLABEL pushed-by=stagecraft-test\n")
    (project / "stagecraft.yml").write_text(f"""
version: 1
project: {{ name: {name} }}
services:
  api: {{ build: {{ context: api }}, on: [app] }}
  worker: {{ from: api, on: [app] }}
environments:
  prod: {{ hosts: [{{ name: h1, roles: [app] }}] }}
""")
    env = load_config(project / "stagecraft.yml").environment("prod")
    push_server = f"127.0.0.1:{port}"
    tag = f"{push_server}/{name}-api:p1"
    cleanup["images"].append(tag)
    # The hosts would pull from another address; only the name changes.
    target = RegistryTarget(push_server=push_server, pull_server="registry.internal:5000",
                            username="pusher", password=password)
    docker_config = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    before = docker_config.read_text() if docker_config.exists() else None
    lines: list[tuple[str, str]] = []
    images = build_images(env, project, "p1", target, on_line=lambda s, l: lines.append((s, l)))

    api = images["api"]
    assert api.push_ref == tag
    assert api.digest and api.digest.startswith("sha256:")
    assert api.pull_ref == f"registry.internal:5000/{name}-api:p1@{api.digest}"
    assert images["worker"].pull_ref == api.pull_ref
    # The registry serves that manifest under that digest.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    token = base64.b64encode(f"pusher:{password}".encode()).decode()
    conn.request("HEAD", f"/v2/{name}-api/manifests/p1", headers={
        "Authorization": f"Basic {token}",
        "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Docker-Content-Digest") == api.digest
    conn.close()
    # Credentials never reached the user's Docker config, nor the output.
    after = docker_config.read_text() if docker_config.exists() else None
    assert after == before
    assert all(password not in line for _, line in lines)
    assert any("digest: " + api.digest in line for _, line in lines)

    wrong = RegistryTarget(push_server=push_server, pull_server=push_server,
                           username="pusher", password="not-" + password)
    with pytest.raises(ProviderError) as refused:
        build_images(env, project, "p2", wrong)
    cleanup["images"].append(f"{push_server}/{name}-api:p2")
    assert refused.value.message.startswith(f"cannot log in to registry {push_server} as pusher")
    assert "not-" + password not in refused.value.message

    # No credentials at all: the push itself is refused, and reported for the service.
    anonymous = RegistryTarget(push_server=push_server, pull_server=push_server)
    with pytest.raises(BuildFailed) as failed:
        build_images(env, project, "p3", anonymous)
    cleanup["images"].append(f"{push_server}/{name}-api:p3")
    assert failed.value.message.startswith(f"service 'api': pushing {push_server}/{name}-api:p3 failed")
