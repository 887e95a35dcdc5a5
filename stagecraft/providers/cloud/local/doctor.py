"""What the local cloud needs on the controller, for `stagecraft doctor`.

Its hosts and service containers come from images built here (no image can be
pulled): the host image from a debootstrap'd Debian (or a debian:trixie image when
there is one), the runtime image under the registry, Traefik and PostgreSQL images.
The private mesh's programs are built here too, with Go: tailscale and tailscaled
(copied onto hosts) and headscale (in the Headscale image).
"""

from __future__ import annotations

import os
import shutil

from stagecraft.doctor.model import Check, missing, ok, todo
from stagecraft.providers.cloud.local import dockercli, inotify, mesh_binaries
from stagecraft.providers.cloud.local.host_image import (
    UPSTREAM_BASE,
    docker_image_tag,
    ensure_host_image,
    host_image_tag,
)
from stagecraft.providers.cloud.local.service_images import (
    ensure_headscale_image,
    ensure_postgres_image,
    ensure_registry_image,
    ensure_traefik_image,
    headscale_image_tag,
    runtime_image_tag,
)
from stagecraft.steps import Log, format_seconds

SCOPE = "controller"


def controller_checks() -> list[Check]:
    """debootstrap (or a debian:trixie image), whether the images are built yet, and the
    mesh binaries (built, or Go to build them)."""
    go, no_go = mesh_binaries.go_status() if mesh_binaries.cached_binaries() is None else (
        None, None)
    binaries = _tailscale_check(no_go, go)
    if not dockercli.engine_answers():
        # The engine check says what to do; image checks would only repeat it.
        return [binaries]
    host_tag = host_image_tag()
    docker_host_tag = docker_image_tag()
    runtime_tag = runtime_image_tag()
    built = {tag: dockercli.exists("image", tag)
             for tag in (host_tag, docker_host_tag, runtime_tag)}
    checks = [_base_check(all(built.values()))]
    fix = ("the first `stagecraft infra up` builds it (about 2 min), or build it now: "
           "`stagecraft doctor --fix`")
    for label, tag in (("host image", host_tag), ("host image with Docker", docker_host_tag),
                       ("runtime image", runtime_tag)):
        if built[tag]:
            checks.append(ok(SCOPE, f"local cloud: {label}", f"{tag} built"))
        else:
            checks.append(todo(SCOPE, f"local cloud: {label}", f"{tag} not built yet", fix))
    checks.append(binaries)
    checks.append(_headscale_image_check(no_go))
    checks.append(inotify_check())
    return checks


def inotify_check() -> Check:
    """Whether the kernel lets the fleet hosts' systemd and Traefik watch files."""
    name = "local cloud: inotify instances"
    limit = inotify.read_limit("max_user_instances")
    if limit is None:
        return ok(SCOPE, name, "the kernel sets no limit stagecraft can read")
    in_use = inotify.instances_in_use()
    room = max(0, (limit - (in_use or 0)) // inotify.PER_HOST)
    detail = (f"fs.inotify.max_user_instances={limit}, "
              f"{in_use if in_use is not None else 'an unknown number'} in use: room for "
              f"about {room} more fleet hosts")
    if limit >= inotify.WANTED["max_user_instances"]:
        return ok(SCOPE, name, detail)
    return todo(SCOPE, name, detail, inotify.fix_hint())


_BUILD_FIX = ("`stagecraft doctor --fix` builds {what} with Go (about {minutes} min once; "
              "`make doctor` runs it)")


def _tailscale_check(no_go: Exception | None, go: mesh_binaries.GoToolchain | None) -> Check:
    """tailscale and tailscaled: built (with what, how long it took), or who builds them."""
    name = "local cloud: tailscale binaries"
    programs = mesh_binaries.TAILSCALE
    record = mesh_binaries.build_record(programs)
    if record is not None:
        took = format_seconds(float(record.get("seconds") or 0))
        return ok(SCOPE, name, f"tailscale {programs.version} built with "
                  f"{record.get('go', 'go')} in {took} ({mesh_binaries.program_dir(programs)})")
    if no_go is not None:
        return _no_go(name, no_go)
    found = f" ({go.version} at {go.path} will build them)" if go is not None else ""
    return todo(SCOPE, name, f"tailscale {programs.version} not built yet{found}",
                _BUILD_FIX.format(what="tailscale and tailscaled", minutes=5))


def _headscale_image_check(no_go: Exception | None) -> Check:
    """The Headscale image: built, or buildable (Go, or the headscale binary built)."""
    name = "local cloud: headscale image"
    tag = headscale_image_tag()
    if dockercli.exists("image", tag):
        return ok(SCOPE, name, f"{tag} built (Headscale {mesh_binaries.HEADSCALE_VERSION})")
    if no_go is not None and mesh_binaries.cached(mesh_binaries.HEADSCALE) is None:
        return _no_go(name, no_go)
    return todo(SCOPE, name, f"{tag} not built yet",
                _BUILD_FIX.format(what="headscale and its image", minutes=3))


def _no_go(name: str, error: Exception) -> Check:
    message = getattr(error, "message", str(error))
    return missing(SCOPE, name, message, getattr(error, "hint", None) or "install Go")


def _base_check(images_built: bool) -> Check:
    name = "local cloud: debootstrap or debian:trixie"
    if dockercli.exists("image", UPSTREAM_BASE):
        return ok(SCOPE, name, f"image {UPSTREAM_BASE} is there")
    path = shutil.which("debootstrap")
    if path is not None and os.geteuid() == 0:
        return ok(SCOPE, name, path)
    if images_built:
        return ok(SCOPE, name, "not needed: the images are built")
    if path is not None:
        return missing(SCOPE, name, "debootstrap needs root, and this is not root",
                       "run `sudo stagecraft doctor --fix` once to build the images")
    return missing(SCOPE, name, f"debootstrap is not installed and there is no {UPSTREAM_BASE} "
                   "image to build the local cloud's host image from",
                   "apt-get install debootstrap (`make setup` in the stagecraft checkout "
                   f"does it), or `docker load` a {UPSTREAM_BASE} image")


def prepare_controller(log: Log) -> list[str]:
    """Build every image the local cloud runs and the mesh binaries (each only when
    missing); the images' tags, then the binaries' directory."""
    made = [ensure_host_image(log), ensure_host_image(log, flavour="docker"),
            ensure_registry_image(log), ensure_traefik_image(log),
            ensure_postgres_image(log)]
    binaries = mesh_binaries.ensure_mesh_binaries(log)
    made.append(ensure_headscale_image(log))
    made.append(f"tailscale {mesh_binaries.TAILSCALE_VERSION} in {binaries.tailscale.parent}")
    try:
        made += inotify.raise_limits()
    except OSError as exc:
        log(f"could not raise the inotify limits ({exc}): {inotify.fix_hint()}")
    return made
