"""Which provider kinds stagecraft.yml may use now: the kinds that have a provider.

The config schema knows every kind of the design (cloud digitalocean and ssh,
network tailscale and headscale), but a kind only works once a provider for it
ships with stagecraft or is registered under its family's entry-point group. The
config loader rejects the others, so a config that validates does not fail later
with "unknown provider"; registering a provider is all it takes to make its kind
valid.

This module imports no provider: the loader asks it on every load.
"""

from __future__ import annotations

from importlib.metadata import entry_points

CLOUD_GROUP = "stagecraft.providers.cloud"
#: Cloud providers that ship with stagecraft: kind -> "module:attribute".
CLOUD_BUILTIN = {
    "local": "stagecraft.providers.cloud.local:LocalCloud",
    "ssh": "stagecraft.providers.cloud.ssh:SshCloud",
    "digitalocean": "stagecraft.providers.cloud.digitalocean:DigitalOceanCloud",
}
#: The cloud of a stagecraft.yml that names none, and of `doctor` outside a project.
DEFAULT_CLOUD_KIND = "local"
#: Cloud kinds that run a Headscale server of their own for network ``headscale`` and
#: make its pre-auth key (their providers' ``capabilities.mesh_server``): there the
#: network needs no ``login_server`` or ``auth_key``.
MESH_SERVER_CLOUDS = ("local",)

NETWORK_GROUP = "stagecraft.providers.network"

#: Network kinds that ship with stagecraft. `none`: hosts use the cloud's private
#: network; `tailscale` and `headscale`: they join a tailnet (infra/mesh.py, the role
#: tailscale).
NETWORK_BUILTIN = ("none", "tailscale", "headscale")

#: family -> (entry-point group, kinds that work without a registered provider).
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "cloud": (CLOUD_GROUP, tuple(CLOUD_BUILTIN)),
    "network": (NETWORK_GROUP, NETWORK_BUILTIN),
}


def registered_kinds(group: str) -> set[str]:
    """Names of the providers registered under the entry-point ``group``."""
    return {ep.name for ep in entry_points(group=group)}


def usable_kinds(family: str) -> list[str]:
    """The kinds of ``family`` ("cloud", "network") that work now, sorted."""
    group, builtin = FAMILIES[family]
    return sorted({*builtin, *registered_kinds(group)})


def all_usable_kinds() -> dict[str, list[str]]:
    """``usable_kinds`` of every family the config loader checks."""
    return {family: usable_kinds(family) for family in FAMILIES}
