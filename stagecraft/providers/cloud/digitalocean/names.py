"""The names stagecraft gives an environment's DigitalOcean resources.

Everything an environment owns is found again by these names and tags, never by what
a file on this machine remembers: droplets and volumes carry the environment's tag;
the VPC, the firewalls and the SSH key (which DigitalOcean cannot tag) carry its name.
Project and environment names are DNS labels, so the names below are unique per
environment and never a prefix of another environment's.
"""

from __future__ import annotations

import hashlib
import re

#: Every resource stagecraft made carries this tag too (droplets, volumes).
COMMON_TAG = "stagecraft"
#: Where DigitalOcean shows an attached volume inside its droplet.
DEVICE_PREFIX = "/dev/disk/by-id/scsi-0DO_Volume_"
#: DigitalOcean's limit on a volume name.
VOLUME_NAME_MAX = 64


def env_tag(project: str, environment: str) -> str:
    """``stagecraft-<project>-<env>``: on every droplet and volume of the environment."""
    return f"{COMMON_TAG}-{project}-{environment}"


def role_tag(project: str, environment: str, role: str) -> str:
    """``stagecraft-<project>-<env>--<role>``: on the droplets that have a host role
    (the double dash keeps it apart from another environment's tag)."""
    return f"{env_tag(project, environment)}--{role.replace('_', '-')}"


def droplet_name(project: str, environment: str, host: str) -> str:
    """``<project>-<env>-<host>``: unique in the account, and the droplet's hostname."""
    return f"{project}-{environment}-{host}"


def host_of(project: str, environment: str, droplet: str) -> str | None:
    """The host name of a droplet named by :func:`droplet_name`, else None."""
    prefix = f"{project}-{environment}-"
    return droplet[len(prefix):] if droplet.startswith(prefix) else None


def volume_name(project: str, environment: str, host: str, volume: str) -> str:
    """The DigitalOcean name of ``volume`` on ``host``: lowercase letters, digits and
    '-', starting with a letter, at most 64 characters (shortened with a hash)."""
    name = re.sub(r"[^a-z0-9-]", "-", f"{project}-{environment}-{host}-{volume}".lower())
    if not name[0].isalpha():
        name = f"v-{name}"
    if len(name) > VOLUME_NAME_MAX:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[:VOLUME_NAME_MAX - 9].rstrip('-')}-{digest}"
    return name


def volume_device(project: str, environment: str, host: str, volume: str) -> str:
    """Where the host sees the volume's block device."""
    return DEVICE_PREFIX + volume_name(project, environment, host, volume)


def vpc_name(project: str, environment: str, configured: str | None = None) -> str:
    """The environment's VPC: ``providers.cloud.vpc`` or ``stagecraft-<project>-<env>``."""
    return configured or env_tag(project, environment)


def firewall_name(project: str, environment: str, part: str | None = None) -> str:
    """``stagecraft-<project>-<env>`` (every droplet) and ``...--edge`` (edge droplets)."""
    base = env_tag(project, environment)
    return f"{base}--{part}" if part else base


def ssh_key_name(project: str, environment: str) -> str:
    """The name of the environment's SSH key in the account."""
    return env_tag(project, environment)
