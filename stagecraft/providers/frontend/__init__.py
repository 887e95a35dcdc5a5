"""Frontend providers: run the frontend in dev and build its assets (generic commands).

``get_frontend_provider(kind, options)`` finds a provider registered under the
entry-point group ``stagecraft.providers.frontend``; the built-in one works even
when stagecraft runs from a checkout without installed entry points.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from stagecraft.providers import registry
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
    return registry.available_kinds(_entry_points(), BUILTIN)


def get_frontend_provider(kind: str, options: Mapping[str, Any] | None = None) -> FrontendProvider:
    """An instance of the frontend provider ``kind``, built with ``options`` (the
    provider's settings without ``kind``). Raises ProviderError like the other registries."""
    return registry.load_provider(
        "frontend", kind, options, registered=_entry_points(), builtin=BUILTIN,
        group=ENTRY_POINT_GROUP, protocol=FrontendProvider,
        interface="kind, dev_command, build_assets")
