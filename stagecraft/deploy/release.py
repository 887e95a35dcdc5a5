"""deploy and rollback: what each command does, on top of the phase engine."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from stagecraft.deploy.engine import (
    DEFAULT_TRAEFIK_IMAGE,
    DeployOptions,
    ReleaseOutcome,
    Say,
    _quiet,
    execute,
    load_hooks,
)
from stagecraft.deploy.delivery import local_image_ids
from stagecraft.deploy.images import (
    images_from_build,
    keep_same_images,
    predicted_images,
    previous_images,
)
from stagecraft.deploy.planning import (
    desired_states,
    observe,
    plan_for,
    render_release,
    traefik_current,
)
from stagecraft.deploy.request import RegistryLogin
from stagecraft.errors import PlanError, StagecraftError
from stagecraft.hosts.fleet import Fleet
from stagecraft.infra.tls import edge_tls
from stagecraft.ledger.model import Release, ReleaseAction
from stagecraft.ledger.recorder import ReleaseRecorder
from stagecraft.ledger.release_id import new_release_id
from stagecraft.plan import Plan
from stagecraft.render.state import HostRender
from stagecraft.providers.secrets import resolve_secrets

if TYPE_CHECKING:
    from stagecraft.deploy.build import RegistryTarget


def registry_for(fleet: Fleet) -> tuple[RegistryTarget | None, RegistryLogin | None]:
    """The build's registry fleet and the login hosts use (None: no registry needed)."""
    from stagecraft.deploy.build import registry_target

    if fleet.env.project.registry is None and not fleet.cloud.capabilities.registry:
        # No registry at all: built images travel to the hosts directly (deploy/delivery.py).
        return None, None
    registry = registry_target(fleet.env, fleet.project_dir, fleet.cloud)
    login = RegistryLogin(server=registry.pull_server, username=registry.username,
                          password=registry.password)
    return registry, login


def deliver_images(fleet: Fleet, renders: Mapping[str, HostRender], traefik_image: str,
                   say: Say) -> None:
    """Without a registry: load into each host the images it runs that this machine
    has and the host lacks (built here, or Traefik's when it was pulled here)."""
    from stagecraft.deploy.delivery import deliver, needs_by_host

    by_host = {name: [s.image for s in render.state.services.values()]
               + ([traefik_image] if render.traefik_files else [])
               for name, render in renders.items()}
    local = local_image_ids(ref for refs in by_host.values() for ref in refs)
    deliver(fleet, needs_by_host(by_host, local), say)


def traefik_image_for(fleet: Fleet) -> str:
    """The Traefik image hosts run: the cloud's own when it publishes one."""
    if fleet.cloud.capabilities.traefik_image:
        return fleet.cloud.publish_traefik_image(fleet.spec, fleet.state_dir)
    return DEFAULT_TRAEFIK_IMAGE


def plan_deploy(fleet: Fleet, *, force: bool = False) -> tuple[Plan, str]:
    """`stagecraft plan`: what a deploy would do now, without building or changing anything."""
    release_id = new_release_id(fleet.project_dir)
    images = predicted_images(fleet, release_id, registry_for_plan(fleet))
    deployed = fleet.ledger.deployed_state(fleet.env.name)
    images = keep_same_images(images, deployed)
    secrets = resolve_secrets(fleet.env, fleet.project_dir)
    renders = render_release(fleet, release_id, images, secrets,
                             traefik_image_for(fleet), edge_tls(fleet))
    return plan_for(fleet, renders, release_id, force=force), release_id


def registry_for_plan(fleet: Fleet) -> str | None:
    """The pull server a plan names images with, without contacting any registry."""
    if fleet.cloud.capabilities.registry:
        try:
            return fleet.cloud.registry_access(fleet.spec, fleet.state_dir).pull_server
        except StagecraftError:  # a plan still works before the fleet exists
            return None
    project_registry = fleet.env.project.registry
    return project_registry.server if project_registry is not None else None


def deploy(fleet: Fleet, options: DeployOptions, *, services: list[str] | None = None,
           say: Say = _quiet, on_event: Callable[[Any], None] | None = None,
           on_line: Callable[[str, str], None] | None = None) -> ReleaseOutcome:
    """Build (unless skipped), render, plan and run a release of the environment."""
    from stagecraft.deploy.build import build_images

    env = fleet.env
    secrets = resolve_secrets(env, fleet.project_dir)
    registry, login = registry_for(fleet)
    pull_server = registry.pull_server if registry is not None else None
    deployed = fleet.ledger.deployed_state(env.name)
    release_id = new_release_id(fleet.project_dir)
    # A hook that cannot run is a config error: found before anything is recorded.
    hooks = load_hooks(fleet, action="deploy", release_id=release_id, options=options)
    # Recorded next, so a failure or a kill in the build still leaves its record.
    recorder = ReleaseRecorder.start(
        fleet.ledger, env.name, fleet.project_dir, action=ReleaseAction.DEPLOY,
        release_id=release_id, config_hash=env.config_hash(), message=options.message,
        dry_run=options.check, say=say)
    if recorder.release_id is not None and recorder.release_id != release_id:
        release_id = recorder.release_id  # another run took this second
        hooks = load_hooks(fleet, action="deploy", release_id=release_id, options=options)
    try:
        if options.skip_build:
            images = previous_images(fleet, release_id, pull_server)
        elif options.check:  # --dry-run builds nothing: the images a build would give
            images = predicted_images(fleet, release_id, pull_server)
        else:
            recorder.phase_started("build")
            hooks.run("pre-build", on_line=say)
            say(f"build: images of {release_id}")
            built = build_images(env, fleet.project_dir, release_id, registry,
                                 services=services, push=registry is not None,
                                 on_line=on_line, cloud=fleet.cloud)
            images = images_from_build(env, built)
            recorder.phase_finished("build")
        images = keep_same_images(images, deployed,
                                  same_ids=local_image_ids if registry is None else None)
        traefik_image = traefik_image_for(fleet)
        renders = render_release(fleet, release_id, images, secrets, traefik_image,
                                 edge_tls(fleet))
        observed = observe(fleet)
        for host, reasons in observed.drift.items():
            if host in deployed:
                say(f"{host} differs from the last release ({'; '.join(reasons)}): "
                    "planned as a new host")
        plan = plan_for(fleet, renders, release_id, force=options.force,
                        unknown=observed.drift)
        if registry is None and plan.has_changes and not options.check:
            deliver_images(fleet, renders, traefik_image, say)
    except BaseException as exc:
        recorder.fail(exc, phase="build")
        raise
    if not plan.has_changes and not observed.lock_held:
        # Every host runs what this release would give it: nothing to lock or run,
        # and no release to keep in the history.
        recorder.discard()
        return ReleaseOutcome(release=None, plan=plan, drift=observed.drift)
    return execute(fleet, action="deploy", release_id=release_id, renders=renders, plan=plan,
                   images=images, registry=login, traefik_image=traefik_image,
                   options=options, say=say, on_event=on_event, hooks=hooks,
                   traefik_current=traefik_current(plan, observed), recorder=recorder)


def rollback_target(fleet: Fleet, to: str | None) -> Release:
    """The release a rollback brings back: ``to``, or the one before the current one."""
    ledger = fleet.ledger
    env = fleet.env.name
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


def rollback(fleet: Fleet, options: DeployOptions, *, to: str | None = None,
             say: Say = _quiet, on_event: Callable[[Any], None] | None = None) -> ReleaseOutcome:
    """Bring back an earlier release whose files are still on the hosts; no migrations."""
    env = fleet.env
    wanted = rollback_target(fleet, to)
    # The release brought back is itself a rollback record: roll to what it ran.
    dir_id = wanted.rollback_of if wanted.action == "rollback" and wanted.rollback_of else wanted.id
    images = {name: image.ref for name, image in wanted.images.items()}
    secrets = resolve_secrets(env, fleet.project_dir)
    _registry, login = registry_for(fleet)
    traefik_image = traefik_image_for(fleet)
    renders = render_release(fleet, dir_id, images, secrets, traefik_image, edge_tls(fleet))
    # The hosts run the files of the old release; its recorded state is the desired one.
    renders = {name: replace(render, state=wanted.hosts[name].host_state())
               if name in wanted.hosts else render for name, render in renders.items()}
    observed = observe(fleet)
    plan = plan_for(fleet, renders, dir_id, action="rollback", force=options.force,
                    unknown=observed.drift)
    say(f"rollback of {env.name} to {dir_id}")
    if login is None and plan.has_changes and not options.check:
        deliver_images(fleet, renders, traefik_image, say)
    return execute(fleet, action="rollback", release_id=dir_id, renders=renders, plan=plan,
                   images=images, registry=login, traefik_image=traefik_image,
                   options=options, say=say, on_event=on_event, rollback_of=dir_id,
                   traefik_current=traefik_current(plan, observed))


__all__ = ["deploy", "rollback", "plan_deploy", "rollback_target", "desired_states"]
