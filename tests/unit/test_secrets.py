"""The envfile secrets provider and reference resolution."""

from __future__ import annotations

import pytest

from stagecraft.config.loader import load_config_text
from stagecraft.errors import SecretMissing, StateError
from stagecraft.log import redactor
from stagecraft.providers.secrets import parse_dotenv, resolve_reference, resolve_secrets

CONFIG = """
version: 1
project: {name: shop}
services:
  web:
    image: example/web:1
    port: 8080
    healthcheck: {path: /up}
    secrets: [DATABASE_URL, API_KEY]
    on: [app]
environments:
  local:
    hosts: [{name: h1, roles: [app]}]
"""


def env():
    return load_config_text(CONFIG).environment("local")


def test_dotenv_forms():
    text = ("# comment\n\nexport A=1\nB = two words # trailing\nC='lit $x \\n'\n"
            'D="line\\nnext \\"q\\""\nE=\n')
    assert parse_dotenv(text) == {"A": "1", "B": "two words", "C": "lit $x \\n",
                                  "D": 'line\nnext "q"', "E": ""}


def test_dotenv_bad_line_names_file_and_line():
    with pytest.raises(StateError, match=r"x.env:2: not a NAME=value line"):
        parse_dotenv("A=1\nnot a line\n", "x.env")


def test_resolve_reads_env_file_and_registers_values_for_redaction(tmp_path):
    (tmp_path / ".env.local").write_text("DATABASE_URL=postgres://u:pw-123456@db/x\nAPI_KEY=k-987654321\n")
    values = resolve_secrets(env(), tmp_path)
    assert values == {"DATABASE_URL": "postgres://u:pw-123456@db/x", "API_KEY": "k-987654321"}
    assert "k-987654321" not in redactor().text("the key is k-987654321")


def test_missing_file_and_missing_name_are_clear(tmp_path):
    with pytest.raises(SecretMissing, match=r"API_KEY, DATABASE_URL are needed but .*\.env\.local does not exist"):
        resolve_secrets(env(), tmp_path)
    (tmp_path / ".env.local").write_text("API_KEY=x\n")
    with pytest.raises(SecretMissing, match=r"has no value for DATABASE_URL") as info:
        resolve_secrets(env(), tmp_path)
    assert info.value.hint.startswith("add DATABASE_URL=")


def test_env_reference(tmp_path, monkeypatch):
    monkeypatch.setenv("REG_PW", "pw-from-env-42")
    assert resolve_reference(env(), tmp_path, "${env:REG_PW}") == "pw-from-env-42"
    monkeypatch.delenv("REG_PW")
    with pytest.raises(SecretMissing, match="REG_PW is not set"):
        resolve_reference(env(), tmp_path, "${env:REG_PW}")
