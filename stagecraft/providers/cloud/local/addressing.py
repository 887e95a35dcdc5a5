"""Names, subnets, IPs and SSH ports of the local cloud: pure functions, no Docker.

Everything is derived from the project/environment/host names so a fleet gets the
same addresses every time it is made, unless something else on the machine already
uses them; then the next free one is taken.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network

from stagecraft.errors import ProviderError

#: The local cloud's "VPC" subnets are /24s out of this block. Docker's own default
#: pools are 172.17.0.0/16-172.31.0.0/16 and 192.168.0.0/16, so this rarely collides.
SUBNET_POOL = IPv4Network("10.200.0.0/13")
SUBNET_PREFIX = 24

#: Host i (0-based, in spec order) gets .FIRST_HOST+i; .1 is the gateway. Hosts use
#: the lower half of the /24; Docker hands out the upper half (dynamic_range) to
#: containers attached without an address (a registry on the fleet network), so the
#: two never collide.
FIRST_HOST = 10

#: SSH is published on 127.0.0.1 at a fixed port per host (a random port would change
#: on every restart and break the pinned known_hosts). Below Linux's ephemeral range
#: (32768+), so neither docker's random ports nor outgoing connections take them.
SSH_PORT_RANGE = range(22000, 23000)

#: Other ports published on 127.0.0.1: the registry (for the controller to push) and
#: edge hosts' 80/443. Fixed per name for the same reason as SSH, and below 32768 too.
PUBLISHED_PORT_RANGE = range(23000, 26000)

#: The registry's address on the network: the first of Docker's dynamic range (the
#: upper half), so never a host's. It is taken when the network is made, before
#: anything else attaches, so Docker's own allocation never hands it out first.
REGISTRY_OFFSET = 128

#: Host names the local cloud keeps for itself (they would name its own containers).
RESERVED_HOST_NAMES = frozenset({"registry"})

PREFIX = "stagecraft"


def network_name(project: str, environment: str) -> str:
    """The Docker network that is the environment's private network (VPC)."""
    return f"{PREFIX}-{project}-{environment}"


#: The public network's name is the private one's plus this. ``_`` never appears in a
#: DNS label, so no other environment's network can have the name; and it sorts after
#: the private network's name, so Docker keeps the private network as the hosts'
#: gateway endpoint: their default route and the ports published on 127.0.0.1 (SSH)
#: stay on the private side.
PUBLIC_SUFFIX = "_public"


def public_network_name(project: str, environment: str) -> str:
    """The Docker network that plays the internet side of the environment's hosts: the
    controller scans their public addresses there (the firewall's public side)."""
    return network_name(project, environment) + PUBLIC_SUFFIX


def container_name(project: str, environment: str, host: str) -> str:
    """The container of one host; its hostname is the plain host name."""
    return f"{PREFIX}-{project}-{environment}-{host}"


def volume_name(project: str, environment: str, volume: str) -> str:
    """The named Docker volume that stands in for a block-storage volume."""
    return f"{PREFIX}-{project}-{environment}-{volume}"


def registry_container_name(project: str, environment: str) -> str:
    """The environment's registry container (a host may not be called ``registry``)."""
    return f"{PREFIX}-{project}-{environment}-registry"


def registry_volume_name(project: str, environment: str) -> str:
    """The registry's storage. ``_`` never appears in a block-storage volume's name, so
    this never collides with one."""
    return f"{PREFIX}-{project}-{environment}_registry"


def registry_ip(subnet: IPv4Network) -> IPv4Address:
    """The registry's fixed address: .128 of a /24."""
    return subnet.network_address + REGISTRY_OFFSET


def _start(key: str, modulo: int) -> int:
    # sha256, not hash(): the choice must not change between Python processes.
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % modulo


def choose_subnet(
    key: str,
    taken: Iterable[IPv4Network],
    pool: IPv4Network = SUBNET_POOL,
    prefix: int = SUBNET_PREFIX,
) -> IPv4Network:
    """The first /``prefix`` of ``pool``, from a start derived from ``key``, that overlaps
    nothing in ``taken`` (other Docker networks, this machine's routes).

    Raises ProviderError when the pool is full.
    """
    taken = [t for t in taken if t.prefixlen > 0]  # a default route overlaps everything
    count = 2 ** (prefix - pool.prefixlen)
    size = 2 ** (32 - prefix)
    start = _start(key, count)
    for step in range(count):
        index = (start + step) % count
        candidate = IPv4Network((int(pool.network_address) + index * size, prefix))
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise ProviderError(
        f"no free /{prefix} subnet left in {pool} for the local cloud network",
        hint="remove unused Docker networks (`docker network prune`)",
    )


def gateway(subnet: IPv4Network) -> IPv4Address:
    """The subnet's gateway: its first address (the Docker bridge)."""
    return subnet.network_address + 1


def dynamic_range(subnet: IPv4Network) -> IPv4Network:
    """The upper half of the subnet: Docker's --ip-range for containers without --ip."""
    return list(subnet.subnets(prefixlen_diff=1))[1]


def host_ip(subnet: IPv4Network, index: int, taken: Iterable[IPv4Address] = ()) -> IPv4Address:
    """The address of the host at ``index`` in the spec: .10+index, or the next free one
    in the lower half of the subnet.

    Raises ProviderError when no address is left there.
    """
    taken_set = {ipaddress.ip_address(a) for a in taken} | {gateway(subnet)}
    lower = list(subnet.subnets(prefixlen_diff=1))[0]
    # Every address of the lower half from .FIRST_HOST on; its last one (.127 of a /24)
    # is an ordinary address of the /24, not a broadcast.
    candidates = [subnet.network_address + i for i in range(FIRST_HOST, lower.num_addresses)]
    first = min(index, len(candidates))
    for candidate in candidates[first:] + candidates[:first]:
        if candidate not in taken_set:
            return candidate
    raise ProviderError(
        f"no free host address left in {lower} (the hosts' half of {subnet})",
        hint=f"an environment of the local cloud holds at most {len(candidates)} hosts",
    )


def choose_port(key: str, taken: Iterable[int], ports: range = SSH_PORT_RANGE) -> int:
    """A port from ``ports``, from a start derived from ``key``, not in ``taken``.

    Raises ProviderError when every port of the range is taken.
    """
    taken_set = set(taken)
    start = _start(key, len(ports))
    for step in range(len(ports)):
        port = ports[(start + step) % len(ports)]
        if port not in taken_set:
            return port
    raise ProviderError(
        f"no free port left in {ports.start}-{ports.stop - 1} on 127.0.0.1",
        hint="remove local-cloud environments you no longer use (`stagecraft infra down`)",
    )


def routes_from_proc(text: str) -> list[IPv4Network]:
    """The IPv4 networks of this machine's routing table (/proc/net/route format)."""
    networks = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 8:
            continue
        try:
            # Little-endian hex, as the kernel prints it.
            dest = IPv4Address(int.from_bytes(bytes.fromhex(parts[1]), "little"))
            mask = IPv4Address(int.from_bytes(bytes.fromhex(parts[7]), "little"))
            networks.append(IPv4Network(f"{dest}/{mask}", strict=False))
        except ValueError:
            continue
    return networks
