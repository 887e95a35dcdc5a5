"""What stands behind the twin's droplets and volumes: the interface the API calls.

The API keeps every resource's state (stagecraft_twins.digitalocean.state); a
``Machines`` makes the droplets and volumes real. ``DockerMachines``
(docker_machines.py) runs containers and loop devices; ``NoMachines`` has nothing
behind the API, for tests of the API's shapes only.

Calls are synchronous and may take seconds (``docker run``); the API runs them off the
request thread and reports progress through the droplet's status and action objects.
Every method raises ``MachineError`` with a message fit for an action's failure.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol


class MachineError(Exception):
    """A machine could not be made, changed or removed."""


@dataclass(frozen=True)
class Addresses:
    """Where a droplet is reached: its public and its VPC (private) IPv4 address."""

    public_ipv4: str
    private_ipv4: str
    public_netmask: str = "255.255.255.0"
    public_gateway: str = ""
    private_netmask: str = "255.255.240.0"


@dataclass(frozen=True)
class FirewallRule:
    """One inbound rule of a cloud firewall, as the machine enforces it."""

    protocol: str  # tcp | udp | icmp
    ports: str  # "22", "8000-9000", "all" or "0" (all)
    addresses: tuple[str, ...] = ()  # CIDRs or single addresses
    droplet_ids: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()


class Machines(Protocol):
    """Makes the twin's droplets and volumes exist."""

    #: "docker" or "none": what twin.json reports.
    kind: str

    def vpc_range(self, requested: str | None, taken: list[str]) -> str:
        """A usable IPv4 range for a new VPC: ``requested`` when it is free on this
        machine (else MachineError), or a free /20 that overlaps none of ``taken``."""
        ...

    def create_droplet(self, droplet_id: int, name: str, *, vpc_uuid: str, vpc_range: str,
                       public_keys: list[str], vcpus: int, memory_mb: int) -> Addresses:
        """Start the droplet's machine; return its addresses. Returns before it has booted."""
        ...

    def ready(self, droplet_id: int) -> bool:
        """Whether the droplet's machine has booted: sshd answers on its public address
        and root's authorized keys hold the requested keys."""
        ...

    def power_off(self, droplet_id: int) -> None: ...

    def power_on(self, droplet_id: int) -> None:
        """Start it again (with its attached volumes' devices back in place)."""
        ...

    def resize(self, droplet_id: int, *, vcpus: int, memory_mb: int) -> None: ...

    def delete_droplet(self, droplet_id: int) -> None:
        """Remove the machine; its volumes' devices go with it (the volumes stay)."""
        ...

    def create_volume(self, volume_id: str, name: str, size_gb: int) -> None: ...

    def attach_volume(self, volume_id: str, name: str, droplet_id: int) -> None:
        """Make ``/dev/disk/by-id/scsi-0DO_Volume_<name>`` appear in the droplet."""
        ...

    def detach_volume(self, volume_id: str, name: str, droplet_id: int) -> None: ...

    def resize_volume(self, volume_id: str, size_gb: int) -> None: ...

    def delete_volume(self, volume_id: str) -> None: ...

    def apply_firewall(self, droplet_id: int, rules: list[FirewallRule] | None) -> None:
        """Enforce the union of the inbound rules of the firewalls the droplet is in
        (None: in no firewall, every packet passes)."""
        ...

    def remove_all(self) -> list[str]:
        """Remove every machine, network and loop device of this twin; what was removed."""
        ...


class NoMachines:
    """Nothing behind the API: droplets boot at once, addresses are only numbers.

    Addresses are derived from the droplet's id, so a restarted twin (which keeps its
    id counters) never hands out an address twice: public ones come from 198.18.0.0/15
    (reserved for benchmarking, never routed), private ones from the VPC's range."""

    kind = "none"
    PUBLIC = ipaddress.ip_network("198.18.0.0/15")
    HOSTS_PER_SUBNET = 253  # .2 to .254 of each /24; .1 is the gateway

    def vpc_range(self, requested: str | None, taken: list[str]) -> str:
        if requested:
            return requested
        used = [ipaddress.ip_network(t) for t in taken]
        for index in range(16, 4096):
            candidate = ipaddress.ip_network(f"10.{index // 16}.{(index % 16) * 16}.0/20")
            if not any(candidate.overlaps(u) for u in used):
                return str(candidate)
        raise MachineError("no free /20 left in 10.0.0.0/8")

    def create_droplet(self, droplet_id: int, name: str, *, vpc_uuid: str, vpc_range: str,
                       public_keys: list[str], vcpus: int, memory_mb: int) -> Addresses:
        subnets = self.PUBLIC.num_addresses // 256
        index = droplet_id % (subnets * self.HOSTS_PER_SUBNET)
        subnet = self.PUBLIC.network_address + 256 * (index // self.HOSTS_PER_SUBNET)
        public = subnet + 2 + index % self.HOSTS_PER_SUBNET
        network = ipaddress.ip_network(vpc_range)
        private = network.network_address + 2 + droplet_id % (network.num_addresses - 3)
        return Addresses(public_ipv4=str(public), private_ipv4=str(private),
                         public_gateway=str(subnet + 1),
                         private_netmask=str(network.netmask))

    def ready(self, droplet_id: int) -> bool:
        return True

    def power_off(self, droplet_id: int) -> None:
        pass

    def power_on(self, droplet_id: int) -> None:
        pass

    def resize(self, droplet_id: int, *, vcpus: int, memory_mb: int) -> None:
        pass

    def delete_droplet(self, droplet_id: int) -> None:
        pass

    def create_volume(self, volume_id: str, name: str, size_gb: int) -> None:
        pass

    def attach_volume(self, volume_id: str, name: str, droplet_id: int) -> None:
        pass

    def detach_volume(self, volume_id: str, name: str, droplet_id: int) -> None:
        pass

    def resize_volume(self, volume_id: str, size_gb: int) -> None:
        pass

    def delete_volume(self, volume_id: str) -> None:
        pass

    def apply_firewall(self, droplet_id: int, rules: list[FirewallRule] | None) -> None:
        pass

    def remove_all(self) -> list[str]:
        return []
