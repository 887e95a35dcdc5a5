"""Frontend providers: run the frontend in dev and build its assets (generic commands).

``get_frontend_provider(kind, options)`` finds a provider registered under the
entry-point group ``stagecraft.providers.frontend``; the built-in one works even
when stagecraft runs from a checkout without installed entry points.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from stagecraft.errors import ProviderError
from stagecraft.providers.frontend.base import FrontendProvider

ENTRY_POINT_GROUP = "stagecraft.providers.frontend"

#: Providers that ship with stagecraft: kind -> "module:attribute".
BUILTIN = {"generic": "stagecraft.providers.frontend.generic:GenericFrontend"}

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "FrontendProvider", "available_kinds",
           "get_frontend_provider"]


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_kinds() -> list[str]:
    """Every frontend kind that can be used: registered entry points plus built-ins."""
    return sorted(set(_entry_points()) | set(BUILTIN))


def get_frontend_provider(kind: str, options: Mapping[str, Any] | None = None) -> FrontendProvider:
    """An instance of the frontend provider ``kind``, built with ``options`` (the
    provider's settings without ``kind``). Raises ProviderError like the other registries."""
    found = _entry_points().get(kind)
    if found is None and kind in BUILTIN:
        found = EntryPoint(name=kind, value=BUILTIN[kind], group=ENTRY_POINT_GROUP)
    if found is None:
        raise ProviderError(
            f"unknown frontend provider {kind!r}",
            hint=f"use one of: {', '.join(available_kinds())} (providers.frontend.kind)",
        )
    try:
        factory = found.load()
    except Exception as exc:  # a broken plugin must not crash the CLI with a traceback
        raise ProviderError(
            f"cannot load frontend provider {kind!r} from {found.value}: "
            f"{type(exc).__name__}: {exc}",
            hint="reinstall the package that provides it (pip install --force-reinstall ...)",
        ) from exc
    try:
        provider = factory(**dict(options or {}))
    except TypeError as exc:
        raise ProviderError(
            f"frontend provider {kind!r} does not accept these settings: {exc}",
            hint=f"check providers.frontend in stagecraft.yml against the {kind} provider's docs",
        ) from exc
    if not isinstance(provider, FrontendProvider):
        raise ProviderError(
            f"{found.value} does not implement the frontend provider interface "
            "(kind, dev_command, build_assets)",
            hint="this is a bug in the provider plugin: report it to its authors",
        )
    return provider
