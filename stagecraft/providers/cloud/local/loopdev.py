"""Block volumes of the local cloud: sparse files on loop devices (INFRA_VOLUME_MGMT).

A DigitalOcean volume shows up in its droplet as a block device at
``/dev/disk/by-id/scsi-0DO_Volume_<name>``. The local cloud gives a host the same:
a sparse file under the environment's state dir, attached to a loop device on this
machine, passed to the host container with ``--device`` at that very path, so the
volumes role runs the same code against a real block device on both clouds.

Files live at ``<state_dir>/volumes/<host>/<volume>.img``. Loop device numbers
change when this machine boots, so the container is not given ``/dev/loopN`` but a
symlink ``<volume>.dev`` beside the file, which Docker resolves each time the
container starts; ``attach`` re-points it after re-attaching the file
(``losetup -j FILE`` finds a loop device already attached). ``volumes.json`` in the
state dir records host -> volume -> file, loop device and size, for people and
``down``.

A file is never shrunk: a smaller size asks for a smaller disk, which a filesystem
on it cannot survive. A larger size grows the file and tells the kernel
(``losetup -c``); the volumes role then grows the filesystem.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stagecraft.errors import EnvironmentMissing
from stagecraft.fsutil import write_atomic
from stagecraft.providers.cloud.base import FleetSpec, Log, VolumeStatus
from stagecraft.providers.cloud.local.addressing import container_name
from stagecraft.providers.cloud.local.dockercli import run

#: Where DigitalOcean puts a volume's device; the role looks there on both clouds.
DEVICE_PREFIX = "/dev/disk/by-id/scsi-0DO_Volume_"
#: GiB of a volume whose size nobody gave (the file is sparse: it costs what is written).
DEFAULT_SIZE_GB = 10
VOLUMES_DIR = "volumes"
RECORD_FILE = "volumes.json"
GIB = 1024 ** 3

_LOSETUP_LINE = re.compile(r"^(/dev/loop\d+):")


def device_path(volume: str) -> str:
    """The stable path of ``volume``'s block device inside a host."""
    return f"{DEVICE_PREFIX}{volume}"


@dataclass(frozen=True)
class LoopVolume:
    """One volume of one host, attached: its file, loop device and the symlink to it."""

    host: str
    volume: str
    file: Path
    loop: str  # /dev/loopN on this machine
    link: Path  # symlink to ``loop``, what ``docker run --device`` is given
    size_bytes: int

    @property
    def device_arg(self) -> str:
        """The value of ``docker run --device`` for this volume."""
        return f"{self.link}:{device_path(self.volume)}"


def volume_file(state_dir: Path, host: str, volume: str) -> Path:
    """``<state_dir>/volumes/<host>/<volume>.img``."""
    return Path(state_dir) / VOLUMES_DIR / host / f"{volume}.img"


def ensure_loop_support() -> None:
    """Make sure loop devices can be had: /dev/loop-control, else ``modprobe loop``."""
    if shutil.which("losetup") is None:
        raise EnvironmentMissing(
            "the local cloud's volumes need `losetup`, which is not installed",
            hint="install util-linux (apt-get install util-linux)")
    if Path("/dev/loop-control").exists():
        return
    if shutil.which("modprobe") is not None:
        subprocess.run(["modprobe", "loop"], capture_output=True, timeout=30, check=False)
    if not Path("/dev/loop-control").exists():
        raise EnvironmentMissing(
            "this machine has no loop devices (/dev/loop-control is missing and "
            "`modprobe loop` did not add it)",
            hint="load the loop module as root (`modprobe loop`), or drop `volumes:` "
            "from the hosts of this local environment")


def loops_of(file: Path) -> list[str]:
    """The loop devices ``file`` is attached to (``losetup -j``), usually zero or one."""
    proc = run(["losetup", "-j", str(file)], what=f"look up the loop device of {file}",
               timeout=30)
    return [m.group(1) for line in proc.stdout.splitlines()
            if (m := _LOSETUP_LINE.match(line.strip()))]


def attach(state_dir: Path, host: str, volume: str, size_gb: int, *,
           log: Log | None = None) -> LoopVolume:
    """Make ``volume``'s file (sparse), grow it to ``size_gb`` if smaller, attach it to a
    loop device unless it is, point the ``.dev`` symlink at that device, record it.

    Idempotent: a second call with the same size changes nothing.
    """
    log = log or (lambda _: None)
    ensure_loop_support()
    file = volume_file(state_dir, host, volume)
    file.parent.mkdir(parents=True, exist_ok=True)
    wanted = size_gb * GIB
    grew = False
    if not file.exists():
        with open(file, "wb") as handle:
            handle.truncate(wanted)
        log(f"created volume {volume} of host {host} ({size_gb} GiB sparse file {file})")
    elif file.stat().st_size < wanted:
        os.truncate(file, wanted)
        grew = True
        log(f"grew volume {volume} of host {host} to {size_gb} GiB")
    found = loops_of(file)
    if found:
        loop = found[0]
        if grew:
            # The kernel reads the new size only when told.
            run(["losetup", "-c", loop], what=f"tell the kernel that {loop} grew", timeout=30)
    else:
        proc = run(["losetup", "-f", "--show", str(file)],
                   what=f"attach volume {volume} of host {host} to a loop device", timeout=60,
                   hint="free loop devices (`losetup -a` lists them) or load more "
                   "(`modprobe loop max_loop=64`)")
        loop = proc.stdout.strip()
        log(f"attached volume {volume} of host {host} to {loop}")
    link = file.with_suffix(".dev")
    if not link.is_symlink() or os.readlink(link) != loop:
        temp = link.with_name(link.name + ".tmp")
        temp.unlink(missing_ok=True)
        temp.symlink_to(loop)
        temp.replace(link)
    attached = LoopVolume(host=host, volume=volume, file=file, loop=loop, link=link,
                          size_bytes=file.stat().st_size)
    _record(state_dir, attached)
    return attached


def detach_all(state_dir: Path, *, log: Log | None = None) -> list[str]:
    """Detach and delete every volume file of the environment; returns what went.

    Finds files on disk, not only in volumes.json, so a half-written record loses
    nothing. Call it after the containers that used the devices are gone.
    """
    log = log or (lambda _: None)
    root = Path(state_dir) / VOLUMES_DIR
    removed: list[str] = []
    if not root.is_dir():
        return removed
    for file in sorted(root.glob("*/*.img")):
        for loop in loops_of(file):
            run(["losetup", "-d", loop], what=f"detach {loop} ({file})", timeout=60,
                hint=f"something still uses {loop}: `losetup -l {loop}`, then "
                "`losetup -d` it yourself")
            removed.append(f"loop device {loop}")
            log(f"detached {loop} ({file.parent.name}/{file.stem})")
        file.unlink()
        removed.append(f"file {file}")
        file.with_suffix(".dev").unlink(missing_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    record = Path(state_dir) / RECORD_FILE
    if record.exists():
        record.unlink()
        removed.append(f"file {record}")
    return removed


def read_record(state_dir: Path) -> dict[str, dict[str, dict[str, object]]]:
    """volumes.json: host -> volume -> {file, loop, size_bytes, device}; {} when absent."""
    try:
        data = json.loads((Path(state_dir) / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data.get("hosts", {}) if isinstance(data, dict) else {}


def volume_statuses(spec: FleetSpec, record: Mapping[str, Mapping[str, Mapping[str, Any]]]
                    ) -> tuple[VolumeStatus, ...]:
    """The volumes of :func:`read_record`'s ``record`` as `infra status` lists them:
    ``<host>/<volume>``, its size, the host container it is given to, its file and the
    loop device it was last attached to. Hosts the environment no longer lists too."""
    rows = []
    for host in sorted(record):
        for volume in sorted(record[host]):
            entry = record[host][volume]
            size = entry.get("size_bytes")
            rows.append(VolumeStatus(
                name=f"{host}/{volume}",
                size_gb=size // GIB if isinstance(size, int) else None, host=host,
                attached_to=container_name(spec.project, spec.environment, host),
                volume=volume, provider_id=str(entry.get("file") or "") or None,
                device=str(entry.get("loop") or "") or None))
    return tuple(rows)


def _record(state_dir: Path, attached: LoopVolume) -> None:
    hosts = read_record(state_dir)
    entry = {"file": str(attached.file), "loop": attached.loop,
             "size_bytes": attached.size_bytes, "device": device_path(attached.volume)}
    if hosts.get(attached.host, {}).get(attached.volume) == entry:
        return
    hosts.setdefault(attached.host, {})[attached.volume] = entry
    write_atomic(Path(state_dir) / RECORD_FILE,
                 json.dumps({"version": 1, "hosts": hosts}, indent=2, sort_keys=True) + "\n")

