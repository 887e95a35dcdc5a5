"""Everything one host needs for one release: render_host / render_fleet, release.json,
the desired state, and the properties of the config hash (spec/deploy/compose.md).

Uses the input of the golden files: tests/golden/compose/stagecraft.yml and inputs.json.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from stagecraft.config import load_config
from stagecraft.config.schema import Healthcheck, ResolvedEnvironment
from stagecraft.render.compose import RenderError
from stagecraft.render.host import render_fleet, render_host
from stagecraft.render.state import HostState, RenderInput, TlsSettings

REPO = Path(__file__).resolve().parents[2]
INPUTS = REPO / "tests" / "golden" / "compose"


@pytest.fixture(scope="module")
def config():
    return load_config(INPUTS / "stagecraft.yml")


def golden_input(env: str) -> RenderInput:
    data = json.loads((INPUTS / "inputs.json").read_text())
    return RenderInput(release_id=data["release_id"], images=data["images"],
                       private_ips=data["private_ips"], secrets=data["secrets"],
                       tls=TlsSettings(**data["tls"][env]))


def with_service(environment: ResolvedEnvironment, name: str, **changes) -> ResolvedEnvironment:
    service = environment.services[name].model_copy(update=changes)
    return environment.model_copy(update={"services": {**environment.services, name: service}})


def hashes(env: ResolvedEnvironment, host: str, inp: RenderInput) -> dict[str, str]:
    state = render_host(env, host, inp).state
    return {name: s.config_hash for name, s in state.services.items()}


# -------------------------------------------------------------------------- files


def test_the_fleet_is_every_host_in_the_environments_order(config):
    fleet = render_fleet(config.environments["three"], golden_input("three"))
    assert list(fleet) == ["edge-1", "app-1", "db-1"]
    assert all(render.host == name for name, render in fleet.items())


def test_release_files_are_compose_release_json_and_a_secret_env_file_per_secret_user(config):
    render = render_host(config.environments["two"], "app-2", golden_input("two"))
    files = render.release_files
    assert sorted(files) == ["compose.yml", "env/api.env", "env/db.env", "env/worker.env",
                             "release.json"]
    for path in ("env/api.env", "env/db.env", "env/worker.env"):
        assert (files[path].mode, files[path].secret) == (0o600, True)
    for path in ("compose.yml", "release.json"):
        assert (files[path].mode, files[path].secret) == (0o644, False)
    assert "POSTGRES_PASSWORD='pa$$w0rd #1'" in files["env/db.env"].content


def test_secret_values_stay_in_the_secret_files(config):
    inp = golden_input("two")
    for env_name in ("two", "three", "single"):
        for render in render_fleet(config.environments[env_name], golden_input(env_name)).values():
            for files in (render.release_files, render.traefik_files):
                for path, file in files.items():
                    if file.secret:
                        continue
                    for value in inp.secrets.values():
                        assert value not in file.content, f"{env_name}/{render.host}/{path}"
                    assert "TEST LEAF KEY" not in file.content


def test_release_json_names_the_release_and_the_desired_state(config):
    render = render_host(config.environments["three"], "app-1", golden_input("three"))
    data = json.loads(render.release_files["release.json"].content)
    assert data == {
        "format": 1, "release_id": "20261121T101500Z-3f9c2ab", "project": "shop",
        "environment": "three", "compose_project": "shop-three", "host": "app-1",
        **render.state.to_dict()}
    assert HostState.from_dict(data) == render.state


def test_the_state_matches_the_compose_file(config):
    render = render_host(config.environments["three"], "app-1", golden_input("three"))
    compose = yaml.safe_load(render.release_files["compose.yml"].content)
    assert sorted(render.state.services) == sorted(compose["services"])
    for name, service in render.state.services.items():
        definition = compose["services"][name]
        assert service.image == definition["image"]
        assert service.config_hash == definition["labels"]["stagecraft.config-hash"]
        assert service.strategy == definition["labels"]["stagecraft.strategy"]
        assert service.replicas == definition["deploy"]["replicas"]
    assert render.state.services["api"].replicas == 3
    assert len(render.state.traefik_hash) == 16


def test_an_unknown_host_is_an_error_listing_the_hosts(config):
    with pytest.raises(RenderError) as caught:
        render_host(config.environments["three"], "app-9", golden_input("three"))
    assert caught.value.message == "environment 'three' has no host 'app-9'"
    assert caught.value.hint == "hosts of 'three': edge-1, app-1, db-1"


# --------------------------------------------------------------- hash properties


release_ids = st.builds(
    lambda day, sha, dirty: f"2026{day:04d}T101500Z-{sha}{'-dirty' if dirty else ''}",
    st.integers(101, 1231), st.text("0123456789abcdef", min_size=7, max_size=7), st.booleans())


@settings(max_examples=25, deadline=None)
@given(release_ids)
def test_the_release_id_changes_release_json_only(config, release_id):
    env = config.environments["two"]
    base = render_fleet(env, golden_input("two"))
    other = render_fleet(env, replace(golden_input("two"), release_id=release_id))
    for host, render in base.items():
        assert other[host].state == render.state
        assert other[host].traefik_files == render.traefik_files
        for path, file in render.release_files.items():
            if path != "release.json":
                assert other[host].release_files[path] == file


@pytest.mark.parametrize("change", [
    "image", "env", "secret", "port", "healthcheck", "command", "replicas", "volume", "route"])
def test_the_config_hash_follows_what_changed_and_only_for_that_service(config, change):
    env, inp = config.environments["two"], golden_input("two")
    if change == "image":
        inp = replace(inp, images={**inp.images, "web": "ghcr.io/acme/web:1.3"})
    elif change == "env":
        env = with_service(env, "web", env={"LOG_LEVEL": "debug"})
    elif change == "secret":
        inp = replace(inp, secrets={**inp.secrets, "POSTGRES_PASSWORD": "another"})
    elif change == "port":
        env = with_service(env, "web", port=3001)
    elif change == "healthcheck":
        env = with_service(env, "web", healthcheck=Healthcheck(path="/", interval="3s"))
    elif change == "command":
        env = with_service(env, "worker", command=["node", "dist/other.js"])
    elif change == "replicas":
        env = with_service(env, "admin", replicas=2)
    elif change == "volume":
        env = with_service(env, "db", volumes=["pgdata:/data"])
    elif change == "route":
        env = with_service(env, "admin", routes=[env.services["admin"].routes[0].model_copy(
            update={"host": "admin.two.example.test", "path": "/"})])
    changed_service = {"image": "web", "env": "web", "secret": "db", "port": "web",
                       "healthcheck": "web", "command": "worker", "replicas": "admin",
                       "volume": "db", "route": "admin"}[change]
    before = hashes(config.environments["two"], "app-2", golden_input("two"))
    after = hashes(env, "app-2", inp)
    assert after[changed_service] != before[changed_service]
    assert {k: v for k, v in after.items() if k != changed_service} == \
        {k: v for k, v in before.items() if k != changed_service}


def test_an_image_change_of_a_service_changes_the_services_that_run_its_image(config):
    inp = golden_input("two")
    before = hashes(config.environments["two"], "app-2", inp)
    after = hashes(config.environments["two"], "app-2",
                   replace(inp, images={**inp.images, "api": "registry.test/shop-api:new"}))
    assert {name for name in before if before[name] != after[name]} == {"api", "worker"}


def test_a_secret_shared_by_two_services_changes_both(config):
    inp = golden_input("two")
    before = hashes(config.environments["two"], "app-2", inp)
    after = hashes(config.environments["two"], "app-2",
                   replace(inp, secrets={**inp.secrets, "DATABASE_URL": "postgres://other"}))
    assert {name for name in before if before[name] != after[name]} == {"api", "worker"}


def test_the_same_service_hashes_alike_on_hosts_that_run_it_alike(config):
    env, inp = config.environments["two"], golden_input("two")
    assert hashes(env, "front-1", inp)["api"] == hashes(env, "app-2", inp)["api"]


def test_a_route_change_touches_the_traefik_files_of_the_edge_and_the_services_hosts(config):
    env, inp = config.environments["three"], golden_input("three")
    moved = with_service(env, "web", routes=[env.services["web"].routes[0].model_copy(
        update={"host": "shop2.example.com"})])
    before, after = render_fleet(env, inp), render_fleet(moved, inp)
    assert after["edge-1"].state.traefik_hash != before["edge-1"].state.traefik_hash
    # app-1 runs web: its private router's rule changed (dynamic/private.yml).
    assert after["app-1"].state.traefik_hash != before["app-1"].state.traefik_hash
    private = after["app-1"].traefik_files["dynamic/private.yml"].content
    assert "Host(`shop2.example.com`)" in private
    assert "shop2" not in before["app-1"].traefik_files["dynamic/private.yml"].content
    assert after["db-1"].state == before["db-1"].state
