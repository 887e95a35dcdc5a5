"""What the local cloud needs on the controller, for `stagecraft doctor`.

Its hosts and service containers come from images built here (no image can be
pulled): the host image from a debootstrap'd Debian (or a debian:trixie image when
there is one), the runtime image under the registry, Traefik and PostgreSQL images.
"""

from __future__ import annotations

import os
import shutil

from stagecraft.doctor.model import Check, missing, ok, todo
from stagecraft.providers.cloud.local import dockercli
from stagecraft.providers.cloud.local.host_image import (
    UPSTREAM_BASE,
    ensure_host_image,
    host_image_tag,
)
from stagecraft.providers.cloud.local.service_images import (
    ensure_postgres_image,
    ensure_registry_image,
    ensure_traefik_image,
    runtime_image_tag,
)
from stagecraft.steps import Log

SCOPE = "controller"


def controller_checks() -> list[Check]:
    """debootstrap (or a debian:trixie image) and whether the images are built yet."""
    if not dockercli.engine_answers():
        return []  # the engine check says what to do; image checks would only repeat it
    host_tag = host_image_tag()
    runtime_tag = runtime_image_tag()
    built = {tag: dockercli.exists("image", tag) for tag in (host_tag, runtime_tag)}
    checks = [_base_check(all(built.values()))]
    fix = ("the first `stagecraft infra up` builds it (about 2 min), or build it now: "
           "`stagecraft doctor --fix`")
    for label, tag in (("host image", host_tag), ("runtime image", runtime_tag)):
        if built[tag]:
            checks.append(ok(SCOPE, f"local cloud: {label}", f"{tag} built"))
        else:
            checks.append(todo(SCOPE, f"local cloud: {label}", f"{tag} not built yet", fix))
    return checks


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
    """Build every image the local cloud runs (each only when missing); their tags."""
    return [ensure_host_image(log), ensure_registry_image(log), ensure_traefik_image(log),
            ensure_postgres_image(log)]
