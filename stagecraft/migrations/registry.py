"""Finding a migration engine: entry points of the group ``stagecraft.migrations``
first, then the built-ins (so a checkout without installed entry points works).

``get_migrator("raw")`` returns an engine instance; a plugin package adds an engine
by registering ``name = "module:Class"`` under that group.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from stagecraft.errors import ProviderError
from stagecraft.migrations.base import Migrator
from stagecraft.providers import registry

ENTRY_POINT_GROUP = "stagecraft.migrations"

#: Engines that ship with stagecraft: engine -> "module:attribute".
BUILTIN = {
    "raw": "stagecraft.migrations.raw:RawMigrator",
    "command": "stagecraft.migrations.command:CommandMigrator",
    "drizzle": "stagecraft.migrations.drizzle:DrizzleMigrator",
    "prisma": "stagecraft.migrations.prisma:PrismaMigrator",
}


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_engines() -> list[str]:
    """Every engine that can be used: registered entry points plus built-ins."""
    return registry.available_kinds(_entry_points(), BUILTIN)


def get_migrator(engine: str, **options: Any) -> Migrator:
    """An instance of migration engine ``engine``, built with ``options``.

    Raises ProviderError when the engine is unknown (the message lists the known
    ones), cannot be loaded, does not take those options, or is not a Migrator.
    """
    registered = _entry_points()
    if engine not in registered and engine not in BUILTIN:
        raise ProviderError(
            f"unknown migration engine {engine!r}",
            hint=f"use one of: {', '.join(registry.available_kinds(registered, BUILTIN))} "
            "(migrations.engine in stagecraft.yml)")
    return registry.load_provider(
        "migrations", engine, options, registered=registered, builtin=BUILTIN,
        group=ENTRY_POINT_GROUP, protocol=Migrator,
        interface="engine, can_down, pending(spec, runner, timeout), apply(spec, runner, timeout)")


__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "available_engines", "get_migrator"]
