"""Releases run with plain ansible-playbook (stagecraft/deploy/standalone.py): the release
a run names, the images of a release, and what the inventory plugin adds before any
host exists. The runs themselves: tests/e2e/test_ops_playbooks.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagecraft.config import load_config_text
from stagecraft.deploy.standalone import (
    CONFIG_VAR,
    inventory_variables,
    release_of,
    tagged_images,
)
from stagecraft.errors import PlanError
from stagecraft.paths import HOST_ROOT, HOST_ROOT_VAR

CONFIG = """\
version: 1
project:
  name: shop
  registry: { server: registry.example.com }
providers:
  cloud: { kind: local }
  network: { kind: none }
services:
  web:
    build: { context: app }
    port: 8080
    on: [app]
  worker:
    from: web
    command: ["python3", "-m", "worker"]
    on: [app]
  cache:
    image: redis:7
    on: [app]
environments:
  local:
    hosts:
      - { name: local-1, roles: [app] }
"""


def environment(text: str = CONFIG):
    return load_config_text(text).environment("local")


@pytest.mark.parametrize("extra_vars, expected", [
    ({}, None),
    ({"stagecraft_release": ""}, None),
    ({"stagecraft_release": "20261206T101500Z-3f9c2ab"}, "20261206T101500Z-3f9c2ab"),
    ({"stagecraft_release_id": "20261206T101500Z-3f9c2ab"}, "20261206T101500Z-3f9c2ab"),
])
def test_the_release_a_run_names(extra_vars, expected) -> None:
    assert release_of(extra_vars) == expected


def test_a_value_that_is_no_release_id_is_refused_with_an_example() -> None:
    with pytest.raises(PlanError) as caught:
        release_of({"stagecraft_release": "latest"})
    assert "'latest'" in caught.value.message
    assert "stagecraft build --release" in caught.value.hint


def test_built_services_get_the_tags_stagecraft_build_pushes() -> None:
    images = tagged_images(environment(), "20261206T101500Z-3f9c2ab", "registry.example.com")
    assert images == {
        "web": "registry.example.com/shop-web:20261206T101500Z-3f9c2ab",
        "worker": "registry.example.com/shop-web:20261206T101500Z-3f9c2ab",
        "cache": "redis:7",
    }


def test_a_built_service_without_a_registry_is_refused_naming_it() -> None:
    with pytest.raises(PlanError) as caught:
        tagged_images(environment(), "20261206T101500Z-3f9c2ab", None)
    assert "service web is built" in caught.value.message
    assert "project.registry" in caught.value.hint


def test_before_any_host_exists_the_plugin_adds_only_the_config_path_and_root(
        tmp_path: Path) -> None:
    config = tmp_path / "stagecraft.yml"
    config.write_text(CONFIG)
    group, hosts = inventory_variables(config, "local", None)
    assert group == {CONFIG_VAR: str(config), HOST_ROOT_VAR: HOST_ROOT}
    assert hosts == {}
