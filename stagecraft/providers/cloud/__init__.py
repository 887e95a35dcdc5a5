"""Cloud providers: make an environment's hosts exist (today: `local`, containers here;
`ssh`, servers that exist already, adopted over SSH).

``get_cloud_provider(kind)`` finds a provider registered under the entry-point
group ``stagecraft.providers.cloud``; the built-in ``local`` and ``ssh`` providers
work even when stagecraft runs from a checkout without installed entry points.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from stagecraft.providers import registry
from stagecraft.providers.cloud.base import (
    ABSENT,
    CREATED,
    CREATING,
    MISSING,
    ORPHANED,
    REMOVED,
    RUNNING,
    STARTED,
    STOPPED,
    UNCHANGED,
    UNREACHABLE,
    CloudProvider,
    DownResult,
    FleetSpec,
    HostRecord,
    HostSpec,
    RegistryAccess,
    CloudCapabilities,
    CloudChange,
    CloudPlan,
    CloudResources,
    FirewallStatus,
    ResourceReporter,
    SshAccess,
    StateFiles,
    VolumeStatus,
    cloud_resources,
    read_hosts_file,
)
from stagecraft.providers.kinds import CLOUD_BUILTIN, CLOUD_GROUP

ENTRY_POINT_GROUP = CLOUD_GROUP

#: Providers that ship with stagecraft: kind -> "module:attribute".
BUILTIN = CLOUD_BUILTIN

__all__ = [
    "CloudCapabilities", "CloudChange", "CloudPlan", "CloudResources", "FirewallStatus",
    "ResourceReporter", "VolumeStatus", "cloud_resources",
    "ABSENT", "CREATED", "CREATING", "MISSING", "ORPHANED", "REMOVED", "RUNNING", "STARTED", "STOPPED",
    "UNCHANGED", "UNREACHABLE", "BUILTIN", "ENTRY_POINT_GROUP", "CloudProvider", "DownResult", "FleetSpec",
    "HostRecord", "HostSpec", "RegistryAccess", "SshAccess", "StateFiles",
    "available_kinds", "get_cloud_provider", "read_hosts_file",
]


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_kinds() -> list[str]:
    """Every cloud kind that can be used: registered entry points plus built-ins."""
    return registry.available_kinds(_entry_points(), BUILTIN)


def get_cloud_provider(kind: str, options: Mapping[str, Any] | None = None) -> CloudProvider:
    """An instance of the cloud provider ``kind``, built with ``options`` as keyword arguments.

    ``options`` are the provider's settings from stagecraft.yml without ``kind``
    (for DigitalOcean: token, region, image). Raises ProviderError when the kind is
    unknown, cannot be loaded, or does not take those options.
    """
    return registry.load_provider(
        "cloud", kind, options, registered=_entry_points(), builtin=BUILTIN,
        group=ENTRY_POINT_GROUP, protocol=CloudProvider,
        interface="up, plan, down, status, bootstrapped, volume_device, ssh_access, "
        "bootstrap_vars, controller_checks, prepare_controller, kind")
