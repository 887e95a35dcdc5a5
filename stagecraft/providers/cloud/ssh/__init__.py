"""The ``ssh`` cloud: servers that exist already (rented or owned), adopted over SSH.

``SshCloud`` implements the cloud provider interface (see
stagecraft.providers.cloud.base): ``up`` pins each server's host key and records
what it runs, never changing anything on it; ``down`` forgets the servers.
"""

from stagecraft.providers.cloud.ssh.provider import SshCloud

__all__ = ["SshCloud"]
