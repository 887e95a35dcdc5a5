"""Cloud providers: make an environment's hosts exist (local containers, DigitalOcean).

``get_cloud_provider(kind)`` finds a provider registered under the entry-point
group ``stagecraft.providers.cloud``; the built-in ``local`` provider works even
when stagecraft runs from a checkout without installed entry points.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from stagecraft.errors import ProviderError
from stagecraft.providers.cloud.base import (
    ABSENT,
    CREATED,
    MISSING,
    ORPHANED,
    REMOVED,
    RUNNING,
    STARTED,
    STOPPED,
    UNCHANGED,
    CloudProvider,
    DownResult,
    FleetSpec,
    HostRecord,
    HostSpec,
    RegistryAccess,
    RegistryProvider,
    SshAccess,
    StateFiles,
    read_hosts_file,
)

ENTRY_POINT_GROUP = "stagecraft.providers.cloud"

#: Providers that ship with stagecraft: kind -> "module:attribute".
BUILTIN = {"local": "stagecraft.providers.cloud.local:LocalCloud"}

__all__ = [
    "ABSENT", "CREATED", "MISSING", "ORPHANED", "REMOVED", "RUNNING", "STARTED", "STOPPED",
    "UNCHANGED", "BUILTIN", "ENTRY_POINT_GROUP", "CloudProvider", "DownResult", "FleetSpec",
    "HostRecord", "HostSpec", "RegistryAccess", "RegistryProvider", "SshAccess", "StateFiles",
    "available_kinds", "get_cloud_provider", "read_hosts_file",
]


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_kinds() -> list[str]:
    """Every cloud kind that can be used: registered entry points plus built-ins."""
    return sorted(set(_entry_points()) | set(BUILTIN))


def get_cloud_provider(kind: str, options: Mapping[str, Any] | None = None) -> CloudProvider:
    """An instance of the cloud provider ``kind``, built with ``options`` as keyword arguments.

    ``options`` are the provider's settings from stagecraft.yml without ``kind``
    (for DigitalOcean: token, region, image). Raises ProviderError when the kind is
    unknown, cannot be loaded, or does not take those options.
    """
    found = _entry_points().get(kind)
    if found is None and kind in BUILTIN:
        found = EntryPoint(name=kind, value=BUILTIN[kind], group=ENTRY_POINT_GROUP)
    if found is None:
        raise ProviderError(
            f"unknown cloud provider {kind!r}",
            hint=f"use one of: {', '.join(available_kinds())} (providers.cloud.kind)",
        )
    try:
        factory = found.load()
    except Exception as exc:  # a broken plugin must not crash the CLI with a traceback
        raise ProviderError(
            f"cannot load cloud provider {kind!r} from {found.value}: {type(exc).__name__}: {exc}",
            hint="reinstall the package that provides it (pip install --force-reinstall ...)",
        ) from exc
    try:
        provider = factory(**dict(options or {}))
    except TypeError as exc:
        raise ProviderError(
            f"cloud provider {kind!r} does not accept these settings: {exc}",
            hint=f"check providers.cloud in stagecraft.yml against the {kind} provider's docs",
        ) from exc
    if not isinstance(provider, CloudProvider):
        raise ProviderError(
            f"{found.value} does not implement the cloud provider interface "
            "(up, down, status, ssh_access, bootstrap_vars, kind)",
            hint="this is a bug in the provider plugin: report it to its authors",
        )
    return provider
