"""From a resolved environment to its hosts: the cloud provider and its state dir."""

from __future__ import annotations

from pathlib import Path

from stagecraft.config.schema import ResolvedEnvironment
from stagecraft.providers.cloud import CloudProvider, FleetSpec, HostSpec, get_cloud_provider

STATE_DIR = ".stagecraft"


def fleet_spec(env: ResolvedEnvironment) -> FleetSpec:
    """The hosts an environment asks for, in the cloud interface's terms."""
    return FleetSpec(
        project=env.project.name,
        environment=env.name,
        hosts=tuple(HostSpec(h.name, tuple(h.roles), h.size, tuple(h.volumes)) for h in env.hosts),
    )


def cloud_for(env: ResolvedEnvironment) -> CloudProvider:
    """The environment's cloud provider, built with its settings from stagecraft.yml."""
    settings = env.providers.cloud.model_dump(exclude={"kind"}, exclude_none=True)
    if env.providers.cloud.kind == "local" and env.volumes:
        # The local cloud makes each volume a sparse file of the configured size.
        settings["volume_sizes"] = {name: volume.size_gb for name, volume in env.volumes.items()}
    return get_cloud_provider(env.providers.cloud.kind, settings)


def state_dir(project_dir: Path, environment: str) -> Path:
    """``.stagecraft/<env>/``: hosts.json, known_hosts and the SSH key of an environment."""
    return Path(project_dir).resolve() / STATE_DIR / environment
