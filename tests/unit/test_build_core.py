"""The build core (stagecraft.deploy.build) and `stagecraft build`: which services are built,
how images are named, from:/image: services, registries, errors, release ids.

The core is driven with a recording backend provider (a provider of our own
interface, not a stand-in for Docker) where no image needs to exist; tests that
build for real use Docker and are marked fleet.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from stagecraft.deploy.build import (
    BuildFailed,
    RegistryTarget,
    build_images,
    pushed_digest,
    registry_target,
    repository,
    select_services,
    services_to_build,
)
from stagecraft.cli.main import main
from stagecraft.config.loader import load_config_text
from stagecraft.providers.cloud import CloudCapabilities
from stagecraft.errors import CommandFailed, ConfigError, ExitCode, SecretMissing, UsageError
from stagecraft.providers.backend import BuildRequest, BuiltImage

# Most tests build for a cloud without a registry of its own (digitalocean), which
# has no provider yet: a registered stand-in lets the config name it.
pytestmark = pytest.mark.usefixtures("stand_in_providers_module")

CONFIG = """
version: 1
project:
  name: shop
  registry: {{ server: registry.example.com/acme, username: deploy, password: "{password}" }}
providers:
  cloud: {{ kind: {cloud} }}
  {frontend}
services:
  api:
    build: {{ context: api, args: {{ VERSION: "2" }} }}
    on: [app]
  web:
    build: {{ context: web }}
    on: [app]
  worker:
    from: api
    command: ["run-worker"]
    on: [app]
  cache:
    image: valkey/valkey:8
    on: [app]
  cron:
    from: cache
    on: [app]
environments:
  prod:
    hosts: [{{ name: app-1, roles: [app] }}]
"""


def environment(*, password: str = "${env:SHOP_REGISTRY_PASSWORD}", cloud: str = "digitalocean",
                frontend: str = ""):
    text = CONFIG.format(password=password, cloud=cloud, frontend=frontend)
    if cloud == "digitalocean":
        text = text.replace("kind: digitalocean", 'kind: digitalocean, token: "${env:T}", region: fra1')
    return load_config_text(text).environment("prod")


class RecordingBackend:
    """Records build requests; 'builds' nothing (or fails for one service)."""

    kind = "recording"

    def __init__(self, fail: str | None = None) -> None:
        self.requests: list[BuildRequest] = []
        self.fail = fail

    def build(self, request: BuildRequest, on_line=None) -> BuiltImage:
        self.requests.append(request)
        if on_line:
            on_line(f"building {request.tag}")
        if request.service == self.fail:
            raise CommandFailed("`docker build` exited with code 1", argv=["docker", "build"],
                                returncode=1, output_tail="\n".join(
                                    [f"step {n}" for n in range(1, 21)]
                                    + ["COPY failed: file not found: package.json"]))
        return BuiltImage(service=request.service, push_ref=request.tag, pull_ref=request.tag,
                          image_id=f"sha256:{request.service}")

    def dev_command(self, project_dir):
        return None


TARGET = RegistryTarget(push_server="127.0.0.1:5443", pull_server="10.201.7.2:5000",
                        username="stagecraft", password="s3cret-pw")


# ----------------------------------------------------------------- selection


def test_all_services_by_default_in_the_config_order():
    env = environment()
    assert select_services(env, None) == ["api", "web", "worker", "cache", "cron"]
    assert select_services(env, ["worker", "api"]) == ["api", "worker"]


def test_an_unknown_service_lists_the_available_ones():
    with pytest.raises(UsageError) as raised:
        select_services(environment(), ["api", "nope", "db"])
    assert raised.value.message == "no service named 'nope', 'db' in environment 'prod'"
    assert raised.value.hint == "services: api, web, worker, cache, cron"


def test_a_from_service_builds_its_target_even_when_the_target_is_not_selected():
    env = environment()
    assert services_to_build(env, ["worker"]) == ["api"]
    assert services_to_build(env, ["cache", "cron"]) == []  # image: is never built
    assert services_to_build(env, select_services(env, None)) == ["api", "web"]


# ----------------------------------------------------------------- names and results


def test_repository_names():
    assert repository("127.0.0.1:5443", "shop", "web") == "127.0.0.1:5443/shop-web"
    assert repository("registry.example.com/acme/", "shop", "web") == \
        "registry.example.com/acme/shop-web"
    assert repository(None, "shop", "web") == "shop-web"


def test_build_without_push_tags_with_the_push_server_and_reuses_images(tmp_path):
    backend = RecordingBackend()
    lines: list[tuple[str, str]] = []
    images = build_images(environment(), tmp_path, "20261121T101500Z-3f9c2ab", TARGET,
                          push=False, backend=backend, on_line=lambda s, l: lines.append((s, l)))
    tag = "127.0.0.1:5443/shop-api:20261121T101500Z-3f9c2ab"
    assert [r.tag for r in backend.requests] == [
        tag, "127.0.0.1:5443/shop-web:20261121T101500Z-3f9c2ab"]
    first = backend.requests[0]
    assert (first.service, first.project, first.environment, first.release_id) == \
        ("api", "shop", "prod", "20261121T101500Z-3f9c2ab")
    assert first.project_dir == tmp_path.resolve() and first.build.args == {"VERSION": "2"}
    assert list(images) == ["api", "web", "worker", "cache", "cron"]
    assert images["api"] == BuiltImage("api", tag, tag, None, "build", None, "sha256:api")
    assert images["worker"] == replace(images["api"], service="worker", source="from",
                                       from_service="api")
    assert images["cache"] == BuiltImage("cache", None, "valkey/valkey:8", source="image")
    assert images["cron"].pull_ref == "valkey/valkey:8"
    assert images["cron"].source == "from" and images["cron"].from_service == "cache"
    assert lines[0] == ("api", f"building {tag}")


def test_selected_from_service_returns_its_target_too(tmp_path):
    backend = RecordingBackend()
    images = build_images(environment(), tmp_path, "r1", None, services=["worker"],
                          push=False, backend=backend)
    assert [r.service for r in backend.requests] == ["api"]
    assert list(images) == ["api", "worker"]
    assert images["api"].pull_ref == "shop-api:r1"  # no registry: local names
    assert images["worker"].pull_ref == "shop-api:r1"


def test_only_image_services_build_nothing(tmp_path):
    backend = RecordingBackend()
    images = build_images(environment(), tmp_path, "r1", TARGET, services=["cache"],
                          backend=backend)
    assert backend.requests == []
    assert images == {"cache": BuiltImage("cache", None, "valkey/valkey:8", source="image")}


def test_image_only_services_need_no_registry(tmp_path):
    images = build_images(environment(), tmp_path, "r1", None, services=["cron"],
                          backend=RecordingBackend())
    assert images["cron"].pull_ref == "valkey/valkey:8"


def test_push_needs_a_registry(tmp_path):
    with pytest.raises(ConfigError) as raised:
        build_images(environment(), tmp_path, "r1", None, backend=RecordingBackend())
    assert raised.value.message == "environment 'prod' has no registry to push images to"
    assert raised.value.hint == "set project.registry in stagecraft.yml, or build with --no-push"


def test_a_failed_build_names_the_service_and_shows_the_last_lines(tmp_path):
    with pytest.raises(BuildFailed) as raised:
        build_images(environment(), tmp_path, "r1", None, push=False,
                     backend=RecordingBackend(fail="web"))
    error = raised.value
    assert error.exit_code == ExitCode.COMMAND
    assert error.service == "web"
    lines = error.message.splitlines()
    assert lines[0] == ("service 'web': building shop-web:r1 failed (exit code 1); "
                        "last lines of output:")
    assert lines[-1] == "    COPY failed: file not found: package.json"
    assert len(lines) == 1 + 15
    assert error.returncode == 1


def test_the_frontend_build_runs_once_before_images(tmp_path):
    (tmp_path / "web").mkdir()
    env = environment(frontend='frontend: { kind: generic, workdir: web, '
                               'build: "echo $STAGECRAFT_RELEASE >> dist.txt" }')

    class Checking(RecordingBackend):
        def build(self, request, on_line=None):
            assert (tmp_path / "web" / "dist.txt").read_text() == "r9\n"
            return super().build(request, on_line)

    backend = Checking()
    build_images(env, tmp_path, "r9", None, push=False, backend=backend)
    assert len(backend.requests) == 2
    assert (tmp_path / "web" / "dist.txt").read_text() == "r9\n"


def test_a_failed_frontend_build_is_a_build_failure(tmp_path):
    (tmp_path / "web").mkdir()
    env = environment(frontend='frontend: { kind: generic, workdir: web, '
                               'build: "echo vite exploded; exit 3" }')
    with pytest.raises(BuildFailed) as raised:
        build_images(env, tmp_path, "r1", None, push=False, backend=RecordingBackend())
    assert raised.value.message == ("service 'frontend': the frontend build command failed "
                                    "(exit code 3); last lines of output:\n    vite exploded")


def test_push_digest_is_read_from_docker_push_output():
    output = ("The push refers to repository [127.0.0.1:5443/shop-web]\n"
              "5f70bf18a086: Pushed\n"
              "r1: digest: sha256:" + "ab" * 32 + " size: 528\n")
    assert pushed_digest(output) == "sha256:" + "ab" * 32
    assert pushed_digest("no digest here") is None


# ----------------------------------------------------------------- registries


class NoRegistryCloud:
    """A cloud that runs no registry (as DigitalOcean): project.registry is used."""

    capabilities = CloudCapabilities()


NO_REGISTRY_CLOUD = NoRegistryCloud()


def test_registry_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("SHOP_REGISTRY_PASSWORD", "pw-from-env")
    target = registry_target(environment(), Path("."), NO_REGISTRY_CLOUD)
    assert target == RegistryTarget("registry.example.com/acme", "registry.example.com/acme",
                                    "deploy", "pw-from-env")
    assert "pw-from-env" not in repr(target)
    assert target.to_dict() == {"push_server": "registry.example.com/acme",
                                "pull_server": "registry.example.com/acme", "username": "deploy"}


def test_registry_password_variable_missing(monkeypatch):
    monkeypatch.delenv("SHOP_REGISTRY_PASSWORD", raising=False)
    with pytest.raises(SecretMissing) as raised:
        registry_target(environment(), Path("."), NO_REGISTRY_CLOUD)
    assert raised.value.message == ("environment variable SHOP_REGISTRY_PASSWORD is not set "
                                    "(${env:SHOP_REGISTRY_PASSWORD})")


def test_secret_references_come_from_the_secrets_provider(tmp_path):
    (tmp_path / ".env.prod").write_text("REGISTRY_PASSWORD=from-envfile-123\n")
    env = environment(password="${secret:REGISTRY_PASSWORD}")
    target = registry_target(env, tmp_path, NO_REGISTRY_CLOUD)
    assert target.password == "from-envfile-123"
    with pytest.raises(SecretMissing, match="does not exist"):
        registry_target(env, tmp_path / "elsewhere", NO_REGISTRY_CLOUD)


def test_the_local_cloud_brings_its_own_registry(monkeypatch, tmp_path):
    """For cloud local, the registry comes from the cloud provider's registry_access."""
    seen = {}

    class Access:
        push_server, pull_server = "127.0.0.1:5443", "10.201.7.2:5000"
        username, password, ca_pem = "stagecraft", "generated-pw", "-----BEGIN CERTIFICATE-----"

    class Cloud:
        capabilities = CloudCapabilities(registry=True)

        def registry_access(self, spec, state_dir):
            seen.update(project=spec.project, state_dir=state_dir)
            return Access()

    target = registry_target(environment(cloud="local"), tmp_path, Cloud())
    assert target == RegistryTarget("127.0.0.1:5443", "10.201.7.2:5000", "stagecraft",
                                    "generated-pw", "-----BEGIN CERTIFICATE-----")
    assert seen == {"project": "shop", "state_dir": tmp_path.resolve() / ".stagecraft" / "prod"}


# ----------------------------------------------------------------- the command


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    out, err = capsys.readouterr()
    return int(exited.value.code), out, err


def project(tmp_path: Path) -> Path:
    text = CONFIG.format(password="${env:SHOP_REGISTRY_PASSWORD}", cloud="local", frontend="")
    (tmp_path / "stagecraft.yml").write_text(text)
    return tmp_path / "stagecraft.yml"


def test_cli_unknown_service(tmp_path, capsys):
    config = project(tmp_path)
    code, out, err = run_cli(["build", "-c", str(config), "nope", "--no-push"], capsys)
    assert (code, out) == (2, "")
    assert err == ("error: no service named 'nope' in environment 'prod'\n"
                   "hint: services: api, web, worker, cache, cron\n")


def test_cli_rejects_a_release_id_that_cannot_be_a_tag(tmp_path, capsys):
    config = project(tmp_path)
    code, _, err = run_cli(["build", "-c", str(config), "--no-push", "--release", "v1/2"],
                           capsys)
    assert code == 2
    assert "Invalid value for --release" in err


def test_cli_dry_run_names_what_would_be_built(tmp_path, capsys):
    config = project(tmp_path)
    code, out, err = run_cli(["build", "-c", str(config), "worker", "--no-push", "--dry-run",
                              "--release", "r5", "--output", "json"], capsys)
    assert code == 0, err
    assert json.loads(out) == {"dry_run": True, "release": "r5", "push": False,
                               "build": {"api": "shop-api:r5"}}
