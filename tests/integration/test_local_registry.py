"""The local cloud's registry, end to end, in one fleet lifecycle:

infra up (CLI) -> bootstrap (CLI: the hosts learn the registry and trust its CA) ->
an image FROM stagecraft/runtime built and pushed from the controller -> on the host:
an anonymous pull is refused, `docker login` + `docker pull` over TLS verified by
the environment's CA (no insecure registry anywhere on the host), curl trusts it
through the system store -> the Traefik image published and pulled -> infra down
removes the registry container, its volume and its files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from stagecraft.providers.cloud import FleetSpec, HostSpec
from stagecraft.providers.cloud.local import LocalCloud, addressing
from stagecraft.providers.cloud.local.service_images import ensure_runtime_image
from stagecraft.providers.cloud.local.provider import LABEL_PROJECT

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

STAGECRAFT = str(Path(sys.executable).with_name("stagecraft"))
ENV = "local"


def stagecraft(project: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([STAGECRAFT, *args], cwd=project, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "STAGECRAFT_ENV": ENV})


def docker(*args: str, check: bool = True, input: str | None = None,
           env: dict[str, str] | None = None, cwd: Path | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check,
                          input=input, env=env, cwd=cwd, timeout=timeout)


class Project:
    def __init__(self, directory: Path) -> None:
        self.name = f"r{uuid.uuid4().hex[:8]}"
        self.directory = directory
        self.state_dir = directory / ".stagecraft" / ENV
        self.spec = FleetSpec(self.name, ENV, (HostSpec("node-1", ("edge", "app")),))
        self.cloud = LocalCloud()
        (directory / "stagecraft.yml").write_text(textwrap.dedent(f"""\
            version: 1
            project: {{ name: {self.name} }}
            services:
              web:
                image: web:1
                port: 8080
                healthcheck: {{ path: /up }}
                on: [app]
                routes: [{{ host: "{{domain}}" }}]
            environments:
              {ENV}:
                providers: {{ cloud: {{ kind: local, image: docker }} }}
                domain: {self.name}.localhost
                hosts:
                  - {{ name: node-1, roles: [edge, app] }}
            """))

    def on_host(self, command: str, input: str | None = None) -> subprocess.CompletedProcess:
        """Run ``command`` on node-1 over real SSH (pinned host key), as root."""
        document = json.loads((self.state_dir / "hosts.json").read_text())
        host = document["hosts"][0]
        access = self.cloud.ssh_access(self.spec, self.state_dir)
        return subprocess.run(
            ["ssh", *access.ssh_options(), "-o", "ConnectTimeout=10", "-p",
             str(host["ssh_port"]), f"root@{host['ssh_host']}", command],
            capture_output=True, text=True, input=input, timeout=600,
        )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    made = Project(tmp_path_factory.mktemp("registry"))
    try:
        yield made
    finally:
        stagecraft(made.directory, "infra", "down", "--yes")
        # A safety net in case down itself is what broke.
        leftover = docker("ps", "-aq", "--filter", f"label={LABEL_PROJECT}={made.name}",
                          check=False).stdout.split()
        if leftover:
            docker("rm", "-fv", *leftover, check=False)
        docker("volume", "rm", addressing.registry_volume_name(made.name, ENV), check=False)
        docker("network", "rm", addressing.network_name(made.name, ENV), check=False)


def test_registry_serves_hosts_over_verified_tls_with_auth_and_goes_with_down(
        project: Project, tmp_path: Path) -> None:
    up = stagecraft(project.directory, "infra", "up", "--output", "json")
    assert up.returncode == 0, up.stderr
    container = addressing.registry_container_name(project.name, ENV)
    volume = addressing.registry_volume_name(project.name, ENV)
    assert docker("inspect", "-f", "{{.State.Status}}", container).stdout.strip() == "running"

    bootstrap = stagecraft(project.directory, "bootstrap", "--output", "json")
    assert bootstrap.returncode == 0, bootstrap.stderr + bootstrap.stdout[-3000:]

    assert project.cloud.capabilities.registry
    access = project.cloud.registry_access(project.spec, project.state_dir)
    assert access.push_server.startswith("127.0.0.1:")
    assert access.pull_server.endswith(".128:5000") and access.username == "stagecraft"
    assert access.password and access.password not in repr(access)

    # --- build FROM the runtime image and push from the controller ------------------
    runtime = ensure_runtime_image()
    context = tmp_path / "app"
    context.mkdir()
    (context / "Dockerfile").write_text(textwrap.dedent(f"""\
        ARG BASE_IMAGE=stagecraft/runtime:latest
        FROM ${{BASE_IMAGE}}
        RUN echo "hello from {project.name}" > /hello.txt
        CMD ["python3", "-c", "print(open('/hello.txt').read().strip())"]
        """))
    repository = f"{project.name}/hello"
    pushed = access.push_reference(repository, "1")
    build_env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    docker("build", "--pull=false", "--build-arg", f"BASE_IMAGE={runtime}", "-t", pushed,
           str(context), env=build_env)
    config = tmp_path / "docker-config"  # credentials stay out of ~/.docker
    try:
        login = docker("--config", str(config), "login", access.push_server, "--username",
                       access.username, "--password-stdin", input=access.password, check=False)
        assert login.returncode == 0, login.stderr
        push = docker("--config", str(config), "push", pushed, check=False)
        assert push.returncode == 0, push.stderr
    finally:
        docker("rmi", pushed, check=False)
    pull_ref = access.pull_reference(repository, "1")

    # --- on the host: nothing insecure, anonymous pulls refused -----------------
    info = project.on_host("docker info --format '{{json .RegistryConfig}}'")
    assert info.returncode == 0, info.stderr
    registry_config = json.loads(info.stdout)
    assert registry_config["InsecureRegistryCIDRs"] == ["127.0.0.0/8"]
    assert access.pull_server not in (registry_config.get("IndexConfigs") or {})

    anonymous = project.on_host(f"docker pull {pull_ref}")
    assert anonymous.returncode != 0
    assert "no basic auth credentials" in anonymous.stderr or "unauthorized" in anonymous.stderr, (
        anonymous.stderr)

    # --- login and pull over TLS verified by certs.d; run it ------------------
    login = project.on_host(
        f"docker login {access.pull_server} --username {access.username} --password-stdin",
        input=access.password)
    assert login.returncode == 0, login.stderr
    assert "Login Succeeded" in login.stdout
    pull = project.on_host(f"docker pull {pull_ref}")
    assert pull.returncode == 0, pull.stderr
    run = project.on_host(f"docker run --rm {pull_ref}")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"hello from {project.name}"

    # curl has no certs.d: it trusts the CA through the system trust store. The
    # credentials go through curl's config on stdin, never on a command line.
    catalog = project.on_host(f"curl -fsS -K - https://{access.pull_server}/v2/_catalog",
                              input=f'user = "{access.username}:{access.password}"\n')
    assert catalog.returncode == 0, catalog.stderr
    assert repository in json.loads(catalog.stdout)["repositories"]
    # And it really checks: a name the certificate does not carry is refused (curl 60).
    wrong_name = project.on_host(
        f"curl -sS -o /dev/null --resolve wrong.name:5000:{access.pull_server.split(':')[0]} "
        "https://wrong.name:5000/v2/")
    assert wrong_name.returncode == 60, wrong_name.stderr

    # --- the Traefik image, published and pulled ---------------------------------
    traefik = project.cloud.publish_traefik_image(project.spec, project.state_dir)
    assert traefik.startswith(f"{access.pull_server}/stagecraft/traefik:")
    assert "@sha256:" in traefik
    assert project.cloud.publish_traefik_image(project.spec, project.state_dir) == traefik
    version = project.on_host(f"docker pull -q {traefik} >/dev/null && "
                              f"docker run --rm {traefik} version")
    assert version.returncode == 0, version.stderr
    assert "Version:" in version.stdout

    # --- down takes the registry, its volume and its files -------------------------
    down = stagecraft(project.directory, "infra", "down", "--yes")
    assert down.returncode == 0, down.stderr
    assert docker("container", "inspect", container, check=False).returncode != 0
    assert docker("volume", "inspect", volume, check=False).returncode != 0
    assert not (project.state_dir / "registry").exists()
    assert not (project.state_dir / "ca").exists()
