"""Backend providers: build service images (generic docker build or command, Encore.ts).

``get_backend_provider(kind, options)`` finds a provider registered under the
entry-point group ``stagecraft.providers.backend``; the built-in ones work even
when stagecraft runs from a checkout without installed entry points.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from stagecraft.errors import ProviderError
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
    return sorted(set(_entry_points()) | set(BUILTIN))


def get_backend_provider(kind: str, options: Mapping[str, Any] | None = None) -> BackendProvider:
    """An instance of the backend provider ``kind``, built with ``options`` as keyword arguments.

    ``options`` are the provider's settings from stagecraft.yml without ``kind``
    (for generic: build, dev, workdir). Raises ProviderError when the kind is
    unknown, cannot be loaded, or does not take those options.
    """
    found = _entry_points().get(kind)
    if found is None and kind in BUILTIN:
        found = EntryPoint(name=kind, value=BUILTIN[kind], group=ENTRY_POINT_GROUP)
    if found is None:
        raise ProviderError(
            f"unknown backend provider {kind!r}",
            hint=f"use one of: {', '.join(available_kinds())} (providers.backend.kind)",
        )
    try:
        factory = found.load()
    except Exception as exc:  # a broken plugin must not crash the CLI with a traceback
        raise ProviderError(
            f"cannot load backend provider {kind!r} from {found.value}: "
            f"{type(exc).__name__}: {exc}",
            hint="reinstall the package that provides it (pip install --force-reinstall ...)",
        ) from exc
    try:
        provider = factory(**dict(options or {}))
    except TypeError as exc:
        raise ProviderError(
            f"backend provider {kind!r} does not accept these settings: {exc}",
            hint=f"check providers.backend in stagecraft.yml against the {kind} provider's docs",
        ) from exc
    if not isinstance(provider, BackendProvider):
        raise ProviderError(
            f"{found.value} does not implement the backend provider interface "
            "(kind, build, dev_command)",
            hint="this is a bug in the provider plugin: report it to its authors",
        )
    return provider
