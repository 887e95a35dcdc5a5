"""Per-host Traefik files (DEPLOY_TRAEFIK_GEN): golden files and the rules of
spec/deploy/contracts.md.

Golden files live in tests/golden/traefik/<env>/<host>/; their input is
tests/golden/compose/stagecraft.yml and inputs.json. After an intended change,
rewrite them with ``STAGECRAFT_UPDATE_GOLDEN=1 pytest tests/unit/test_render_traefik.py``
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
from stagecraft.render.compose import RenderError
from stagecraft.render.host import host_of
from stagecraft.render.state import RenderedFile, RenderInput, TlsSettings
from stagecraft.render.traefik import render_traefik, traefik_hash

REPO = Path(__file__).resolve().parents[2]
INPUTS = REPO / "tests" / "golden" / "compose"
GOLDEN = REPO / "tests" / "golden" / "traefik"
HOSTS = [("two", "front-1"), ("two", "app-2"), ("three", "edge-1"), ("three", "app-1"),
         ("three", "db-1"), ("single", "solo")]


@pytest.fixture(scope="module")
def config():
    return load_config(INPUTS / "stagecraft.yml")


def golden_input(env: str) -> RenderInput:
    data = json.loads((INPUTS / "inputs.json").read_text())
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


def files_of(config, env: str, host: str,
             inp: RenderInput | None = None) -> dict[str, RenderedFile]:
    environment = config.environments[env]
    return render_traefik(environment, host_of(environment, host), inp or golden_input(env))


def parsed(files: Mapping[str, RenderedFile], path: str) -> dict:
    return yaml.safe_load(files[path].content)


# ------------------------------------------------------------------------- golden


@pytest.mark.parametrize(("env", "host"), HOSTS)
def test_traefik_files_match_their_golden_files(config, env, host):
    check_golden_dir(GOLDEN / env / host, files_of(config, env, host))


# ------------------------------------------------------------------------- static


def test_every_host_has_the_private_and_api_entrypoints_and_only_edges_the_public_ones(config):
    app = parsed(files_of(config, "three", "app-1"), "traefik.yml")
    edge = parsed(files_of(config, "three", "edge-1"), "traefik.yml")
    assert app["entryPoints"] == {"private": {"address": ":8000",
                                              "forwardedHeaders": {"insecure": True}},
                                  "traefik": {"address": ":8080"}}
    assert {k: v["address"] for k, v in edge["entryPoints"].items()} == {
        "private": ":8000", "traefik": ":8080", "web": ":80", "websecure": ":443"}
    assert app["ping"] == {"entryPoint": "traefik"}
    assert app["api"]["insecure"] is True


def test_the_file_provider_is_the_only_one(config):
    static = parsed(files_of(config, "three", "app-1"), "traefik.yml")
    # No Docker provider: routed containers reach Traefik only through the servers
    # files the rollout writes, so Traefik needs no Docker socket to route.
    assert static["providers"] == {"file": {"directory": "/etc/traefik/dynamic", "watch": True},
                                   "providersThrottleDuration": "200ms"}
    assert static["log"] == {"level": "INFO"} and "accessLog" not in static


def test_each_routed_service_has_a_private_router_to_the_rollouts_service(config):
    private = parsed(files_of(config, "three", "app-1"), "dynamic/private.yml")
    assert private == {"http": {"routers": {
        "shop-three-admin": {
            "rule": "(Host(`shop.example.com`) && PathPrefix(`/admin`)) || "
                    "Host(`admin.shop-three.internal`)",
            "entryPoints": ["private"], "service": "shop-three-admin"},
        "shop-three-api": {
            "rule": "Host(`api.shop.example.com`) || (Host(`shop.example.com`) && "
                    "PathPrefix(`/api`))",
            "entryPoints": ["private"], "service": "shop-three-api"},
        "shop-three-web": {
            "rule": "Host(`shop.example.com`) || Host(`www.shop.example.com`)",
            "entryPoints": ["private"], "service": "shop-three-web"}}}}
    # A host without routed services has an empty file (its old routers go).
    assert parsed(files_of(config, "three", "db-1"), "dynamic/private.yml") == {}


def test_acme_is_configured_on_edge_hosts_only(config):
    edge = parsed(files_of(config, "three", "edge-1"), "traefik.yml")
    assert edge["certificatesResolvers"] == {"letsencrypt": {"acme": {
        "email": "ops@example.com", "storage": "/etc/traefik/acme/acme.json",
        "httpChallenge": {"entryPoint": "web"}}}}
    assert "certificatesResolvers" not in parsed(files_of(config, "three", "app-1"), "traefik.yml")
    assert "certificatesResolvers" not in parsed(files_of(config, "two", "front-1"), "traefik.yml")


# ------------------------------------------------------------------------- routes


def test_edge_routes_balance_over_the_private_entrypoint_of_every_host_of_the_service(config):
    routes = parsed(files_of(config, "two", "front-1"), "dynamic/routes.yml")["http"]
    api = routes["services"]["api-backends"]["loadBalancer"]
    assert api["servers"] == [{"url": "http://10.201.7.10:8000"},
                              {"url": "http://10.201.7.11:8000"}]
    assert api["passHostHeader"] is True
    assert api["healthCheck"] == {"path": "/up", "hostname": "api.two.example.test",
                                  "interval": "2s", "timeout": "2s"}
    three = parsed(files_of(config, "three", "edge-1"), "dynamic/routes.yml")["http"]
    # The edge runs no app here: only app-1 serves.
    assert three["services"]["api-backends"]["loadBalancer"]["servers"] == [
        {"url": "http://10.110.0.3:8000"}]


def test_a_router_per_route_and_entrypoint_with_the_routes_rule(config):
    routers = parsed(files_of(config, "two", "front-1"), "dynamic/routes.yml")["http"]["routers"]
    assert sorted(routers) == ["admin-0-web", "admin-0-websecure", "api-0-web", "api-0-websecure",
                               "api-1-web", "api-1-websecure", "web-0-web", "web-0-websecure",
                               "web-1-web", "web-1-websecure"]
    assert routers["api-1-websecure"] == {
        "rule": "Host(`two.example.test`) && PathPrefix(`/api`)",
        "entryPoints": ["websecure"], "service": "api-backends", "tls": {}}
    assert routers["api-1-web"] == {
        "rule": "Host(`two.example.test`) && PathPrefix(`/api`)",
        "entryPoints": ["web"], "service": "api-backends"}


def test_a_service_with_only_prefixed_routes_is_health_checked_on_its_internal_name(config):
    routes = parsed(files_of(config, "two", "front-1"), "dynamic/routes.yml")["http"]
    assert routes["services"]["admin-backends"]["loadBalancer"]["healthCheck"]["hostname"] == \
        "admin.shop-two.internal"


def test_acme_mode_redirects_http_and_asks_the_resolver(config):
    routes = parsed(files_of(config, "three", "edge-1"), "dynamic/routes.yml")["http"]
    assert routes["middlewares"] == {"redirect-to-https": {
        "redirectScheme": {"scheme": "https", "permanent": True}}}
    assert routes["routers"]["web-0-web"]["middlewares"] == ["redirect-to-https"]
    assert routes["routers"]["web-0-websecure"]["tls"] == {"certResolver": "letsencrypt"}


def test_off_mode_serves_http_only(config):
    files = files_of(config, "single", "solo")
    routers = parsed(files, "dynamic/routes.yml")["http"]["routers"]
    assert all(r["entryPoints"] == ["web"] and "middlewares" not in r for r in routers.values())
    assert "dynamic/tls.yml" not in files


def test_hosts_off_the_edge_have_an_empty_routes_file(config):
    files = files_of(config, "three", "app-1")
    assert sorted(files) == ["dynamic/private.yml", "dynamic/routes.yml", "traefik.yml"]
    assert parsed(files, "dynamic/routes.yml") == {}


# ---------------------------------------------------------------------------- tls


def test_local_mode_ships_the_certificate_with_a_private_key(config):
    files = files_of(config, "two", "front-1")
    assert sorted(files) == ["certs/shop-two.crt", "certs/shop-two.key", "dynamic/private.yml",
                             "dynamic/routes.yml", "dynamic/tls.yml", "traefik.yml"]
    key, crt = files["certs/shop-two.key"], files["certs/shop-two.crt"]
    assert (key.mode, key.secret) == (0o600, True)
    assert (crt.mode, crt.secret) == (0o644, False)
    assert "TEST LEAF KEY" in key.content
    pair = {"certFile": "/etc/traefik/certs/shop-two.crt",
            "keyFile": "/etc/traefik/certs/shop-two.key"}
    assert parsed(files, "dynamic/tls.yml") == {"tls": {
        "certificates": [pair], "stores": {"default": {"defaultCertificate": pair}}}}
    # Only the edge terminates TLS.
    assert sorted(files_of(config, "two", "app-2")) == ["dynamic/private.yml",
                                                        "dynamic/routes.yml", "traefik.yml"]


def test_local_mode_without_a_certificate_is_an_error(config):
    inp = replace(golden_input("two"), tls=TlsSettings(mode="local"))
    with pytest.raises(RenderError,
                       match="TLS mode 'local' of environment 'two' needs a certificate"):
        files_of(config, "two", "front-1", inp)


def test_a_tls_mode_other_than_the_environments_is_an_error(config):
    inp = replace(golden_input("three"), tls=TlsSettings(mode="off"))
    with pytest.raises(RenderError,
                       match="TLS mode 'off' of the release does not match mode 'acme'"):
        files_of(config, "three", "app-1", inp)


def test_a_missing_private_address_names_the_host(config):
    inp = golden_input("three")
    inp = replace(inp, private_ips={k: v for k, v in inp.private_ips.items() if k != "app-1"})
    with pytest.raises(RenderError, match="no private address for host 'app-1'"):
        files_of(config, "three", "edge-1", inp)


# --------------------------------------------------------------------------- hash


def test_the_traefik_hash_follows_the_image_and_every_file(config):
    files = files_of(config, "two", "front-1")
    base = traefik_hash(files, "traefik:v3.6")
    assert traefik_hash(dict(reversed(list(files.items()))), "traefik:v3.6") == base
    assert traefik_hash(files, "traefik:v3.7") != base
    # Published on another address (the host joined a tailnet): Traefik is updated.
    assert traefik_hash(files, "traefik:v3.6", "100.64.0.2") != traefik_hash(
        files, "traefik:v3.6", "10.0.0.2")
    key = replace(files["certs/shop-two.key"], content="x\n")
    changed = {**files, "certs/shop-two.key": key}
    assert traefik_hash(changed, "traefik:v3.6") != base
    assert traefik_hash({k: v for k, v in files.items() if k != "dynamic/tls.yml"},
                        "traefik:v3.6") != base
