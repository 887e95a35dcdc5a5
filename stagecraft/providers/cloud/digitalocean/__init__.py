"""Cloud `digitalocean`: droplets, volumes, VPC and cloud firewalls (PROVIDER_CLOUD_DO)."""

from stagecraft.providers.cloud.digitalocean.provider import DigitalOceanCloud

__all__ = ["DigitalOceanCloud"]
