"""Backend providers: build service images (generic docker build or command, Encore.ts).

``get_backend_provider(kind, options)`` finds a provider registered under the
entry-point group ``stagecraft.providers.backend``; the built-in ones work even
when stagecraft runs from a checkout without installed entry points.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from stagecraft.providers import registry
from stagecraft.providers.backend.base import (
    SOURCE_BUILD,
    SOURCE_FROM,
    SOURCE_IMAGE,
    BackendProvider,
    BuildRequest,
    BuiltImage,
    DevCommand,
    LineSink,
)

ENTRY_POINT_GROUP = "stagecraft.providers.backend"

#: Providers that ship with stagecraft: kind -> "module:attribute".
BUILTIN = {
    "generic": "stagecraft.providers.backend.generic:GenericBackend",
    "encore-ts": "stagecraft.providers.backend.encore:EncoreBackend",
}

__all__ = [
    "BUILTIN", "ENTRY_POINT_GROUP", "SOURCE_BUILD", "SOURCE_FROM", "SOURCE_IMAGE",
    "BackendProvider", "BuildRequest", "BuiltImage", "DevCommand", "LineSink",
    "available_kinds", "get_backend_provider",
]


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_kinds() -> list[str]:
    """Every backend kind that can be used: registered entry points plus built-ins."""
    return registry.available_kinds(_entry_points(), BUILTIN)


def get_backend_provider(kind: str, options: Mapping[str, Any] | None = None) -> BackendProvider:
    """An instance of the backend provider ``kind``, built with ``options`` as keyword arguments.

    ``options`` are the provider's settings from stagecraft.yml without ``kind``
    (for generic: build, dev, workdir). Raises ProviderError when the kind is
    unknown, cannot be loaded, or does not take those options.
    """
    return registry.load_provider(
        "backend", kind, options, registered=_entry_points(), builtin=BUILTIN,
        group=ENTRY_POINT_GROUP, protocol=BackendProvider,
        interface="kind, build, dev_command")
