"""The env secrets provider and the STAGECRAFT_SECRETS override."""

from __future__ import annotations

import pytest

from stagecraft.config.loader import load_config_text
from stagecraft.errors import ProviderError, SecretMissing
from stagecraft.log import redactor
from stagecraft.providers.secrets import EnvSecrets, resolve_reference, resolve_secrets, \
    secrets_provider

CONFIG = """
version: 1
project: {{name: shop}}
providers:
  secrets: {secrets}
services:
  web:
    image: example/web:1
    port: 8080
    healthcheck: {{path: /up}}
    secrets: [DATABASE_URL, API_KEY]
    on: [app]
environments:
  local:
    hosts: [{{name: h1, roles: [app]}}]
"""


def env(secrets: str = "{kind: env}"):
    return load_config_text(CONFIG.format(secrets=secrets)).environment("local")


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STAGECRAFT_SECRETS", "DATABASE_URL", "API_KEY", "SHOP_DATABASE_URL",
                 "SHOP_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_values_come_from_variables_and_are_redacted(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:env-pw-5551@db/x")
    monkeypatch.setenv("API_KEY", "env-key-77123")
    assert resolve_secrets(env(), tmp_path) == {"DATABASE_URL": "postgres://u:env-pw-5551@db/x",
                                                "API_KEY": "env-key-77123"}
    assert "env-key-77123" not in redactor().text("key env-key-77123")


def test_prefix_names_the_variables(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SHOP_DATABASE_URL", "a")
    monkeypatch.setenv("SHOP_API_KEY", "b")
    monkeypatch.setenv("API_KEY", "not-this-one")
    assert resolve_secrets(env("{kind: env, prefix: SHOP_}"), tmp_path) == {
        "DATABASE_URL": "a", "API_KEY": "b"}


def test_missing_and_empty_variables_are_named_each(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("API_KEY", "")  # how GitHub Actions passes a secret that is not set
    with pytest.raises(SecretMissing) as caught:
        resolve_secrets(env(), tmp_path)
    assert caught.value.message == ("environment variables API_KEY, DATABASE_URL are not set "
                                    "or empty (secrets provider env)")
    assert caught.value.hint.startswith("export API_KEY=... before running stagecraft")
    assert caught.value.exit_code == 8
    monkeypatch.setenv("API_KEY", "k")
    with pytest.raises(SecretMissing, match=r"^environment variable DATABASE_URL is not set"):
        resolve_secrets(env(), tmp_path)


def test_reference_through_the_env_provider(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://x")
    assert resolve_reference(env(), tmp_path, "${secret:DATABASE_URL}") == "postgres://x"


def test_override_selects_env_over_the_configured_envfile(tmp_path, monkeypatch) -> None:
    configured = env("{kind: envfile}")
    (tmp_path / ".env.local").write_text("DATABASE_URL=from-file\nAPI_KEY=from-file\n")
    assert resolve_secrets(configured, tmp_path)["DATABASE_URL"] == "from-file"
    monkeypatch.setenv("STAGECRAFT_SECRETS", "env")
    assert isinstance(secrets_provider(configured, tmp_path), EnvSecrets)
    with pytest.raises(SecretMissing, match="API_KEY, DATABASE_URL"):  # the file is not read
        resolve_secrets(configured, tmp_path)
    monkeypatch.setenv("DATABASE_URL", "from-env")
    monkeypatch.setenv("API_KEY", "k")
    assert resolve_secrets(configured, tmp_path)["DATABASE_URL"] == "from-env"


def test_override_keeps_the_configured_prefix(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STAGECRAFT_SECRETS", "env")
    assert secrets_provider(env("{kind: env, prefix: SHOP_}"), tmp_path).variable("X") == "SHOP_X"


def test_unknown_override_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STAGECRAFT_SECRETS", "vault")
    with pytest.raises(ProviderError, match="STAGECRAFT_SECRETS='vault'") as caught:
        secrets_provider(env(), tmp_path)
    assert caught.value.hint.startswith("set STAGECRAFT_SECRETS=env")


def test_bad_prefix_is_a_config_error() -> None:
    from stagecraft.errors import ConfigError

    with pytest.raises(ConfigError, match="providers.secrets"):
        env("{kind: env, prefix: 'no-dashes'}")
