"""deploy and rollback: what each command does, on top of the phase engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from stagecraft.deploy.engine import (
    DEFAULT_TRAEFIK_IMAGE,
    DeployOptions,
    ReleaseOutcome,
    load_hooks,
    observe,
    traefik_current,
    Say,
    Target,
    _quiet,
    config_hash,
    desired_states,
    execute,
    keep_same_images,
    plan_for,
    predicted_images,
    render_release,
    tls_settings,
)
from stagecraft.deploy.request import RegistryLogin
from stagecraft.errors import PlanError
from stagecraft.ledger.model import Release, ReleaseAction
from stagecraft.ledger.recorder import ReleaseRecorder
from stagecraft.ledger.release_id import new_release_id
from stagecraft.plan import Plan
from stagecraft.providers.secrets import resolve_secrets


def registry_for(target: Target) -> tuple[Any, RegistryLogin | None]:
    """The build's registry target and the login hosts use (None: no registry needed)."""
    from stagecraft.deploy.build import registry_target

    needs_registry = any(s.build is not None for s in target.env.services.values())
    has_config = target.env.project.registry is not None
    if not needs_registry and not has_config and target.env.providers.cloud.kind != "local":
        return None, None
    registry = registry_target(target.env, target.project_dir)
    login = RegistryLogin(server=registry.pull_server, username=registry.username,
                          password=registry.password)
    return registry, login


def traefik_image_for(target: Target) -> str:
    """The Traefik image hosts run: the local cloud publishes its own to its registry."""
    publish = getattr(target.cloud, "publish_traefik_image", None)
    if publish is not None:
        return publish(target.spec, target.state_dir)
    return DEFAULT_TRAEFIK_IMAGE


def plan_deploy(target: Target, *, force: bool = False) -> tuple[Plan, str]:
    """`stagecraft plan`: what a deploy would do now, without building or changing anything."""
    release_id = new_release_id(target.project_dir)
    images = predicted_images(target, release_id, registry_for_plan(target))
    deployed = target.ledger.deployed_state(target.env.name)
    images = keep_same_images(images, deployed)
    secrets = resolve_secrets(target.env, target.project_dir)
    renders = render_release(target, release_id, images, secrets,
                             traefik_image_for(target), tls_settings(target))
    return plan_for(target, renders, release_id, force=force), release_id


def registry_for_plan(target: Target) -> str | None:
    """The pull server a plan names images with, without contacting any registry."""
    project_registry = target.env.project.registry
    access = getattr(target.cloud, "registry_access", None)
    if project_registry is not None and target.env.providers.cloud.kind != "local":
        return project_registry.server
    if access is not None:
        try:
            return access(target.spec, target.state_dir).pull_server
        except Exception:  # noqa: BLE001 - a plan still works before the fleet exists
            return None
    return None


def deploy(target: Target, options: DeployOptions, *, services: list[str] | None = None,
           say: Say = _quiet, on_event: Callable[[Any], None] | None = None,
           on_line: Callable[[str, str], None] | None = None) -> ReleaseOutcome:
    """Build (unless skipped), render, plan and run a release of the environment."""
    from stagecraft.deploy.build import build_images

    env = target.env
    secrets = resolve_secrets(env, target.project_dir)
    registry, login = registry_for(target)
    deployed = target.ledger.deployed_state(env.name)
    release_id = new_release_id(target.project_dir)
    # A hook that cannot run is a config error: found before anything is recorded.
    hooks = load_hooks(target, action="deploy", release_id=release_id, options=options)
    # Recorded next, so a failure or a kill in the build still leaves its record.
    recorder = ReleaseRecorder.start(
        target.ledger, env.name, target.project_dir, action=ReleaseAction.DEPLOY,
        release_id=release_id, config_hash=config_hash(env), message=options.message,
        dry_run=options.check, say=say)
    if recorder.release_id is not None and recorder.release_id != release_id:
        release_id = recorder.release_id  # another run took this second
        hooks = load_hooks(target, action="deploy", release_id=release_id, options=options)
    try:
        if options.skip_build:
            images = _previous_images(target, release_id, registry)
        elif options.check:  # --dry-run builds nothing: the images a build would give
            images = predicted_images(target, release_id,
                                      getattr(registry, "pull_server", None))
        else:
            recorder.phase_started("build")
            hooks.run("pre-build", on_line=say)
            say(f"build: images of {release_id}")
            built = build_images(env, target.project_dir, release_id, registry,
                                 services=services, push=True, on_line=on_line)
            images = _images_from_build(env, built)
            recorder.phase_finished("build")
        images = keep_same_images(images, deployed)
        traefik_image = traefik_image_for(target)
        renders = render_release(target, release_id, images, secrets, traefik_image,
                                 tls_settings(target))
        observed = observe(target)
        for host, reasons in observed.drift.items():
            if host in deployed:
                say(f"{host} differs from the last release ({'; '.join(reasons)}): "
                    "planned as a new host")
        plan = plan_for(target, renders, release_id, force=options.force,
                        unknown=observed.drift)
    except BaseException as exc:
        recorder.fail(exc, phase="build")
        raise
    if not plan.has_changes and not observed.lock_held:
        # Every host runs what this release would give it: nothing to lock or run,
        # and no release to keep in the history.
        recorder.discard()
        return ReleaseOutcome(release=None, plan=plan, drift=observed.drift)
    return execute(target, action="deploy", release_id=release_id, renders=renders, plan=plan,
                   images=images, registry=login, traefik_image=traefik_image,
                   options=options, say=say, on_event=on_event, hooks=hooks,
                   traefik_current=traefik_current(plan, observed), recorder=recorder)


def _images_from_build(env, built: dict[str, Any]) -> dict[str, str]:
    images = {name: image.pull_ref for name, image in built.items()}
    for name, service in env.services.items():
        if service.image is not None:
            images.setdefault(name, service.image)
    for name, service in env.services.items():
        if service.from_ is not None and name not in images:
            images[name] = images[service.from_]
    return images


def _previous_images(target: Target, release_id: str, registry: Any) -> dict[str, str]:
    """--skip-build: the images of the last successful release (config images as given)."""
    last = target.ledger.last_successful(target.env.name)
    images = predicted_images(target, release_id, getattr(registry, "pull_server", None))
    missing = []
    for name, service in target.env.services.items():
        if service.build is not None:
            if last is not None and name in last.images:
                images[name] = last.images[name].ref
            else:
                missing.append(name)
    if missing:
        raise PlanError(
            f"--skip-build: no earlier release has an image for {', '.join(missing)}",
            hint="deploy once without --skip-build")
    for name, service in target.env.services.items():
        if service.from_ is not None:
            images[name] = images[service.from_]
    return images


def rollback_target(target: Target, to: str | None) -> Release:
    """The release a rollback brings back: ``to``, or the one before the current one."""
    ledger = target.ledger
    env = target.env.name
    if to is not None:
        release = ledger.get(to, env)
        if release.result != "succeeded":
            raise PlanError(f"release {to} did not succeed ({release.result}): it cannot be "
                            "brought back", hint="pick a succeeded release: stagecraft releases list")
        return release
    current = ledger.last_successful(env)
    if current is None:
        raise PlanError(f"environment '{env}' has no successful release to roll back from",
                        hint="deploy first")
    previous = ledger.previous_successful(env, current.id)
    if previous is None:
        raise PlanError(f"no successful release of '{env}' before {current.id}",
                        hint="see stagecraft releases list")
    return previous


def rollback(target: Target, options: DeployOptions, *, to: str | None = None,
             say: Say = _quiet, on_event: Callable[[Any], None] | None = None) -> ReleaseOutcome:
    """Bring back an earlier release whose files are still on the hosts; no migrations."""
    env = target.env
    wanted = rollback_target(target, to)
    # The release brought back is itself a rollback record: roll to what it ran.
    dir_id = wanted.rollback_of if wanted.action == "rollback" and wanted.rollback_of else wanted.id
    images = {name: image.ref for name, image in wanted.images.items()}
    secrets = resolve_secrets(env, target.project_dir)
    _registry, login = registry_for(target)
    traefik_image = traefik_image_for(target)
    renders = render_release(target, dir_id, images, secrets, traefik_image, tls_settings(target))
    # The hosts run the files of the old release; its recorded state is the desired one.
    renders = {name: replace(render, state=wanted.hosts[name].host_state())
               if name in wanted.hosts else render for name, render in renders.items()}
    observed = observe(target)
    plan = plan_for(target, renders, dir_id, action="rollback", force=options.force,
                    unknown=observed.drift)
    say(f"rollback of {env.name} to {dir_id}")
    return execute(target, action="rollback", release_id=dir_id, renders=renders, plan=plan,
                   images=images, registry=login, traefik_image=traefik_image,
                   options=options, say=say, on_event=on_event, rollback_of=dir_id,
                   traefik_current=traefik_current(plan, observed))


__all__ = ["deploy", "rollback", "plan_deploy", "rollback_target", "desired_states"]
