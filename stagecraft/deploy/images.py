"""Which image each service of a release runs: built now, predicted for a plan, kept
from the last release (--skip-build), or left as deployed when a rebuild gave the very
same image. The one place image references are resolved."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from stagecraft.config.schema import ResolvedEnvironment
from stagecraft.errors import PlanError
from stagecraft.ledger.release_id import git_source
from stagecraft.render.state import HostState

if TYPE_CHECKING:
    from stagecraft.hosts.fleet import Fleet
    from stagecraft.providers.backend import BuiltImage


def digest_of(ref: str) -> str | None:
    """The ``sha256:...`` digest of an image reference pinned by digest, else None."""
    return ref.rpartition("@")[2] if "@sha256:" in ref else None


def keep_same_images(images: Mapping[str, str], deployed: Mapping[str, HostState], *,
                     same_ids: Callable[[Iterable[str]], Mapping[str, str]] | None = None
                     ) -> dict[str, str]:
    """Where a new build produced the very image a host already runs, keep the
    deployed reference: a tag that differs only by release id is no change.

    Pushed images compare by digest. ``same_ids`` (ref -> local image id, for images
    that never reach a registry) compares them by image id instead."""
    running: dict[str, str] = {}
    for state in deployed.values():
        for name, service in state.services.items():
            running.setdefault(name, service.image)
    ids = same_ids([*images.values(), *running.values()]) if same_ids else {}
    kept = dict(images)
    for name, ref in images.items():
        old = running.get(name)
        if not old:
            continue
        if digest_of(ref) and digest_of(ref) == digest_of(old):
            kept[name] = old
        elif ids.get(ref) and ids.get(ref) == ids.get(old):
            kept[name] = old
    return kept


def predicted_images(fleet: Fleet, release_id: str, registry_server: str | None) -> dict[str, str]:
    """Images a deploy would use, without building: for `plan`. A built service whose
    source commit is the one last deployed (clean tree) is expected to stay the same."""
    env = fleet.env
    last = fleet.ledger.last_successful(env.name)
    source = git_source(fleet.project_dir)
    same_source = (last is not None and source.sha is not None and not source.dirty
                   and last.git.sha == source.sha and not last.git.dirty)
    kept = last.images if last is not None and same_source else {}
    images: dict[str, str] = {}
    for name, service in env.services.items():
        if service.image is not None:
            images[name] = service.image
        elif service.build is not None:
            if name in kept:
                images[name] = kept[name].ref
            else:
                server = registry_server or "registry"
                images[name] = f"{server}/{env.project.name}-{name}:{release_id}"
    for name, service in env.services.items():
        if service.from_ is not None:
            images[name] = images[service.from_]
    return images


def images_from_build(env: ResolvedEnvironment, built: Mapping[str, BuiltImage]) -> dict[str, str]:
    """The images of a release whose built services are ``built``: config images as
    given, ``from:`` services share the image of the service they name."""
    images = {name: image.pull_ref for name, image in built.items()}
    for name, service in env.services.items():
        if service.image is not None:
            images.setdefault(name, service.image)
    for name, service in env.services.items():
        if service.from_ is not None and name not in images:
            images[name] = images[service.from_]
    return images


def previous_images(fleet: Fleet, release_id: str, pull_server: str | None) -> dict[str, str]:
    """--skip-build: the images of the last successful release (config images as given)."""
    last = fleet.ledger.last_successful(fleet.env.name)
    images = predicted_images(fleet, release_id, pull_server)
    missing = []
    for name, service in fleet.env.services.items():
        if service.build is not None:
            if last is not None and name in last.images:
                images[name] = last.images[name].ref
            else:
                missing.append(name)
    if missing:
        raise PlanError(
            f"--skip-build: no earlier release has an image for {', '.join(missing)}",
            hint="deploy once without --skip-build")
    for name, service in fleet.env.services.items():
        if service.from_ is not None:
            images[name] = images[service.from_]
    return images
