"""The twin's droplets as containers and its volumes as loop devices of this machine.

A droplet is a container of the local cloud's host image (Debian 13, systemd as PID 1,
sshd) run with the local cloud's host flags. It sits on two Docker networks: the twin's
"public" network (its public IPv4; this machine reaches it directly, and Docker's NAT
is its way to the internet) and the network of its VPC (subnet = the VPC's range, its
private IPv4). Docker itself is the inventory: containers and networks carry the label
``org.stagecraft.twin=<twin id>``, so ``remove_all`` finds them even after a crash.

A volume is a sparse file ``<state dir>/volumes/<volume id>.img`` on a loop device;
attaching it makes a block device node at DigitalOcean's path inside the droplet
(``mknod``, allowed by ``--device-cgroup-rule 'b 7:* rmw'``). A cloud firewall is an
nftables table in the droplet's network namespace, written from this machine.

``<state dir>/machines.json`` records what Docker cannot tell: each droplet's addresses,
keys, firewall rules and whether it was powered off, and each volume's file, loop
device and droplet, so a restarted twin (or ``power_on``) can put things back.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from stagecraft.errors import StagecraftError
from stagecraft.execs import Completed
from stagecraft.fsutil import write_atomic
from stagecraft.hosts.ssh import sshd_answers
from stagecraft.providers.cloud.local import addressing, loopdev
from stagecraft.providers.cloud.local.dockercli import docker, run, tail
from stagecraft.providers.cloud.local.host_image import ensure_host_image
from stagecraft.providers.cloud.local.provider import HOST_RUN_FLAGS
from stagecraft_twins.digitalocean.machines import Addresses, FirewallRule, MachineError

log = logging.getLogger(__name__)

LABEL_TWIN = "org.stagecraft.twin"
LABEL_DROPLET = "org.stagecraft.twin.droplet"
#: "public" or "vpc:<uuid>": which of the twin's networks a Docker network is.
LABEL_NETWORK = "org.stagecraft.twin.network"

#: Where the public networks' /24s come from: RFC 2544's benchmarking block, which
#: neither Docker's default pools nor the VPC ranges (10.0.0.0/8) use.
PUBLIC_POOL = IPv4Network("198.18.0.0/15")
#: Where VPCs without a requested range get their /20.
VPC_POOL = IPv4Network("10.0.0.0/8")
VPC_PREFIX = 20

#: The table that plays a cloud firewall inside a droplet (DigitalOcean's own name).
FIREWALL_TABLE = "do_cloud_firewall"
#: The chain's priority on the prerouting hook: after conntrack (-200), so established
#: traffic is recognised, and before the NAT of a Docker inside the droplet (dstnat,
#: -100), so published ports are filtered too, as the cloud's firewall filters before
#: the droplet sees a packet. (At -300 conntrack has not run yet: every packet looks
#: invalid and no answer to the droplet's own connections would pass.)
FIREWALL_PRIORITY = -150

#: Seconds systemd gets to shut down on `docker stop`.
STOP_SECONDS = 10
#: A volume's name may only be what DigitalOcean accepts; it ends up in a path.
_VOLUME_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_RECORD_FILE = "machines.json"
_MESSAGE_CHARS = 600


class DockerMachines:
    """Droplets as host containers, volumes as loop devices, firewalls as nftables.

    ``tag_resolver`` may be set by the API to a callable giving the droplet ids that
    carry a tag, so firewall rules naming tags admit those droplets; without it, tags
    admit nobody.
    """

    kind = "docker"

    def __init__(self, state_dir: Path, twin_id: str) -> None:
        self.state_dir = Path(state_dir)
        self.twin_id = twin_id
        self.tag_resolver: Callable[[str], list[int]] | None = None
        self._lock = threading.RLock()
        self._ready: set[int] = set()
        self._image: str | None = None

    # ------------------------------------------------------------------ names

    @property
    def public_network(self) -> str:
        """The twin's public Docker network."""
        return f"sctwin-{self.twin_id}-public"

    def vpc_network(self, vpc_uuid: str) -> str:
        """The Docker network of one VPC."""
        return f"sctwin-{self.twin_id}-vpc-{vpc_uuid[:8]}"

    def container_name(self, droplet_id: int) -> str:
        """The container of one droplet."""
        return f"sctwin-{self.twin_id}-droplet-{droplet_id}"

    # ------------------------------------------------------------------- VPCs

    def vpc_range(self, requested: str | None, taken: list[str]) -> str:
        """``requested`` when it overlaps nothing on this machine nor ``taken``, else a
        free /20 of 10.0.0.0/8."""
        used = _machine_networks()
        for other in taken:
            with contextlib.suppress(ValueError):
                used.append((ipaddress.ip_network(other, strict=False), f"VPC range {other}"))
        if requested:
            try:
                wanted = ipaddress.ip_network(requested)
            except ValueError as exc:
                raise MachineError(f"the VPC range {requested!r} is not a network: {exc}") from None
            for network, what in used:
                if network.prefixlen > 0 and wanted.overlaps(network):
                    raise MachineError(f"the VPC range {requested} overlaps {what} ({network}) "
                                       "on the twin's machine")
            return str(wanted)
        try:
            chosen = addressing.choose_subnet(f"{self.twin_id}/vpc",
                                              [n for n, _ in used if n.version == 4],
                                              pool=VPC_POOL, prefix=VPC_PREFIX)
        except StagecraftError as exc:
            raise MachineError(f"no free /{VPC_PREFIX} for a VPC in {VPC_POOL}") from exc
        return str(chosen)

    # --------------------------------------------------------------- droplets

    def create_droplet(self, droplet_id: int, name: str, *, vpc_uuid: str, vpc_range: str,
                       public_keys: list[str], vcpus: int, memory_mb: int) -> Addresses:
        """Run the droplet's container on the public network, connect it to its VPC's
        network, and return its addresses. Does not wait for it to boot."""
        what = f"droplet {droplet_id} ({name})"
        image = self._host_image()
        vpc = IPv4Network(vpc_range)
        with self._lock:
            public = self._ensure_public_network()
            vpc_net = self._ensure_vpc_network(vpc_uuid, vpc)
            records = self._read()
            if str(droplet_id) in records["droplets"]:
                raise MachineError(f"{what} already has a machine "
                                   f"({self.container_name(droplet_id)})")
            public_ip = _pick_address(public, droplet_id, self._used_addresses(records, public))
            private_ip = _pick_address(vpc, droplet_id, self._used_addresses(records, vpc))
            records["droplets"][str(droplet_id)] = {
                "name": name, "container": self.container_name(droplet_id),
                "public_ipv4": str(public_ip), "private_ipv4": str(private_ip),
                "vpc_uuid": vpc_uuid, "vpc_network": vpc_net,
                "public_keys": [k.strip() for k in public_keys if k.strip()],
                "firewall": None, "powered_off": False,
            }
            self._write(records)  # reserves the addresses before the slow part
        container = self.container_name(droplet_id)
        try:
            self._docker(what, "run a container for",
                         "run", "-d", "--name", container, "--hostname", name,
                         "--label", f"{LABEL_TWIN}={self.twin_id}",
                         "--label", f"{LABEL_DROPLET}={droplet_id}",
                         *HOST_RUN_FLAGS,
                         "--device-cgroup-rule", "b 7:* rmw",
                         "--network", self.public_network, "--ip", str(public_ip),
                         image, "/sbin/init", timeout=120)
            # Public first: it stays the default route (the VPC network is internal).
            self._docker(what, f"connect to the VPC network {vpc_net}",
                         "network", "connect", "--ip", str(private_ip), vpc_net, container)
        except MachineError as exc:
            # A failed `docker run -d` can leave a created-but-not-started container; a
            # container that had the name already is not ours to remove.
            if "already in use" not in str(exc):
                docker("rm", "-fv", container, what=f"clean up the failed {what}",
                       check=False, timeout=60)
            with self._lock:
                records = self._read()
                records["droplets"].pop(str(droplet_id), None)
                self._write(records)
            raise
        return Addresses(public_ipv4=str(public_ip), private_ipv4=str(private_ip),
                         public_netmask=str(public.netmask),
                         public_gateway=str(addressing.gateway(public)),
                         private_netmask=str(vpc.netmask))

    def ready(self, droplet_id: int) -> bool:
        """True once ssh.service runs, root's authorized_keys hold the droplet's keys and
        an SSH banner answers at its public address; cached until the next power cycle.
        A machine that stopped while nobody powered it off is a MachineError."""
        if droplet_id in self._ready:
            return True
        record = self._droplet(droplet_id)
        what = f"droplet {droplet_id} ({record['name']})"
        state = self._container_state(droplet_id)
        if state is None:
            raise MachineError(f"{what} has no machine: container {record['container']} "
                               "is gone")
        if state != "running":
            if record.get("powered_off"):
                return False
            logs = docker("logs", "--tail", "20", record["container"], check=False,
                          what=f"read the log of {what}", timeout=30)
            raise MachineError(f"{what} stopped while booting (container {state}): "
                               f"{_short(logs.stdout + logs.stderr) or 'no log output'}")
        probe = docker("exec", record["container"], "systemctl", "is-active", "--quiet",
                       "ssh.service", check=False, what=f"check sshd of {what}", timeout=30)
        if probe.returncode != 0:
            return False
        self._authorize_keys(droplet_id, record)
        if not sshd_answers(record["public_ipv4"]):
            return False
        self._ready.add(droplet_id)
        return True

    def power_off(self, droplet_id: int) -> None:
        """Stop the container (systemd gets STOP_SECONDS to shut down)."""
        record = self._droplet(droplet_id)
        self._set_droplet(droplet_id, powered_off=True)
        self._ready.discard(droplet_id)
        self._docker(f"droplet {droplet_id} ({record['name']})", "stop",
                     "stop", "-t", str(STOP_SECONDS), record["container"],
                     timeout=STOP_SECONDS + 60)

    def power_on(self, droplet_id: int) -> None:
        """Start the container, make its attached volumes' device nodes again and put
        its firewall back (a started container has a new /dev and network namespace)."""
        record = self._droplet(droplet_id)
        what = f"droplet {droplet_id} ({record['name']})"
        self._ready.discard(droplet_id)
        self._docker(what, "start", "start", record["container"])
        self._set_droplet(droplet_id, powered_off=False)
        for volume_id, volume in self._read()["volumes"].items():
            if volume.get("droplet") == droplet_id:
                self._make_node(volume_id, volume, droplet_id)
        if record.get("firewall") is not None:
            self._write_firewall(droplet_id)

    def resize(self, droplet_id: int, *, vcpus: int, memory_mb: int) -> None:
        """Give the container the size's CPUs (at most this machine's) and memory. An
        engine that refuses memory limits (no memory cgroup) gets the CPUs only."""
        record = self._droplet(droplet_id)
        what = f"droplet {droplet_id} ({record['name']})"
        cpus = min(max(vcpus, 1), os.cpu_count() or 1)
        proc = docker("update", "--cpus", str(cpus), "--memory", f"{memory_mb}m",
                      "--memory-swap", "-1", record["container"], check=False,
                      what=f"resize {what}", timeout=60)
        if proc.returncode == 0:
            return
        log.warning("%s: the engine refused a memory limit of %s MiB (%s); applying the "
                    "CPUs only", what, memory_mb, _short(proc.stderr))
        self._docker(what, "resize", "update", "--cpus", str(cpus), record["container"])

    def delete_droplet(self, droplet_id: int) -> None:
        """Remove the container (and its anonymous volumes); its volumes become detached
        (their device nodes went with it), the volumes themselves stay."""
        with self._lock:
            records = self._read()
            record = records["droplets"].get(str(droplet_id))
            container = record["container"] if record else self.container_name(droplet_id)
        proc = docker("rm", "-fv", container, what=f"remove droplet {droplet_id}", check=False,
                      timeout=120)
        if proc.returncode != 0 and "no such container" not in proc.stderr.lower():
            raise MachineError(f"cannot remove droplet {droplet_id}: `docker rm` exited "
                               f"{proc.returncode}: {_short(proc.stderr)}")
        self._ready.discard(droplet_id)
        with self._lock:
            records = self._read()
            records["droplets"].pop(str(droplet_id), None)
            for volume in records["volumes"].values():
                if volume.get("droplet") == droplet_id:
                    volume["droplet"] = None
            self._write(records)

    # ---------------------------------------------------------------- volumes

    def create_volume(self, volume_id: str, name: str, size_gb: int) -> None:
        """A sparse file of ``size_gb`` GiB on a loop device of this machine."""
        _check_volume_name(name)
        self._ensure_loop_support()
        file = self._volume_file(volume_id)
        file.parent.mkdir(parents=True, exist_ok=True)
        if not file.exists():
            with open(file, "wb") as handle:
                handle.truncate(size_gb * loopdev.GIB)
        loop = self._loop_of(volume_id, file, attach=True)
        with self._lock:
            records = self._read()
            previous = records["volumes"].get(volume_id) or {}
            records["volumes"][volume_id] = {"name": name, "file": str(file), "loop": loop,
                                             "droplet": previous.get("droplet")}
            self._write(records)

    def attach_volume(self, volume_id: str, name: str, droplet_id: int) -> None:
        """Make ``/dev/disk/by-id/scsi-0DO_Volume_<name>`` appear in the droplet."""
        _check_volume_name(name)
        volume = self._volume(volume_id)
        volume["name"] = name
        self._droplet(droplet_id)
        self._make_node(volume_id, volume, droplet_id)
        with self._lock:
            records = self._read()
            records["volumes"][volume_id].update(name=name, droplet=droplet_id)
            self._write(records)

    def detach_volume(self, volume_id: str, name: str, droplet_id: int) -> None:
        """Remove the volume's device node from the droplet (when it runs: a stopped
        droplet's /dev is made anew when it starts)."""
        _check_volume_name(name)
        self._volume(volume_id)
        record = self._droplets().get(str(droplet_id))
        if record is not None and self._container_state(droplet_id) == "running":
            self._docker(f"droplet {droplet_id} ({record['name']})",
                         f"remove the device of volume {name} from",
                         "exec", record["container"], "rm", "-f", loopdev.device_path(name))
        with self._lock:
            records = self._read()
            records["volumes"][volume_id]["droplet"] = None
            self._write(records)

    def resize_volume(self, volume_id: str, size_gb: int) -> None:
        """Grow the file to ``size_gb`` GiB and tell the kernel (``losetup -c``); never
        shrinks it."""
        volume = self._volume(volume_id)
        file = Path(volume["file"])
        wanted = size_gb * loopdev.GIB
        if file.stat().st_size > wanted:
            raise MachineError(f"volume {volume['name']} is {file.stat().st_size // loopdev.GIB} "
                               f"GiB; it cannot shrink to {size_gb} GiB")
        os.truncate(file, wanted)
        loop = self._loop_of(volume_id, file, attach=True)
        self._run(["losetup", "-c", loop], f"tell the kernel that volume {volume['name']} "
                  f"({loop}) grew")

    def delete_volume(self, volume_id: str) -> None:
        """Remove its device node if attached, detach its loop device, remove its file."""
        with self._lock:
            volume = self._read()["volumes"].get(volume_id)
        file = self._volume_file(volume_id)
        if volume is not None and volume.get("droplet") is not None:
            self.detach_volume(volume_id, volume["name"], volume["droplet"])
        if file.exists():
            for loop in loopdev.loops_of(file):
                self._run(["losetup", "-d", loop], f"detach volume {volume_id} from {loop}")
            file.unlink()
        with self._lock:
            records = self._read()
            records["volumes"].pop(volume_id, None)
            self._write(records)

    # -------------------------------------------------------------- firewalls

    def apply_firewall(self, droplet_id: int, rules: list[FirewallRule] | None) -> None:
        """Record the droplet's inbound rules and enforce them now if it runs (else when
        it starts). Droplet ids in rules are resolved to those droplets' current
        addresses at this moment: call it again when they change."""
        self._set_droplet(droplet_id,
                          firewall=None if rules is None else [asdict(r) for r in rules])
        if self._container_state(droplet_id) == "running":
            self._write_firewall(droplet_id)

    def firewall_ruleset(self, droplet_id: int) -> str:
        """The nft script that makes the droplet's firewall what its record says:
        declare, delete and (with rules) recreate the table, one atomic transaction."""
        record = self._droplet(droplet_id)
        script = [f"table inet {FIREWALL_TABLE}", f"delete table inet {FIREWALL_TABLE}"]
        if record.get("firewall") is None:
            return "\n".join(script) + "\n"
        rules = [FirewallRule(**{**r, "addresses": tuple(r["addresses"]),
                                 "droplet_ids": tuple(r["droplet_ids"]), "tags": tuple(r["tags"])})
                 for r in record["firewall"]]
        lines = [
            f"type filter hook prerouting priority {FIREWALL_PRIORITY}; policy accept;",
            # Only what comes from outside: eth* are Docker's interfaces in the droplet;
            # a Docker inside it (docker0, br-*, veth*) is the droplet's own business.
            'iifname != "eth*" accept',
            "ct state established,related accept",
            # IPv6 needs neighbour discovery to work at all.
            "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept",
        ]
        for rule in rules:
            lines += self._rule_lines(rule)
        lines.append("drop")
        body = "\n".join(f"    {line}" for line in lines)
        script.append(f"table inet {FIREWALL_TABLE} {{\n  chain inbound {{\n{body}\n  }}\n}}")
        return "\n".join(script) + "\n"

    def _rule_lines(self, rule: FirewallRule) -> list[str]:
        """One nft rule per address family the rule's sources have."""
        sources = list(rule.addresses)
        droplets = self._droplets()
        ids = list(rule.droplet_ids)
        if rule.tags and self.tag_resolver is not None:
            for tag in rule.tags:
                ids += self.tag_resolver(tag)
        for droplet_id in ids:
            found = droplets.get(str(droplet_id))
            if found is not None:
                sources += [found["public_ipv4"], found["private_ipv4"]]
        v4: list[IPv4Network] = []
        v6: list[ipaddress.IPv6Network] = []
        for source in sources:
            try:
                network = ipaddress.ip_network(source, strict=False)
            except ValueError as exc:
                raise MachineError(f"firewall source {source!r} is not an address: {exc}") from None
            if isinstance(network, IPv4Network):
                v4.append(network)
            else:
                v6.append(network)
        protocol = rule.protocol.lower()
        if protocol not in ("tcp", "udp", "icmp"):
            raise MachineError(f"firewall protocol {rule.protocol!r} is not tcp, udp or icmp")
        ports = (rule.ports or "").strip().lower()
        lines = []
        for family, networks in (("ip", v4), ("ip6", v6)):
            if not networks:
                continue
            # Overlapping elements of one set are an error to some nft versions.
            merged = ipaddress.collapse_addresses(networks)  # type: ignore[type-var]
            match = f"{family} saddr {{ {', '.join(str(n) for n in merged)} }}"
            if protocol == "icmp":
                l4 = "icmp" if family == "ip" else "ipv6-icmp"
                lines.append(f"{match} meta l4proto {l4} accept")
            elif ports in ("", "all", "0"):
                lines.append(f"{match} meta l4proto {protocol} accept")
            else:
                if not re.fullmatch(r"\d{1,5}(-\d{1,5})?", ports):
                    raise MachineError(f"firewall ports {rule.ports!r} are not a port or a range")
                lines.append(f"{match} {protocol} dport {ports} accept")
        return lines

    def _write_firewall(self, droplet_id: int) -> None:
        """Load the droplet's ruleset into its network namespace, from this machine
        (nsenter + this machine's nft: the host image has no nft)."""
        record = self._droplet(droplet_id)
        what = f"droplet {droplet_id} ({record['name']})"
        script = self.firewall_ruleset(droplet_id)
        if shutil.which("nft") and shutil.which("nsenter"):
            pid = self._docker(what, "find the process of", "inspect", "--format",
                               "{{.State.Pid}}", record["container"]).stdout.strip()
            self._run(["nsenter", f"--net=/proc/{pid}/ns/net", "nft", "-f", "-"],
                      f"apply the firewall of {what}", input=script)
            return
        self._docker(what, "apply the firewall (nft inside; install nftables on this machine "
                     "if the droplet has none) of", "exec", "-i", record["container"],
                     "nft", "-f", "-", input=script)

    # -------------------------------------------------------------- clean-up

    def remove_all(self) -> list[str]:
        """Remove every container and network labelled as this twin's, every loop device
        of a file under ``<state dir>/volumes/`` and those files; what was removed."""
        removed: list[str] = []
        label = f"label={LABEL_TWIN}={self.twin_id}"
        ids = self._docker("the twin", "list the containers of", "ps", "-a", "-q",
                           "--filter", label).stdout.split()
        for container in ids:
            name = self._docker("the twin", "inspect a container of", "inspect", "--format",
                                "{{.Name}}", container).stdout.strip().lstrip("/")
            self._docker("the twin", f"remove container {name} of", "rm", "-fv", container)
            removed.append(f"container {name}")
        networks = self._docker("the twin", "list the networks of", "network", "ls",
                                "--filter", label, "--format", "{{.Name}}").stdout.split()
        for network in networks:
            self._docker("the twin", f"remove network {network} of", "network", "rm", network)
            removed.append(f"network {network}")
        root = self.state_dir / loopdev.VOLUMES_DIR
        if root.is_dir():
            for file in sorted(root.glob("*.img")):
                for loop in loopdev.loops_of(file):
                    self._run(["losetup", "-d", loop], f"detach {loop} ({file.name})")
                    removed.append(f"loop device {loop}")
                file.unlink()
                removed.append(f"file {file}")
            with contextlib.suppress(OSError):
                root.rmdir()
        record = self.state_dir / _RECORD_FILE
        if record.exists():
            record.unlink()
            removed.append(f"file {record}")
        self._ready.clear()
        return removed

    # ------------------------------------------------------------- internals

    def _host_image(self) -> str:
        if self._image is None:
            try:
                self._image = ensure_host_image()
            except StagecraftError as exc:
                raise MachineError("cannot make the droplets' host image: "
                                   f"{_short(str(exc))}") from exc
        return self._image

    def _ensure_public_network(self) -> IPv4Network:
        """The twin's public network, made on a free /24 of PUBLIC_POOL if missing."""
        name = self.public_network
        found = self._inspect_network(name)
        if found is not None:
            return _network_subnet(found, name)
        for _attempt in range(10):
            taken = [n for n, _ in _machine_networks() if n.version == 4]
            try:
                subnet = addressing.choose_subnet(self.twin_id, taken, pool=PUBLIC_POOL)
            except StagecraftError as exc:
                raise MachineError(f"no free /24 for the public network in {PUBLIC_POOL}") from exc
            proc = docker("network", "create", "--driver", "bridge", "--subnet", str(subnet),
                          "--gateway", str(addressing.gateway(subnet)),
                          "--label", f"{LABEL_TWIN}={self.twin_id}",
                          "--label", f"{LABEL_NETWORK}=public", name,
                          what=f"create the public network {name}", check=False, timeout=60)
            if proc.returncode == 0:
                return subnet
            if "overlap" not in proc.stderr.lower():
                raise MachineError(f"cannot create the public network {name} ({subnet}): "
                                   f"{_short(proc.stderr)}")
        raise MachineError(f"cannot create the public network {name}: every /24 tried "
                           "overlapped another network")

    def _ensure_vpc_network(self, vpc_uuid: str, vpc: IPv4Network) -> str:
        """The VPC's network (internal: the default route stays the public one)."""
        name = self.vpc_network(vpc_uuid)
        found = self._inspect_network(name)
        if found is not None:
            subnet = _network_subnet(found, name)
            if subnet != vpc:
                raise MachineError(f"network {name} of VPC {vpc_uuid} has the subnet {subnet}, "
                                   f"not the VPC's range {vpc}")
            return name
        self._docker(f"VPC {vpc_uuid}", f"create the network {name} ({vpc}) of",
                     "network", "create", "--driver", "bridge", "--internal",
                     "--subnet", str(vpc), "--gateway", str(addressing.gateway(vpc)),
                     "--label", f"{LABEL_TWIN}={self.twin_id}",
                     "--label", f"{LABEL_NETWORK}=vpc:{vpc_uuid}", name)
        return name

    def _inspect_network(self, name: str) -> dict[str, Any] | None:
        """The network's inspect data; None when it does not exist; MachineError when
        it exists but is not this twin's."""
        proc = docker("network", "inspect", name, what=f"inspect network {name}", check=False,
                      timeout=30)
        if proc.returncode != 0:
            if "no such network" in proc.stderr.lower() or "not found" in proc.stderr.lower():
                return None
            raise MachineError(f"cannot inspect network {name}: {_short(proc.stderr)}")
        found = (json.loads(proc.stdout) or [None])[0]
        if found is not None and (found.get("Labels") or {}).get(LABEL_TWIN) != self.twin_id:
            raise MachineError(f"a Docker network named {name} exists but is not this twin's")
        return found

    def _used_addresses(self, records: dict[str, Any], subnet: IPv4Network) -> set[IPv4Address]:
        """Addresses of ``subnet`` this twin's droplets hold (running or not)."""
        used = set()
        for record in records["droplets"].values():
            for key in ("public_ipv4", "private_ipv4"):
                address = IPv4Address(record[key])
                if address in subnet:
                    used.add(address)
        return used

    def _authorize_keys(self, droplet_id: int, record: dict[str, Any]) -> None:
        """Add the droplet's keys to root's authorized_keys; the keys go on stdin, so
        no quoting of them ever reaches a shell."""
        keys = [k for k in record["public_keys"] if "\n" not in k]
        script = ('umask 077; mkdir -p /root/.ssh; f=/root/.ssh/authorized_keys; touch "$f"; '
                  'while IFS= read -r key; do [ -n "$key" ] || continue; '
                  'grep -qxF "$key" "$f" || printf "%s\\n" "$key" >> "$f"; done')
        self._docker(f"droplet {droplet_id} ({record['name']})",
                     "authorize the SSH keys on", "exec", "-i", record["container"],
                     "sh", "-c", script, input="".join(k + "\n" for k in keys))

    def _make_node(self, volume_id: str, volume: dict[str, Any], droplet_id: int) -> None:
        """Create the volume's block device node in the droplet (replacing one there)."""
        record = self._droplet(droplet_id)
        loop = self._loop_of(volume_id, Path(volume["file"]), attach=True)
        rdev = os.stat(loop).st_rdev
        path = loopdev.device_path(volume["name"])
        script = ('set -e; mkdir -p "$(dirname "$1")"; rm -f "$1"; mknod -m 0660 "$1" b "$2" "$3"; '
                  'chgrp disk "$1" 2>/dev/null || true')
        self._docker(f"droplet {droplet_id} ({record['name']})",
                     f"make the device of volume {volume['name']} ({loop}) in",
                     "exec", record["container"], "sh", "-c", script, "sh", path,
                     str(os.major(rdev)), str(os.minor(rdev)))

    def _loop_of(self, volume_id: str, file: Path, *, attach: bool) -> str:
        """The loop device of the volume's file, found again with ``losetup -j`` (numbers
        change when this machine boots); attached to a free one when it has none."""
        if not file.exists():
            raise MachineError(f"volume {volume_id} has no file ({file})")
        try:
            found = loopdev.loops_of(file)
        except StagecraftError as exc:
            raise MachineError(_short(str(exc))) from exc
        if found:
            loop = found[0]
        elif attach:
            loop = self._run(["losetup", "-f", "--show", str(file)],
                             f"attach volume {volume_id} to a loop device").stdout.strip()
        else:
            raise MachineError(f"volume {volume_id} is on no loop device")
        with self._lock:
            records = self._read()
            volume = records["volumes"].get(volume_id)
            if volume is not None and volume.get("loop") != loop:
                volume["loop"] = loop
                self._write(records)
        return loop

    def _ensure_loop_support(self) -> None:
        try:
            loopdev.ensure_loop_support()
        except StagecraftError as exc:
            raise MachineError(f"volumes need loop devices: {exc}") from exc

    def _volume_file(self, volume_id: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9-]+", volume_id):
            raise MachineError(f"volume id {volume_id!r} is not a plain id")
        return self.state_dir / loopdev.VOLUMES_DIR / f"{volume_id}.img"

    def _container_state(self, droplet_id: int) -> str | None:
        """running, exited, created, ...; None when the container does not exist."""
        proc = docker("inspect", "--format", "{{.State.Status}}",
                      self.container_name(droplet_id), check=False,
                      what=f"inspect droplet {droplet_id}", timeout=30)
        if proc.returncode != 0:
            if "no such" in proc.stderr.lower():
                return None
            raise MachineError(f"cannot inspect droplet {droplet_id}: {_short(proc.stderr)}")
        return proc.stdout.strip()

    # ----------------------------------------------------------------- records

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads((self.state_dir / _RECORD_FILE).read_text())
        except (OSError, ValueError):
            data = {}
        return {"version": 1, "droplets": dict(data.get("droplets") or {}),
                "volumes": dict(data.get("volumes") or {})}

    def _write(self, records: dict[str, Any]) -> None:
        write_atomic(self.state_dir / _RECORD_FILE,
                     json.dumps(records, indent=2, sort_keys=True) + "\n")

    def _droplets(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return self._read()["droplets"]

    def _droplet(self, droplet_id: int) -> dict[str, Any]:
        record = self._droplets().get(str(droplet_id))
        if record is None:
            raise MachineError(f"droplet {droplet_id} has no machine")
        return record

    def _set_droplet(self, droplet_id: int, **changes: Any) -> None:
        with self._lock:
            records = self._read()
            if str(droplet_id) not in records["droplets"]:
                raise MachineError(f"droplet {droplet_id} has no machine")
            records["droplets"][str(droplet_id)].update(changes)
            self._write(records)

    def _volume(self, volume_id: str) -> dict[str, Any]:
        with self._lock:
            volume = self._read()["volumes"].get(volume_id)
        if volume is None:
            raise MachineError(f"volume {volume_id} has no file")
        return volume

    # ------------------------------------------------------------------ running

    def _docker(self, subject: str, action: str, *args: str, input: str | None = None,
                timeout: float = 120) -> Completed:
        """``docker ARGS``; on failure a MachineError "cannot ACTION SUBJECT: <docker's
        words>"."""
        proc = docker(*args, what=f"{action} {subject}", input=input, check=False,
                      timeout=timeout)
        if proc.returncode != 0:
            raise MachineError(f"cannot {action} {subject}: `docker {args[0]}` exited "
                               f"{proc.returncode}: {_short(proc.stderr or proc.stdout)}")
        return proc

    def _run(self, argv: list[str], what: str, *, input: str | None = None) -> Completed:
        try:
            proc = run(argv, what=what, input=input, check=False, timeout=60)
        except StagecraftError as exc:
            raise MachineError(_short(str(exc))) from exc
        if proc.returncode != 0:
            raise MachineError(f"cannot {what}: `{argv[0]}` exited {proc.returncode}: "
                               f"{_short(proc.stderr or proc.stdout)}")
        return proc


# ----------------------------------------------------------------------- helpers


def _short(text: str) -> str:
    """Enough of a command's output to show the cause, on one line."""
    return " ".join(tail(text, _MESSAGE_CHARS).split())


def _check_volume_name(name: str) -> None:
    if not _VOLUME_NAME.match(name):
        raise MachineError(f"volume name {name!r} is not lowercase letters, digits and '-'")


def _pick_address(subnet: IPv4Network, droplet_id: int,
                  used: Iterable[IPv4Address]) -> IPv4Address:
    """The droplet's address in ``subnet``: derived from its id, skipping the network
    address, the gateway (.1), the broadcast address and addresses in use."""
    taken = set(used)
    first = int(subnet.network_address) + 2
    count = subnet.num_addresses - 3
    if count <= 0:
        raise MachineError(f"network {subnet} is too small for droplets")
    start = droplet_id % count
    for step in range(count):
        candidate = IPv4Address(first + (start + step) % count)
        if candidate not in taken:
            return candidate
    raise MachineError(f"no free address left in {subnet}")



def _network_subnet(found: dict[str, Any], name: str) -> IPv4Network:
    for config in (found.get("IPAM") or {}).get("Config") or []:
        subnet = config.get("Subnet")
        if subnet and ":" not in subnet:
            return IPv4Network(subnet)
    raise MachineError(f"network {name} has no IPv4 subnet")


def _machine_networks() -> list[tuple[IPv4Network | ipaddress.IPv6Network, str]]:
    """Every Docker network's subnets and this machine's routes, each with a name."""
    found: list[tuple[IPv4Network | ipaddress.IPv6Network, str]] = []
    ids = docker("network", "ls", "-q", what="list Docker networks", check=False,
                 timeout=30).stdout.split()
    if ids:
        proc = docker("network", "inspect", *ids, what="inspect Docker networks", check=False,
                      timeout=60)
        for network in json.loads(proc.stdout or "[]"):
            for config in (network.get("IPAM") or {}).get("Config") or []:
                with contextlib.suppress(ValueError, TypeError):
                    subnet = ipaddress.ip_network(config.get("Subnet"), strict=False)
                    found.append((subnet, f"Docker network {network.get('Name')}"))
    with contextlib.suppress(OSError):
        for route in addressing.routes_from_proc(Path("/proc/net/route").read_text()):
            if route.prefixlen > 0:
                found.append((route, "a route of this machine"))
    return found
