"""Images to hosts without a registry: ``docker save`` here, ``docker load`` there.

An environment with no registry (no ``project.registry``, a cloud that runs none)
still deploys: the controller builds the images, and before the hosts' pull phase
each host gets the images it runs over its SSH connection. Only the layers a host
lacks travel: Docker's loader skips a layer whose chain it already has without
reading it, so the archive leaves those out (a new release of an app whose base
is on the host sends kilobytes, not the base). Should a host's Docker refuse such
an archive, the whole one is sent instead.

Images keep their local names (``<project>-<service>:<release>``); the pull phase
then finds them present and pulls nothing.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from stagecraft import execs
from stagecraft.errors import ProviderError
from stagecraft.hosts import ssh
from stagecraft.hosts.remote import in_parallel

if TYPE_CHECKING:
    from stagecraft.hosts.fleet import Fleet
    from stagecraft.hosts.remote import RemoteHost

SAVE_TIMEOUT = 900
LOAD_TIMEOUT = 1800
#: One line per image on the host: its id and its layers' diff ids.
_INVENTORY = ("docker image ls -aq --no-trunc | sort -u | xargs -r docker image inspect "
              "--format '{{.Id}} {{json .RootFS.Layers}}'")


@dataclass(frozen=True)
class HostDelivery:
    """What one host got: images loaded, those it had, layers sent and left out."""

    host: str
    loaded: tuple[str, ...] = ()
    present: tuple[str, ...] = ()
    layers_sent: int = 0
    layers_skipped: int = 0
    bytes_sent: int = 0
    full_archive: bool = False  # the host's Docker refused the archive without its layers

    def summary(self) -> str:
        if not self.loaded:
            return f"{self.host}: had every image"
        size = f"{self.bytes_sent / 1e6:.1f} MB"
        whole = ", the whole archive" if self.full_archive else ""
        return (f"{self.host}: loaded {len(self.loaded)} image(s), {self.layers_sent} layer(s) "
                f"sent, {self.layers_skipped} already there, {size}{whole}")

    def to_dict(self) -> dict[str, object]:
        return {"host": self.host, "loaded": list(self.loaded), "present": list(self.present),
                "layers_sent": self.layers_sent, "layers_skipped": self.layers_skipped,
                "bytes_sent": self.bytes_sent, "full_archive": self.full_archive}


# --- pure parts -------------------------------------------------------------------------


def layer_chains(diff_ids: Sequence[str]) -> list[str]:
    """The chain id of each layer of an image (Docker's ``ChainID``): the first is its
    diff id, each next one ``sha256(<parent chain> + " " + <diff id>)``."""
    chains: list[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            digest = hashlib.sha256(f"{chains[-1]} {diff_id}".encode()).hexdigest()
            chains.append(f"sha256:{digest}")
    return chains


def parse_inventory(output: str) -> tuple[set[str], set[str]]:
    """(image ids, layer chain ids) of a host, from the lines of :data:`_INVENTORY`."""
    ids: set[str] = set()
    chains: set[str] = set()
    for line in output.splitlines():
        image_id, _, layers = line.strip().partition(" ")
        if not image_id.startswith("sha256:"):
            continue
        ids.add(image_id)
        try:
            diff_ids = json.loads(layers) or []
        except json.JSONDecodeError:
            continue
        chains.update(layer_chains([d for d in diff_ids if isinstance(d, str)]))
    return ids, chains


def layers_to_leave_out(archive: tarfile.TarFile, present: set[str]) -> tuple[set[str], int]:
    """Members of a ``docker save`` archive whose layer the host has already (by chain id),
    and how many layers stay. A layer file that any image still needs is kept."""
    manifest = json.load(_member(archive, "manifest.json"))
    needed: set[str] = set()
    skippable: set[str] = set()
    for entry in manifest:
        config = json.load(_member(archive, entry["Config"]))
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        for path, chain in zip(entry["Layers"], layer_chains(diff_ids)):
            (skippable if chain in present else needed).add(path)
    return skippable - needed, len(needed)


def _member(archive: tarfile.TarFile, name: str) -> IO[bytes]:
    found = archive.extractfile(name)
    if found is None:
        raise ProviderError(f"`docker save` wrote an archive without {name}",
                            hint="check the Docker Engine on this machine (`docker info`)")
    return found


def write_partial(source: Path, present: set[str], out: IO[bytes]) -> tuple[int, int]:
    """Copy the archive ``source`` to ``out`` without the layers in ``present``.
    Returns (layers sent, layers left out)."""
    with tarfile.open(source) as archive:
        leave_out, kept = layers_to_leave_out(archive, present)
        with tarfile.open(fileobj=out, mode="w|") as partial:
            for member in archive:
                if member.name in leave_out:
                    continue
                partial.addfile(member, archive.extractfile(member) if member.isfile() else None)
    return kept, len(leave_out)


def needs_by_host(images_by_host: Mapping[str, Iterable[str]], local: Iterable[str]
                  ) -> dict[str, list[str]]:
    """Host -> the images it runs that exist only here (built on this machine)."""
    local = set(local)
    return {host: sorted(set(refs) & local) for host, refs in images_by_host.items()
            if set(refs) & local}


# --- the controller and the hosts ----------------------------------------------------


def local_image_ids(refs: Iterable[str]) -> dict[str, str]:
    """ref -> image id of the images of ``refs`` this machine's Docker has."""
    ids: dict[str, str] = {}
    for ref in sorted(set(refs)):
        found = execs.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref],
                          check=False, timeout=60)
        if found.returncode == 0 and found.stdout.strip().startswith("sha256:"):
            ids[ref] = found.stdout.strip()
    return ids


class _Archives:
    """One ``docker save`` per set of images, shared by the hosts that need that set."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._made: dict[tuple[str, ...], Path] = {}
        self._lock = threading.Lock()

    def of(self, refs: Sequence[str]) -> Path:
        key = tuple(sorted(refs))
        with self._lock:
            if key not in self._made:
                path = self._directory / f"images-{len(self._made)}.tar"
                execs.run(["docker", "image", "save", "-o", str(path), *key],
                          timeout=SAVE_TIMEOUT,
                          hint="check that the images exist: docker image ls")
                self._made[key] = path
            return self._made[key]


def deliver(fleet: Fleet, needs: Mapping[str, Sequence[str]],
            say: Callable[[str], None] = lambda _line: None) -> dict[str, HostDelivery]:
    """Load into each host of ``needs`` the images it lacks; host -> what it got.

    Raises ProviderError naming the host when a load fails or leaves a different image.
    """
    if not needs:
        return {}
    ids = local_image_ids(ref for refs in needs.values() for ref in refs)
    missing_here = sorted({ref for refs in needs.values() for ref in refs} - set(ids))
    if missing_here:
        raise ProviderError(
            f"images to send to the hosts are not on this machine: {', '.join(missing_here)}",
            hint="build them again: deploy without --skip-build")
    ssh.make_control_dir()
    with tempfile.TemporaryDirectory(prefix="stagecraft-images-") as tmp:
        archives = _Archives(Path(tmp))

        def one(host: RemoteHost) -> HostDelivery:
            result = _deliver_to(host, needs[host.name], ids, archives, Path(tmp))
            say(f"images: {result.summary()}")
            return result

        return in_parallel(fleet.remotes(list(needs)).values(), one)


def _deliver_to(host: RemoteHost, refs: Sequence[str], ids: Mapping[str, str],
                archives: _Archives, tmp: Path) -> HostDelivery:
    inventory = host.run(_INVENTORY, timeout=120, what="list the images")
    host_ids, chains = parse_inventory(inventory.stdout)
    lacking = [ref for ref in refs if ids[ref] not in host_ids or
               _host_id(host, ref) != ids[ref]]
    present = tuple(ref for ref in refs if ref not in lacking)
    if not lacking:
        return HostDelivery(host=host.name, present=present)
    archive = archives.of(lacking)
    partial = tmp / f"{host.name}.tar"
    with partial.open("wb") as out:
        sent, skipped = write_partial(archive, chains, out)
    full = False
    try:
        _load(host, partial)
    except ProviderError:
        if not skipped:
            raise
        _load(host, archive)  # this Docker wants every layer in the archive
        full, sent, skipped = True, sent + skipped, 0
    size = (archive if full else partial).stat().st_size
    for ref in lacking:
        if _host_id(host, ref) != ids[ref]:
            raise ProviderError(
                f"host {host.name}: after loading {ref} it has another image than this machine",
                hint=f"run the deploy again; if it persists, remove it on the host: "
                f"stagecraft ssh {host.name} -- docker image rm {ref}")
    return HostDelivery(host=host.name, loaded=tuple(lacking), present=present,
                        layers_sent=sent, layers_skipped=skipped, bytes_sent=size,
                        full_archive=full)


def _host_id(host: RemoteHost, ref: str) -> str | None:
    found = host.run(f"docker image inspect --format '{{{{.Id}}}}' {shlex.quote(ref)}",
                     check=False, timeout=60)
    value = found.stdout.strip()
    return value if found.returncode == 0 and value.startswith("sha256:") else None


def _load(host: RemoteHost, archive: Path) -> None:
    """``docker load`` on the host, fed ``archive`` through the SSH connection."""
    with archive.open("rb") as stream:
        try:
            done = subprocess.run(host.ssh_argv("docker load --quiet"), stdin=stream,
                                  capture_output=True, timeout=LOAD_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise ProviderError(
                f"host {host.name}: loading images took over {LOAD_TIMEOUT} s",
                hint="check the host's disk and network; run the deploy again") from None
    if done.returncode != 0:
        error = done.stderr.decode(errors="replace").strip().splitlines()
        raise ProviderError(
            f"host {host.name}: docker load failed: {error[-1] if error else done.returncode}",
            hint=f"check Docker on {host.name} (stagecraft doctor --env ...) and its free disk")


__all__ = ["HostDelivery", "deliver", "layer_chains", "local_image_ids", "needs_by_host",
           "parse_inventory", "write_partial"]
