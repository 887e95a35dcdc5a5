"""Backend providers: argument construction, the registry, the generic build command,
and Encore through the Encore CLI STAND-IN (tests/fixtures/encore-standin/encore).

The stand-in is not the Encore CLI: it accepts only the documented
`encore build docker IMAGE:TAG` call and builds a tiny image with a real
`docker build`. Tests that build images need Docker (marked fleet).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from stagecraft.config.schema import Build
from stagecraft.errors import (
    CommandFailed,
    ConfigError,
    EnvironmentMissing,
    ExitCode,
    ProviderError,
)
from stagecraft.providers.backend import (
    BackendProvider,
    BuildRequest,
    available_kinds,
    get_backend_provider,
)
from stagecraft.providers.backend.base import docker_build_argv
from stagecraft.providers.backend.encore import EncoreBackend, encore_build_argv
from stagecraft.providers.backend.generic import GenericBackend
from stagecraft.providers.frontend import get_frontend_provider
from stagecraft.providers.frontend.generic import GenericFrontend

STANDIN_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "encore-standin"
STANDIN = STANDIN_DIR / "encore"


def request(project: Path, tag: str = "reg.example:5000/shop-api:r1", **build) -> BuildRequest:
    return BuildRequest(service="api", build=Build(**build), project_dir=project, tag=tag,
                        project="shop", environment="local", release_id="r1")


def unique_tag(name: str) -> str:
    return f"stagecraft-test/{name}-{uuid.uuid4().hex[:8]}:t1"


@pytest.fixture
def remove_images():
    tags: list[str] = []
    yield tags
    if tags:
        subprocess.run(["docker", "image", "rm", "-f", *tags], capture_output=True)


# ------------------------------------------------------------------ arguments


def test_docker_build_argv_has_every_setting_and_the_context_last(tmp_path):
    req = request(tmp_path, context="svc", dockerfile="docker/Prod.Dockerfile", target="run",
                  args={"VERSION": "1.2", "DEBUG": False, "WORKERS": 4})
    assert docker_build_argv(req) == [
        "docker", "build", "--tag", "reg.example:5000/shop-api:r1",
        "--file", str(tmp_path / "svc" / "docker" / "Prod.Dockerfile"),
        "--target", "run",
        "--build-arg", "VERSION=1.2", "--build-arg", "DEBUG=false", "--build-arg", "WORKERS=4",
        str(tmp_path / "svc"),
    ]


def test_docker_build_argv_without_optional_settings(tmp_path):
    assert docker_build_argv(request(tmp_path)) == [
        "docker", "build", "--tag", "reg.example:5000/shop-api:r1", str(tmp_path)]


def test_build_commands_learn_what_to_build_from_stagecraft_variables(tmp_path):
    req = request(tmp_path, context="api", dockerfile="Dockerfile.prod", target="final")
    assert req.command_env() == {
        "STAGECRAFT_IMAGE": "reg.example:5000/shop-api:r1",
        "STAGECRAFT_SERVICE": "api",
        "STAGECRAFT_CONTEXT": str(tmp_path / "api"),
        "STAGECRAFT_DOCKERFILE": str(tmp_path / "api" / "Dockerfile.prod"),
        "STAGECRAFT_TARGET": "final",
        "STAGECRAFT_PROJECT": "shop",
        "STAGECRAFT_ENV": "local",
        "STAGECRAFT_RELEASE": "r1",
    }


def test_encore_is_called_exactly_as_its_docs_say():
    assert encore_build_argv("r.example/shop-api:20261121T101500Z-3f9c2ab") == [
        "encore", "build", "docker", "r.example/shop-api:20261121T101500Z-3f9c2ab"]


# ------------------------------------------------------------------ registry


def test_builtin_kinds_load_without_installed_entry_points():
    assert {"generic", "encore-ts"} <= set(available_kinds())
    generic = get_backend_provider("generic", {"build": "make image", "workdir": "api"})
    assert isinstance(generic, GenericBackend) and isinstance(generic, BackendProvider)
    assert generic.build_command == "make image"
    encore = get_backend_provider("encore-ts", {"workdir": "backend"})
    assert isinstance(encore, EncoreBackend) and encore.kind == "encore-ts"


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(ProviderError) as raised:
        get_backend_provider("rails")
    assert raised.value.message == "unknown backend provider 'rails'"
    assert raised.value.hint == "use one of: encore-ts, generic (providers.backend.kind)"
    assert raised.value.exit_code == ExitCode.PROVIDER


def test_settings_a_provider_does_not_take_are_a_provider_error():
    with pytest.raises(ProviderError, match="backend provider 'encore-ts' does not accept"):
        get_backend_provider("encore-ts", {"build": "make"})


def test_frontend_registry_and_dev_command(tmp_path):
    frontend = get_frontend_provider("generic", {"dev": "npm run dev", "workdir": "web"})
    assert isinstance(frontend, GenericFrontend)
    dev = frontend.dev_command(tmp_path)
    assert (dev.shell, dev.cwd) == ("npm run dev", tmp_path / "web")
    with pytest.raises(ProviderError, match="unknown frontend provider 'angular'"):
        get_frontend_provider("angular")


def test_frontend_build_runs_in_its_workdir_with_the_variables(tmp_path):
    (tmp_path / "web").mkdir()
    frontend = GenericFrontend(build='echo "$STAGECRAFT_RELEASE" > built.txt; echo done',
                               workdir="web")
    lines: list[str] = []
    assert frontend.build_assets(tmp_path, {"STAGECRAFT_RELEASE": "r7"}, lines.append) is True
    assert (tmp_path / "web" / "built.txt").read_text() == "r7\n"
    assert lines == ["done"]
    assert GenericFrontend().build_assets(tmp_path, {}) is False


def test_dev_commands(tmp_path):
    assert GenericBackend().dev_command(tmp_path) is None
    assert GenericBackend(dev="go run .", workdir="api").dev_command(tmp_path).cwd == tmp_path / "api"
    default = EncoreBackend().dev_command(tmp_path)
    assert (default.shell, default.cwd) == ("encore run", tmp_path)
    assert EncoreBackend(dev="encore run --port 4001").dev_command(tmp_path).shell == \
        "encore run --port 4001"


# ------------------------------------------------------------------ errors before docker


def test_a_missing_context_names_the_setting_to_fix(tmp_path):
    with pytest.raises(ConfigError) as raised:
        GenericBackend().build(request(tmp_path, context="nope"))
    assert raised.value.message == \
        f"service 'api': build context {tmp_path / 'nope'} is not a directory"
    assert raised.value.hint == "fix services.api.build.context (relative to stagecraft.yml)"


def test_a_missing_dockerfile_names_the_setting_to_fix(tmp_path):
    with pytest.raises(ConfigError) as raised:
        GenericBackend().build(request(tmp_path, dockerfile="Prod.Dockerfile"))
    assert raised.value.message == f"service 'api': no Dockerfile at {tmp_path / 'Prod.Dockerfile'}"


def test_which_services_are_the_encore_app(tmp_path):
    (tmp_path / "backend").mkdir()
    (tmp_path / "web").mkdir()
    (tmp_path / "backend" / "encore.app").write_text('{"id": "shop"}')
    found = EncoreBackend()
    assert found.is_encore_service(request(tmp_path, context="backend"))
    assert not found.is_encore_service(request(tmp_path, context="web"))
    pinned = EncoreBackend(workdir="web")
    assert pinned.is_encore_service(request(tmp_path, context="web"))
    assert not pinned.is_encore_service(request(tmp_path, context="backend"))


def test_no_encore_on_path_is_an_environment_error_with_a_hint(tmp_path, monkeypatch):
    (tmp_path / "encore.app").write_text("{}")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(EnvironmentMissing) as raised:
        EncoreBackend().build(request(tmp_path))
    assert raised.value.message == ("service 'api' is an Encore app, but the Encore CLI "
                                    "(`encore`) is not on PATH")
    assert "install the Encore CLI" in raised.value.hint
    assert raised.value.exit_code == ExitCode.ENVIRONMENT


# ------------------------------------------------------------------ the STAND-IN itself


def run_standin(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(STANDIN), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("args", [
    ("build", "docker"),
    ("build", "docker", "--base=node:slim", "shop-api:r1"),
    ("build", "docker", "shop-api:r1", "extra"),
    ("build", "image", "shop-api:r1"),
    ("run",),
])
def test_the_standin_refuses_any_other_call_loudly(tmp_path, args):
    (tmp_path / "encore.app").write_text('{"id": "shop"}')
    done = run_standin(tmp_path, *args)
    assert done.returncode == 2
    assert done.stderr.startswith("encore STAND-IN: unexpected arguments")


def test_the_standin_refuses_a_directory_without_encore_app(tmp_path):
    done = run_standin(tmp_path, "build", "docker", "shop-api:r1")
    assert done.returncode == 2
    assert done.stderr == f"encore STAND-IN: no encore.app in {tmp_path}: not an Encore app directory\n"


def test_the_standin_refuses_a_reference_without_a_tag(tmp_path):
    (tmp_path / "encore.app").write_text("{}")
    done = run_standin(tmp_path, "build", "docker", "shop-api")
    assert done.returncode == 2
    assert "'shop-api' is not an IMAGE:TAG reference" in done.stderr


# ------------------------------------------------------------------ real builds


@pytest.mark.fleet
def test_generic_docker_build_applies_args_and_target(tmp_path, remove_images):
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "Build.Dockerfile").write_text(
        "FROM scratch AS base\nARG GREETING\nLABEL greeting=$GREETING\n"
        "FROM base AS final\nLABEL stage=final\n")
    tag = unique_tag("generic")
    remove_images.append(tag)
    lines: list[str] = []
    built = GenericBackend().build(
        request(tmp_path, tag=tag, context="svc", dockerfile="Build.Dockerfile", target="base",
                args={"GREETING": "hello"}), lines.append)
    assert built.push_ref == built.pull_ref == tag and built.digest is None
    assert built.image_id and built.image_id.startswith("sha256:")
    labels = inspect_labels(tag)
    assert labels == {"greeting": "hello"}  # the target stopped before the final stage
    assert any("Successfully tagged" in line or "naming to" in line for line in lines)


@pytest.mark.fleet
def test_generic_build_command_gets_the_tag_and_must_produce_it(tmp_path, remove_images):
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "Dockerfile").write_text("FROM scratch\nLABEL made-by=command\n")
    tag = unique_tag("command")
    remove_images.append(tag)
    command = ('env | grep ^STAGECRAFT_ | sort > "$STAGECRAFT_SERVICE.env" && '
               'docker build -q -t "$STAGECRAFT_IMAGE" "$STAGECRAFT_CONTEXT"')
    built = GenericBackend(build=command).build(request(tmp_path, tag=tag, context="api"))
    assert built.pull_ref == tag
    assert inspect_labels(tag) == {"made-by": "command"}
    seen = dict(line.split("=", 1) for line in (tmp_path / "api.env").read_text().splitlines())
    assert seen["STAGECRAFT_IMAGE"] == tag
    assert seen["STAGECRAFT_SERVICE"] == "api"
    assert seen["STAGECRAFT_RELEASE"] == "r1"

    with pytest.raises(CommandFailed) as raised:
        GenericBackend(build="true").build(request(tmp_path, tag=unique_tag("none"),
                                                   context="api"))
    assert "the build command finished but Docker has no image" in raised.value.message
    assert "$STAGECRAFT_IMAGE" in raised.value.hint


@pytest.mark.fleet
def test_encore_builds_through_the_cli_on_path_here_the_standin(tmp_path, monkeypatch,
                                                                 remove_images):
    """The production code path finds `encore` on PATH; the STAND-IN is put first."""
    app = tmp_path / "backend"
    app.mkdir()
    (app / "encore.app").write_text(json.dumps({"id": "shop-7x2"}))
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{STANDIN_DIR}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ENCORE_STANDIN_LOG", str(calls))
    tag = unique_tag("encore")
    remove_images.append(tag)
    lines: list[str] = []
    built = EncoreBackend().build(request(tmp_path, tag=tag, context="backend"), lines.append)
    assert [json.loads(line) for line in calls.read_text().splitlines()] == [
        {"argv": ["build", "docker", tag], "cwd": str(app)}]
    assert built.pull_ref == tag and built.image_id
    assert inspect_labels(tag) == {"dev.encore.app-id": "shop-7x2", "dev.encore.standin": "true"}
    assert f"encore STAND-IN: building {tag} for app shop-7x2" in lines


def inspect_labels(tag: str) -> dict[str, str]:
    done = subprocess.run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}",
                           tag], capture_output=True, text=True, check=True)
    return json.loads(done.stdout) or {}
