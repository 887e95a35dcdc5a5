"""Finding and building a provider of one kind: entry points first, then built-ins.

Each provider family (cloud, backend, frontend, ...) keeps its own entry-point
group and built-in table and calls :func:`load_provider`; the errors a user sees
(unknown kind, a plugin that does not load, wrong settings, not the interface)
are the same for every family.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint
from typing import Any


def available_kinds(registered: Mapping[str, EntryPoint], builtin: Mapping[str, str]) -> list[str]:
    """Every kind that can be used: registered entry points plus built-ins."""
    return sorted(set(registered) | set(builtin))


def load_provider(family: str, kind: str, options: Mapping[str, Any] | None, *,
                  registered: Mapping[str, EntryPoint], builtin: Mapping[str, str],
                  group: str, protocol: type, interface: str) -> Any:
    """An instance of provider ``kind`` of ``family``, built with ``options`` as keyword
    arguments (its settings from stagecraft.yml without ``kind``).

    Raises ProviderError when the kind is unknown, cannot be loaded, does not take
    those options, or is not an instance of ``protocol`` (``interface`` names its
    members for the message).
    """
    from stagecraft.errors import ProviderError

    found = registered.get(kind)
    if found is None and kind in builtin:
        found = EntryPoint(name=kind, value=builtin[kind], group=group)
    if found is None:
        raise ProviderError(
            f"unknown {family} provider {kind!r}",
            hint=f"use one of: {', '.join(available_kinds(registered, builtin))} "
            f"(providers.{family}.kind)",
        )
    try:
        factory = found.load()
    except Exception as exc:  # a broken plugin must not crash the CLI with a traceback
        raise ProviderError(
            f"cannot load {family} provider {kind!r} from {found.value}: "
            f"{type(exc).__name__}: {exc}",
            hint="reinstall the package that provides it (pip install --force-reinstall ...)",
        ) from exc
    try:
        provider = factory(**dict(options or {}))
    except TypeError as exc:
        raise ProviderError(
            f"{family} provider {kind!r} does not accept these settings: {exc}",
            hint=f"check providers.{family} in stagecraft.yml against the {kind} provider's docs",
        ) from exc
    if not isinstance(provider, protocol):
        raise ProviderError(
            f"{found.value} does not implement the {family} provider interface ({interface})",
            hint="this is a bug in the provider plugin: report it to its authors",
        )
    return provider
