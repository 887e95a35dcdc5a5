"""The ``local`` cloud: DigitalOcean-like hosts made of containers on this machine's Docker.

``LocalCloud`` implements the cloud provider interface (see
stagecraft.providers.cloud.base); ``ensure_host_image`` builds the host image.
"""

from stagecraft.providers.cloud.local.image import ensure_host_image
from stagecraft.providers.cloud.local.provider import LocalCloud

__all__ = ["LocalCloud", "ensure_host_image"]
