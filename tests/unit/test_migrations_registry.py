"""Finding migration engines: built-ins, the entry points pyproject.toml declares,
and the errors of an unknown engine and of a plugin that is not a Migrator."""

from __future__ import annotations

import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from stagecraft.errors import ProviderError
from stagecraft.migrations import registry
from stagecraft.migrations.command import CommandMigrator
from stagecraft.migrations.raw import RawMigrator

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_builtin_engines_load():
    assert isinstance(registry.get_migrator("raw"), RawMigrator)
    assert isinstance(registry.get_migrator("command"), CommandMigrator)
    assert registry.get_migrator("raw", python="python3.13").python == "python3.13"
    assert {"raw", "command", "drizzle", "prisma"} <= set(registry.available_engines())


def test_pyproject_declares_the_builtin_table():
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"][
        registry.ENTRY_POINT_GROUP]
    assert declared == registry.BUILTIN


def test_unknown_engine_lists_the_known_ones():
    with pytest.raises(ProviderError) as caught:
        registry.get_migrator("flyway")
    assert caught.value.message == "unknown migration engine 'flyway'"
    assert "command, drizzle, prisma, raw" in caught.value.hint
    assert "migrations.engine" in caught.value.hint


def test_an_engine_that_is_not_a_migrator_is_refused(monkeypatch):
    # A plugin registered under the group whose class lacks pending/apply.
    monkeypatch.setattr(registry, "_entry_points", lambda: {"bad": EntryPoint(
        name="bad", value="stagecraft.redact:Redactor", group=registry.ENTRY_POINT_GROUP)})
    with pytest.raises(ProviderError) as caught:
        registry.get_migrator("bad")
    assert "does not implement the migrations provider interface" in caught.value.message


def test_unknown_options_are_a_provider_error():
    with pytest.raises(ProviderError) as caught:
        registry.get_migrator("raw", colour="blue")
    assert "does not accept these settings" in caught.value.message
