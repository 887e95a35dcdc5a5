"""The pure parts of `secrets list|sync` (stagecraft/providers/secrets/references.py,
stagecraft/providers/ci/github_sync.py, stagecraft/deploy/secrets_sync.py): which names an
environment references and where, what the provider has, the GitHub plan, and the
per-service comparison of env files (names out, never values)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagecraft.config.loader import load_config_text
from stagecraft.errors import SecretMissing
from stagecraft.deploy.secrets_sync import differing_names, expected_env_files
from stagecraft.providers.ci.github_sync import GitHubSync
from stagecraft.providers.secrets.references import (
    provider_has,
    referenced_secrets,
    secrets_report,
    values_for,
)

CONFIG = """
version: 1
project:
  name: shop
  registry: {server: registry.example.com, username: deploy, password: "${secret:REG}"}
providers:
  secrets: {kind: envfile, path: ".env.{env}"}
services:
  web:
    image: web:1
    port: 8080
    healthcheck: {path: /up}
    routes: [{host: shop.example.com}]
    secrets: [DB_URL, API_KEY]
    env: {GREETING: "$${secret:NOT_A_REF}"}
    on: [app]
  worker: {image: web:1, secrets: [DB_URL], on: [worker]}
migrations:
  engine: raw
  from: web
  database_url: "${secret:DB_URL}"
  pre_deploy: {path: migrations}
environments:
  local:
    hosts:
      - {name: one, roles: [edge, app, worker]}
      - {name: two, roles: [app]}
"""


@pytest.fixture
def env():
    return load_config_text(CONFIG).environment("local")


def test_references_name_every_setting_and_service(env) -> None:
    assert referenced_secrets(env) == {
        "API_KEY": ["services.web.secrets"],
        "DB_URL": ["migrations.database_url", "services.web.secrets",
                   "services.worker.secrets"],
        "REG": ["project.registry.password"],
    }


def test_provider_has_and_values_for(env, tmp_path: Path) -> None:
    (tmp_path / ".env.local").write_text("DB_URL=postgres://x\nAPI_KEY=k1\n")
    assert provider_has(env, tmp_path, ["DB_URL", "REG", "API_KEY"]) == {
        "API_KEY": True, "DB_URL": True, "REG": False}
    with pytest.raises(SecretMissing) as caught:
        values_for(env, tmp_path, ["DB_URL", "REG"])
    assert caught.value.message.endswith("has no value for REG")
    assert "postgres://x" not in caught.value.message
    report = secrets_report(env, tmp_path)
    assert [(r["name"], r["in_provider"]) for r in report["secrets"]] == [
        ("API_KEY", True), ("DB_URL", True), ("REG", False)]


def test_expected_env_files_per_host_and_service(env) -> None:
    values = {"DB_URL": "postgres://x", "API_KEY": "it's"}
    assert expected_env_files(env, values) == {
        "one": {"web": {"API_KEY": "it's", "DB_URL": "postgres://x"},
                "worker": {"DB_URL": "postgres://x"}},
        "two": {"web": {"API_KEY": "it's", "DB_URL": "postgres://x"}},
    }


def test_differing_names_lists_changed_added_and_removed_names_only() -> None:
    wanted = {"web": {"A": "1", "B": "new", "C": "3"}, "worker": {"A": "1"}}
    found = {"web": {"A": "1", "B": "old", "D": "gone"}, "worker": {"A": "1"},
             "old": {"X": "x"}}
    assert differing_names(wanted, found) == {"web": ["B", "C", "D"], "old": ["X"]}
    assert differing_names(wanted, wanted) == {}


def test_github_plan_as_data_holds_names_and_actions() -> None:
    plan = GitHubSync(repo="acme/shop", github_environment="local", create=["B"],
                      update=["A"], left_alone=["Z"], done={"A": "updated"})
    assert plan.scope == "environment 'local' of acme/shop"
    assert plan.to_dict()["secrets"] == [
        {"name": "A", "action": "update", "result": "updated"},
        {"name": "B", "action": "create"}, {"name": "Z", "action": "leave"}]
    assert GitHubSync("acme/shop", None).scope == "repository secrets of acme/shop"
