"""The local cloud's host images: Debian 13 (trixie) with systemd, sshd and python3.

:func:`ensure_host_image` returns ``stagecraft/host:<hash12>``, building it at most
once per machine. Its ``docker`` flavour, ``stagecraft/host-docker:<hash12>``, is
built FROM it with the packages the bootstrap role installs from Debian (Docker
Engine, Compose v2, timesyncd, unattended-upgrades) already in place, the way
clouds offer a "Docker" image beside the bare one: bootstrap then only configures. The hash covers every build input (the Dockerfile, packages.txt,
rootfs/ and the apt mirrors baked into the image), so editing any of them makes a
new tag, and an unchanged recipe is never rebuilt. ``stagecraft/host:latest`` is
moved to the newest build, for Molecule scenarios and people.

No registry can be reached on every machine, so the base is chosen in this order:
``debian:trixie`` if the engine already has it, else if it can be pulled, else a
root filesystem made with ``debootstrap`` and imported with ``docker import``
(tagged ``stagecraft/host-base:<hash12>`` and reused).

Builds hold an exclusive file lock, so two processes (two test sessions, the CLI
and Molecule) never build the same image at once; the second one waits and then
finds the image built.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from stagecraft import execs, steps
from stagecraft.errors import CommandFailed, EnvironmentMissing
from stagecraft.fsutil import exclusive_lock
from stagecraft.providers.cloud.local import dockercli

IMAGE_REPO = "stagecraft/host"
DOCKER_IMAGE_REPO = "stagecraft/host-docker"
#: The host images, by the name `providers.cloud.image` gives them.
FLAVOURS = ("debian-13", "docker")
BASE_REPO = "stagecraft/host-base"
LATEST_TAG = f"{IMAGE_REPO}:latest"
SUITE = "trixie"
UPSTREAM_BASE = f"debian:{SUITE}"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"

#: The build context: this package directory (see .dockerignore).
IMAGE_DIR = Path(__file__).resolve().parent
#: The docker flavour's Dockerfile, sent without a context (not part of IMAGE_DIR's recipe).
DOCKER_DOCKERFILE = "docker.Dockerfile"

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def cache_dir() -> Path:
    """Where build locks and logs live: shared by every user of this machine's engine."""
    override = os.environ.get("STAGECRAFT_IMAGE_CACHE")
    path = Path(override) if override else Path("/var/tmp/stagecraft")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Mirrors:
    """The apt mirrors baked into the image and used by debootstrap."""

    debian: str
    security: str


def read_mirrors(sources_dir: Path = Path("/etc/apt")) -> Mirrors:
    """The Debian mirrors this machine uses (so the hosts use one that is reachable).

    ``STAGECRAFT_DEBIAN_MIRROR`` / ``STAGECRAFT_DEBIAN_SECURITY_MIRROR`` win; then
    the deb822 files in sources.list.d, then sources.list, then deb.debian.org.
    """
    debian = os.environ.get("STAGECRAFT_DEBIAN_MIRROR")
    security = os.environ.get("STAGECRAFT_DEBIAN_SECURITY_MIRROR")
    found: list[tuple[str, str]] = []  # (uri, suite)
    for path in sorted((sources_dir / "sources.list.d").glob("*.sources")):
        found.extend(_parse_deb822(path.read_text(errors="replace")))
    one_line_files = sorted((sources_dir / "sources.list.d").glob("*.list"))
    for path in [sources_dir / "sources.list", *one_line_files]:
        if path.is_file():
            found.extend(_parse_one_line(path.read_text(errors="replace")))
    for uri, suite in found:
        if "debian" not in uri:
            continue  # a third-party repository (nodesource, docker, ...)
        if suite.endswith("-security"):
            security = security or uri
        elif "/debian" in uri:
            debian = debian or uri
    return Mirrors(
        debian=(debian or DEFAULT_MIRROR).rstrip("/"),
        security=(security or DEFAULT_SECURITY_MIRROR).rstrip("/"),
    )


def _parse_deb822(text: str) -> Iterator[tuple[str, str]]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                yield uri, suite


def _parse_one_line(text: str) -> Iterator[tuple[str, str]]:
    for line in text.splitlines():
        # "deb [signed-by=...] URI SUITE COMPONENTS..." with options and comments removed.
        words = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            yield words[1], words[2]


def packages() -> list[str]:
    """The image's packages, from packages.txt (shared by both build paths)."""
    text = (IMAGE_DIR / "packages.txt").read_text()
    return [w for line in text.splitlines() for w in line.split("#", 1)[0].split()]


def _context_files() -> list[Path]:
    """Every file docker build sends, in a stable order (mirrors .dockerignore)."""
    files = []
    for path in sorted(IMAGE_DIR.rglob("*")):
        rel = path.relative_to(IMAGE_DIR)
        if (path.is_dir() or path.suffix == ".py" or "__pycache__" in rel.parts
                or rel.as_posix() == DOCKER_DOCKERFILE):
            continue
        files.append(path)
    return files


def build_args(mirrors: Mirrors) -> dict[str, str]:
    """The --build-arg values (except BASE_IMAGE, which does not change the recipe)."""
    return {
        "DEBIAN_MIRROR": mirrors.debian,
        "SECURITY_MIRROR": mirrors.security,
        "PACKAGES": " ".join(packages()),
    }


def recipe_hash(mirrors: Mirrors) -> str:
    """sha256 over the build context and build args: the image's identity, 12 hex digits."""
    digest = hashlib.sha256()
    for path in _context_files():
        rel = path.relative_to(IMAGE_DIR).as_posix()
        # The mode matters too: rootfs/ files keep theirs inside the image.
        digest.update(f"{rel}\0{path.stat().st_mode & 0o777:o}\0".encode())
        digest.update(path.read_bytes())
        digest.update(b"\0")
    digest.update(json.dumps(build_args(mirrors), sort_keys=True).encode())
    return digest.hexdigest()[:12]


def base_recipe_hash(mirrors: Mirrors) -> str:
    """Identity of the debootstrap base: suite, variant, packages and mirror."""
    recipe = {"suite": SUITE, "variant": "minbase", "packages": packages(),
              "mirror": mirrors.debian}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def host_image_tag(mirrors: Mirrors | None = None) -> str:
    """The tag the current recipe builds, whether or not it is built yet."""
    return f"{IMAGE_REPO}:{recipe_hash(mirrors or read_mirrors())}"


def _build_lock(log: Log) -> contextlib.AbstractContextManager[None]:
    path = cache_dir() / "host-image.lock"
    return exclusive_lock(path, f"waiting for another process that is building the host image ({path})", log)


def docker_flavour_packages() -> list[str]:
    """What the bootstrap role installs from Debian with its defaults and
    ``bootstrap_docker_source: distro``: the docker flavour has all of it."""
    import yaml

    from stagecraft.paths import roles_dir

    defaults = yaml.safe_load((roles_dir() / "bootstrap" / "defaults" / "main.yml").read_text())
    return [*defaults["bootstrap_base_packages"], "systemd-timesyncd", "unattended-upgrades",
            *defaults["bootstrap_docker_distro_packages"]]


def docker_image_tag(mirrors: Mirrors | None = None) -> str:
    """The docker flavour's tag: the base image, its Dockerfile and its packages."""
    base = host_image_tag(mirrors)
    recipe = {"base": base, "packages": docker_flavour_packages(),
              "dockerfile": (IMAGE_DIR / DOCKER_DOCKERFILE).read_text()}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    return f"{DOCKER_IMAGE_REPO}:{digest}"


def ensure_host_image(log: Log | None = None, flavour: str = "debian-13") -> str:
    """Return the tag of the host image of ``flavour`` (one of FLAVOURS), building it
    (and what it is built FROM) if needed.

    Raises EnvironmentMissing when Docker (or, without a debian:trixie image,
    debootstrap or root) is missing, CommandFailed when a build step fails.
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown host image flavour {flavour!r}")
    log = log or _quiet
    mirrors = read_mirrors()
    tag = host_image_tag(mirrors)
    if not dockercli.exists("image", tag):
        with _build_lock(log):
            # Another process may have built it while we waited for the lock.
            if not dockercli.exists("image", tag):
                base = _ensure_base(mirrors, log)
                with steps.step(log, f"building the host image {tag} FROM {base}"):
                    _docker_build(tag, base, mirrors)
    _tag_latest(tag)
    if flavour == "debian-13":
        return tag
    docker_tag = docker_image_tag(mirrors)
    if not dockercli.exists("image", docker_tag):
        with _build_lock(log):
            if not dockercli.exists("image", docker_tag):
                with steps.step(log, f"building the host image {docker_tag} FROM {tag} "
                                "(Docker preinstalled, about 1 min)"):
                    _docker_build_flavour(docker_tag, tag, mirrors)
    return docker_tag


def _tag_latest(tag: str) -> None:
    dockercli.docker("tag", tag, LATEST_TAG, what=f"tag {tag} as {LATEST_TAG}", timeout=30)


def _ensure_base(mirrors: Mirrors, log: Log) -> str:
    if dockercli.exists("image", UPSTREAM_BASE):
        return UPSTREAM_BASE
    if _try_pull(UPSTREAM_BASE, log):
        return UPSTREAM_BASE
    base = f"{BASE_REPO}:{base_recipe_hash(mirrors)}"
    if dockercli.exists("image", base):
        return base
    _debootstrap_base(base, mirrors, log)
    return base


def _try_pull(image: str, log: Log) -> bool:
    if os.environ.get("STAGECRAFT_IMAGE_NO_PULL"):
        return False
    log(f"trying to pull {image}")
    proc = dockercli.docker("pull", image, what=f"pull {image}", check=False, timeout=300)
    if proc.returncode != 0:
        log(f"cannot pull {image} ({dockercli.tail(proc.stderr, 160)}); using debootstrap")
        return False
    return True


def _debootstrap_base(base: str, mirrors: Mirrors, log: Log) -> None:
    """debootstrap a minbase trixie with our packages and ``docker import`` it as ``base``."""
    debootstrap_image(base, packages(), mirrors, log, what="the host image",
                      logname="debootstrap.log")


def debootstrap_image(tag: str, include: list[str], mirrors: Mirrors, log: Log, *, what: str,
                      logname: str, prepare: Callable[[Path], None] | None = None) -> None:
    """debootstrap a minbase trixie with ``include`` and ``docker import`` it as ``tag``.

    ``prepare`` may change the root filesystem before it is imported (trim it, add
    files). ``what`` names the image in errors ("the runtime image"); the log goes
    to ``cache_dir()/logname``. Raises EnvironmentMissing without debootstrap or
    root, CommandFailed when a step fails.
    """
    if shutil.which("debootstrap") is None:
        raise EnvironmentMissing(
            f"cannot build {what}: no {UPSTREAM_BASE} image and debootstrap "
            "is not installed",
            hint="apt-get install debootstrap, or load a debian:trixie image "
            "(docker load -i debian-trixie.tar)",
        )
    if os.geteuid() != 0:
        raise EnvironmentMissing(
            f"cannot build {what}: debootstrap needs root",
            hint="run `sudo python -m stagecraft.providers.cloud.local.host_image` once, "
            "or load a debian:trixie image",
        )
    workdir = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache_dir()))
    rootfs = workdir / "rootfs"
    logfile = cache_dir() / logname
    argv = [
        "debootstrap", "--variant=minbase", f"--include={','.join(include)}",
        SUITE, str(rootfs), mirrors.debian,
    ]
    try:
        with steps.step(log, f"making a {SUITE} root filesystem for {what} with debootstrap "
                        f"(about 75 s; log: {logfile})"):
            try:
                run_logged(argv, logfile, what=f"build the base of {what} with debootstrap",
                           hint=f"read {logfile}; check that {mirrors.debian} is reachable "
                           "or set STAGECRAFT_DEBIAN_MIRROR")
            except CommandFailed:
                # debootstrap's own detailed log lives in the rootfs we are about to delete.
                detail = rootfs / "debootstrap" / "debootstrap.log"
                if detail.is_file():
                    with open(logfile, "a") as out:
                        out.write("\n--- debootstrap/debootstrap.log ---\n")
                        out.write(detail.read_text(errors="replace"))
                raise
            if prepare is not None:
                prepare(rootfs)
        with steps.step(log, f"importing the root filesystem as {tag}"):
            _import_rootfs(rootfs, tag)
    finally:
        _unmount_below(rootfs)
        shutil.rmtree(workdir, ignore_errors=True)


def run_logged(argv: list[str], logfile: Path, *, what: str, hint: str,
                env: dict[str, str] | None = None, timeout: float = 1800) -> None:
    """Run a long build step with its output going to ``logfile``; CommandFailed with the
    last line in the message and the tail attached when it fails or runs too long."""
    with open(logfile, "w") as out:
        def write(_stream: str, line: str) -> None:
            out.write(line + "\n")
            out.flush()
            steps.note(line)

        try:
            proc = execs.run(argv, env=env, timeout=timeout, on_line=write, check=False)
        except CommandFailed as exc:  # a timeout
            raise CommandFailed(f"cannot {what}: {exc.message}", argv=argv, returncode=None,
                                output_tail=exc.output_tail, hint=hint) from exc
    if proc.returncode != 0:
        output = logfile.read_text(errors="replace").strip()
        last = output.splitlines()[-1] if output else "no output"
        raise CommandFailed(
            f"cannot {what}: `{execs.render_argv(argv)}` exited {proc.returncode}: {last}",
            argv=argv, returncode=proc.returncode, output_tail=dockercli.tail(output), hint=hint,
        )


def _import_rootfs(rootfs: Path, base: str) -> None:
    # `tar | docker import` needs a pipe between two processes, which execs.run does
    # not offer; buffering the ~300 MB stream in memory instead would be wasteful.
    docker = dockercli.docker_binary()
    tar = subprocess.Popen(
        ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert tar.stdout is not None
    imported = subprocess.run(
        [docker, "import", "--change", 'CMD ["/bin/bash"]', "-", base],
        stdin=tar.stdout,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tar.stdout.close()
    tar_err = tar.stderr.read().decode(errors="replace") if tar.stderr else ""
    tar_rc = tar.wait()
    if tar_rc != 0 or imported.returncode != 0:
        raise CommandFailed(
            f"cannot import the root filesystem as {base}: tar exited {tar_rc}, "
            f"docker import exited {imported.returncode}",
            argv=["docker", "import", "-", base],
            returncode=imported.returncode or tar_rc,
            output_tail=dockercli.tail(imported.stderr + tar_err),
            hint="check free disk space and `docker info`, then run the build again",
        )


def _unmount_below(root: Path) -> None:
    """Unmount anything a failed debootstrap left mounted, before rmtree walks into it."""
    prefix = str(root.resolve())
    try:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return
    for mount in sorted((m for m in mounts if m == prefix or m.startswith(prefix + "/")),
                        key=len, reverse=True):
        execs.run(["umount", "-l", mount], check=False, timeout=60)


def _docker_build(tag: str, base: str, mirrors: Mirrors) -> None:
    args = {**build_args(mirrors), "BASE_IMAGE": base}
    argv = [dockercli.docker_binary(), "build", "--pull=false", "-t", tag,
            "--label", f"org.stagecraft.recipe={tag.rsplit(':', 1)[1]}",
            "--label", f"org.stagecraft.base={base}"]
    for key, value in args.items():
        argv += ["--build-arg", f"{key}={value}"]
    argv.append(str(IMAGE_DIR))
    # The classic builder: this engine (20.10) has no buildx plugin, and it needs
    # nothing beyond the engine itself.
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    logfile = cache_dir() / "host-image-build.log"
    run_logged(argv, logfile, what=f"build the host image {tag}", env=env,
                hint=f"read {logfile}; check that the Debian mirror {mirrors.debian} is "
                "reachable from containers")


def _docker_build_flavour(tag: str, base: str, mirrors: Mirrors) -> None:
    """Build the docker flavour FROM ``base``: its Dockerfile comes on stdin, no context."""
    argv = [dockercli.docker_binary(), "build", "--pull=false", "-t", tag,
            "--label", f"org.stagecraft.recipe={tag.rsplit(':', 1)[1]}",
            "--label", f"org.stagecraft.base={base}",
            "--build-arg", f"BASE_IMAGE={base}",
            "--build-arg", f"PACKAGES={' '.join(docker_flavour_packages())}",
            "-f", str(IMAGE_DIR / DOCKER_DOCKERFILE), str(_empty_context())]
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    logfile = cache_dir() / "host-image-docker-build.log"
    run_logged(argv, logfile, what=f"build the host image {tag}", env=env,
                hint=f"read {logfile}; check that the Debian mirror {mirrors.debian} is "
                "reachable from containers")


def _empty_context() -> Path:
    path = cache_dir() / "empty-build-context"
    path.mkdir(parents=True, exist_ok=True)
    return path
