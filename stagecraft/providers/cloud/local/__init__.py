"""The ``local`` cloud: DigitalOcean-like hosts made of containers on this machine's Docker.

``LocalCloud`` implements the cloud provider interface (see
stagecraft.providers.cloud.base), including a registry per environment;
``ensure_host_image`` builds the host image, and ``ensure_runtime_image`` /
``ensure_registry_image`` / ``ensure_traefik_image`` the images apps and the
local cloud itself run on.
"""

from stagecraft.providers.cloud.local.host_image import ensure_host_image
from stagecraft.providers.cloud.local.service_images import (
    ensure_registry_image,
    ensure_runtime_image,
    ensure_traefik_image,
)
from stagecraft.providers.cloud.local.provider import LocalCloud

__all__ = [
    "LocalCloud", "ensure_host_image", "ensure_registry_image", "ensure_runtime_image",
    "ensure_traefik_image",
]
