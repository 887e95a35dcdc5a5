"""Per-host Compose files (DEPLOY_COMPOSE_GEN, CORE_COMPOSE): golden files and the
rules of spec/deploy/contracts.md.

Golden files live in tests/golden/compose/<env>/<host>/; their input is
tests/golden/compose/stagecraft.yml and inputs.json. After an intended change,
rewrite them with ``STAGECRAFT_UPDATE_GOLDEN=1 pytest tests/unit/test_render_compose.py``
and review the diff.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from stagecraft.config import load_config
from stagecraft.errors import ExitCode, SecretMissing
from stagecraft.render.compose import (
    RenderError,
    dotenv_line,
    go_duration,
    image_of,
    private_rule,
    render_compose,
)
from stagecraft.render.host import host_of, render_host
from stagecraft.render.state import RenderedFile, RenderInput, TlsSettings

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden" / "compose"
HOSTS = [("two", "front-1"), ("two", "app-2"), ("three", "edge-1"), ("three", "app-1"),
         ("three", "db-1"), ("single", "solo")]


@pytest.fixture(scope="module")
def config():
    return load_config(GOLDEN / "stagecraft.yml")


def golden_input(env: str) -> RenderInput:
    data = json.loads((GOLDEN / "inputs.json").read_text())
    return RenderInput(release_id=data["release_id"], images=data["images"],
                       private_ips=data["private_ips"], secrets=data["secrets"],
                       tls=TlsSettings(**data["tls"][env]))


def check_golden_dir(root: Path, files: Mapping[str, RenderedFile]) -> None:
    """Compare rendered files with the golden directory ``root`` (or rewrite it)."""
    if os.environ.get("STAGECRAFT_UPDATE_GOLDEN") == "1":
        shutil.rmtree(root, ignore_errors=True)
        for path, file in files.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(file.content)
        return
    if not root.is_dir():
        pytest.fail(f"golden dir {root} is missing: run with STAGECRAFT_UPDATE_GOLDEN=1 to "
                    "write it, then review it")
    on_disk = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert on_disk == sorted(files), f"the files rendered differ from those in {root}"
    for path, file in files.items():
        assert file.content == (root / path).read_text(), (
            f"{path} differs from {root / path}; if the change is intended, rerun with "
            "STAGECRAFT_UPDATE_GOLDEN=1 and review the diff")


def compose_of(config, env: str, host: str, inp: RenderInput | None = None) -> dict:
    environment = config.environments[env]
    return render_compose(environment, host_of(environment, host),
                          inp or golden_input(env)).document


# ------------------------------------------------------------------------- golden


@pytest.mark.parametrize(("env", "host"), HOSTS)
def test_release_files_match_their_golden_files(config, env, host):
    rendered = render_host(config.environments[env], host, golden_input(env))
    check_golden_dir(GOLDEN / env / host, rendered.release_files)


# ---------------------------------------------------------------------- placement


@pytest.mark.parametrize(("env", "host", "services"), [
    ("two", "front-1", ["admin", "api", "web"]),
    ("two", "app-2", ["admin", "api", "db", "web", "worker"]),
    ("three", "edge-1", []),
    ("three", "app-1", ["admin", "api", "web", "worker"]),
    ("three", "db-1", ["db"]),
])
def test_a_host_gets_exactly_the_services_its_roles_run(config, env, host, services):
    assert list(compose_of(config, env, host)["services"]) == services


def test_the_project_is_named_after_project_and_environment(config):
    assert compose_of(config, "three", "app-1")["name"] == "shop-three"


# ------------------------------------------------------------------------- labels


def test_a_routed_service_carries_the_routing_labels_of_the_contract(config):
    api = compose_of(config, "two", "front-1")["services"]["api"]
    labels = dict(api["labels"])
    assert len(labels.pop("stagecraft.config-hash")) == 16
    balancer = json.loads(labels.pop("stagecraft.traefik.load-balancer"))
    assert labels == {
        "stagecraft.project": "shop-two",
        "stagecraft.service": "api",
        "stagecraft.strategy": "rolling",
        "stagecraft.traefik.service": "shop-two-api",
        "stagecraft.traefik.port": "8080",
    }
    # Traefik's own check of each container; the servers are the rollout's to write.
    assert balancer == {"passHostHeader": True,
                        "healthCheck": {"path": "/up", "hostname": "api.two.example.test",
                                        "interval": "2s", "timeout": "2s"}}
    # No Docker-provider label: Traefik learns the containers from the rollout only.
    assert not any(key.startswith("traefik.") for key in api["labels"])
    assert api["networks"] == ["default", "stagecraft"]


def test_a_service_with_only_prefixed_routes_also_answers_its_health_host(config):
    env = config.environments["two"]
    # The edge health-checks /health with this Host; PathPrefix(/admin) would miss it.
    assert private_rule(env, "admin") == (
        "(Host(`two.example.test`) && PathPrefix(`/admin`)) || Host(`admin.shop-two.internal`)")
    assert private_rule(env, "web") == "Host(`two.example.test`) || Host(`www.two.example.test`)"


def test_unrouted_services_have_no_traefik_labels_and_stay_on_the_default_network(config):
    services = compose_of(config, "two", "app-2")["services"]
    for name in ("worker", "db"):
        assert not [k for k in services[name]["labels"] if k.startswith("traefik.")]
        assert "networks" not in services[name]
    assert services["worker"]["labels"]["stagecraft.strategy"] == "recreate"
    assert services["db"]["labels"]["stagecraft.strategy"] == "stateful"


def test_the_shared_network_is_external_and_only_declared_when_used(config):
    assert compose_of(config, "two", "front-1")["networks"] == {
        "stagecraft": {"external": True, "name": "stagecraft"}}
    assert "networks" not in compose_of(config, "three", "db-1")


# -------------------------------------------------------------------- definition


def test_runtime_settings_follow_the_config(config):
    services = compose_of(config, "three", "app-1")["services"]
    api, worker = services["api"], services["worker"]
    assert api["deploy"] == {"replicas": 3}  # the environment's override
    assert api["restart"] == "unless-stopped"
    assert api["stop_grace_period"] == "10s"
    assert worker["stop_grace_period"] == "60s"
    assert api["logging"] == {"driver": "json-file",
                              "options": {"max-size": "10m", "max-file": "5"}}
    assert api["env_file"] == ["env/api.env"]
    assert "env_file" not in services["web"]


def test_a_service_with_from_runs_the_image_of_the_service_it_names(config):
    services = compose_of(config, "three", "app-1")["services"]
    assert services["worker"]["image"] == services["api"]["image"]
    assert services["api"]["image"].startswith("registry.test/shop-api@sha256:")


def test_dollars_reach_the_container_literally(config):
    services = compose_of(config, "two", "app-2")["services"]
    env = services["api"]["environment"]
    # Compose interpolates $, so it is doubled; the config's $${ is a literal ${.
    assert env["PRICE_NOTE"] == "costs $$5"
    assert env["TEMPLATE"] == "$${name}"
    assert env["FEATURE_SEARCH"] == "true" and env["WORKERS"] == "4"
    assert services["worker"]["command"] == ["node", "dist/worker.js", "--queue", "$${QUEUE}"]


def test_the_http_healthcheck_probes_the_port_with_the_first_client_found(config):
    check = compose_of(config, "two", "front-1")["services"]["api"]["healthcheck"]
    kind, script = check["test"]
    assert kind == "CMD-SHELL"
    assert script.startswith("if command -v curl >/dev/null 2>&1; then ")
    for client in ("curl -fsS -o /dev/null http://127.0.0.1:8080/up",
                   "wget -q -O /dev/null http://127.0.0.1:8080/up",
                   "python3 -c"):
        assert client in script
    assert (check["interval"], check["timeout"], check["retries"], check["start_period"]) == \
        ("2s", "2s", 3, "5s")


def test_a_command_healthcheck_runs_as_given(config):
    check = compose_of(config, "two", "app-2")["services"]["db"]["healthcheck"]
    assert check["test"] == ["CMD-SHELL", "pg_isready -U postgres"]
    assert check["timeout"] == "3s"  # the config's default


def test_a_carried_block_volume_binds_the_services_directory_and_never_creates_it(config):
    document = compose_of(config, "three", "db-1")
    assert document["services"]["db"]["volumes"] == [
        {"type": "bind", "source": "/mnt/pgdata/db", "target": "/var/lib/postgresql/data",
         "bind": {"create_host_path": False}},
        "/srv/backups:/backups:ro"]
    assert "volumes" not in document


def test_other_named_volumes_are_docker_volumes_named_after_the_environment(config):
    document = compose_of(config, "single", "solo")
    assert document["services"]["db"]["volumes"][0] == "pgdata:/var/lib/postgresql/data"
    assert document["volumes"] == {"pgdata": {"name": "shop-single-pgdata"}}


def test_the_release_id_appears_nowhere_in_the_compose_file(config):
    inp = replace(golden_input("three"), release_id="20991231T235959Z-feedbee")
    files = render_host(config.environments["three"], "app-1", inp).release_files
    text = files["compose.yml"].content
    assert "feedbee" not in text
    assert yaml.safe_load(text)["name"] == "shop-three"


# ------------------------------------------------------------------------- errors


def test_a_missing_image_names_the_service(config):
    inp = golden_input("three")
    images = {k: v for k, v in inp.images.items() if k != "api"}
    with pytest.raises(RenderError) as caught:
        render_compose(config.environments["three"], host_of(config.environments["three"], "app-1"),
                       replace(inp, images=images))
    # api is missing; the first service that needs it (sorted: api) is named.
    assert "no image for service 'api'" in caught.value.message
    assert caught.value.exit_code == ExitCode.PLAN


def test_a_service_with_from_names_the_image_it_lacks(config):
    env = config.environments["three"]
    with pytest.raises(RenderError,
                       match=r"no image for service 'api' \(it runs the image of 'api'\)"):
        image_of(env, "worker", {})


def test_a_missing_secret_names_service_and_secret(config):
    inp = golden_input("three")
    secrets = {k: v for k, v in inp.secrets.items() if k != "POSTGRES_PASSWORD"}
    with pytest.raises(SecretMissing) as caught:
        render_host(config.environments["three"], "db-1", replace(inp, secrets=secrets))
    assert "service 'db' needs secret POSTGRES_PASSWORD" in caught.value.message
    assert "POSTGRES_PASSWORD" in caught.value.hint


def test_a_reference_in_a_plain_env_value_is_refused(config):
    env = config.environments["single"]
    api = env.services["api"].model_copy(update={"env": {"TOKEN": "${secret:API_KEY}"}})
    env = env.model_copy(update={"services": {**env.services, "api": api}})
    with pytest.raises(RenderError, match=r"services.api.env.TOKEN holds the reference "
                                          r"\$\{secret:API_KEY\}"):
        render_compose(env, host_of(env, "solo"), golden_input("single"))


def test_a_name_in_both_env_and_secrets_is_refused(config):
    env = config.environments["single"]
    api = env.services["api"].model_copy(update={"env": {"API_KEY": "x"}})
    env = env.model_copy(update={"services": {**env.services, "api": api}})
    with pytest.raises(RenderError, match="sets API_KEY both in env: and in secrets:"):
        render_compose(env, host_of(env, "solo"), golden_input("single"))


# ---------------------------------------------------------------------- env files


@pytest.mark.parametrize(("value", "line"), [
    ("plain", "K='plain'"),
    ("has $HOME and \"q\" # and \\ inside", "K='has $HOME and \"q\" # and \\ inside'"),
    ("two\nlines", "K='two\nlines'"),
    ("", "K=''"),
    ("it's", "K=\"it's\""),
    ("it's \"x\" \\ y\nz", "K=\"it's \\\"x\\\" \\\\ y\\nz\""),
    ("ends\\", "K=ends\\"),
    ("inner space\\", "K=inner space\\"),
])
def test_env_file_lines_pick_a_quoting_compose_reads_back_unchanged(value, line):
    assert dotenv_line("K", value, service="api") == line


@pytest.mark.parametrize("value", ["it's $5", "it's \"", " lead\\", "a #b\\", "$x\\",
                                   "two\nlines\\", "nul\x00"])
def test_env_file_values_compose_cannot_carry_are_refused(value):
    with pytest.raises(RenderError, match="secret K of service 'api'"):
        dotenv_line("K", value, service="api")


def test_go_durations():
    assert [go_duration(d) for d in ("2s", "1500ms", "1m", "1h", "0s", "0.5s")] == \
        ["2s", "1500ms", "60s", "3600s", "0s", "500ms"]


PRIVATE_DB = """
version: 1
project: { name: shop }
providers: { cloud: { kind: local }, network: { kind: none } }
services:
  web:
    image: reg/web:1
    port: 8080
    healthcheck: { path: /up }
    on: [app]
    routes: [{ host: shop.localhost }]
  db:
    image: reg/db:1
    port: 5432
    stateful: true
    on: [db]
environments:
  local:
    hosts:
      - { name: one, roles: [edge, app, db] }
      - { name: two, roles: [app] }
"""


def test_a_private_service_is_published_on_its_host_private_address_and_named_elsewhere():
    from stagecraft.config.loader import load_config_text
    from stagecraft.render.compose import private_services

    env = load_config_text(PRIVATE_DB).environments["local"]
    inp = RenderInput(release_id="20261121T101500Z-3f9c2ab",
                      images={"web": "reg/web:1", "db": "reg/db:1"},
                      private_ips={"one": "10.9.0.2", "two": "10.9.0.3"})
    assert private_services(env) == {"db": "one"}
    one = render_compose(env, host_of(env, "one"), inp).document["services"]
    two = render_compose(env, host_of(env, "two"), inp).document["services"]
    assert one["db"]["ports"] == ["10.9.0.2:5432:5432"]
    assert "extra_hosts" not in one["web"]  # Compose's own DNS finds db on its host
    assert "ports" not in one["web"]
    assert two["web"]["extra_hosts"] == ["db:10.9.0.2"]
    assert "db" not in two
