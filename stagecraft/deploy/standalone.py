"""Releases run with plain ``ansible-playbook``, without the stagecraft CLI.

The stagecraft.platform collection calls three functions here, so a deploy, a rollback
and a bootstrap started by ``ansible-playbook`` get what the CLI would give them:

- the inventory plugin: :func:`inventory_variables` (bootstrap variables and, when the
  run names a release with ``-e stagecraft_release=<id>``, the release's non-secret
  files per host: compose, Traefik);
- the ``release_secrets`` action: :func:`secret_variables` (one host's env files and
  TLS keys, and the registry login, resolved from the secrets provider on the
  controller; the playbooks use them with no_log, and they never sit in the inventory,
  so ``ansible-inventory --list`` cannot show them);
- the ``ledger`` callback: :func:`release_record_inputs` (what the ledger records).

A release's images: the ledger's record of that release when it has one (a rollback,
or a release deployed before), else the tags ``stagecraft build --release <id>``
pushes: ``<registry>/<project>-<service>:<id>`` (images given in stagecraft.yml as
they are). See spec/deploy/standalone.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stagecraft.config import load_config
from stagecraft.config.schema import ResolvedEnvironment
from stagecraft.errors import PlanError, StateError
from stagecraft.hosts.fleet import Fleet
from stagecraft.ledger.release_id import ReleaseIdError, parse_release_id
from stagecraft.paths import host_root_extravars
from stagecraft.render.state import HostRender

# The extra variable a run names its release with (stagecraft_release_id also works:
# it is the one the CLI passes).
RELEASE_VAR = "stagecraft_release"
RELEASE_ID_VAR = "stagecraft_release_id"
# The group variable that tells the collection's action and callback where the
# project is.
CONFIG_VAR = "stagecraft_config"
IMAGES_VAR = "stagecraft_images"
KEEP_RELEASES = 5


def release_of(extra_vars: Mapping[str, Any]) -> str | None:
    """The release a run names, from its extra variables; None when it names none."""
    value = extra_vars.get(RELEASE_VAR) or extra_vars.get(RELEASE_ID_VAR)
    if value is None or value == "":
        return None
    release_id = str(value)
    try:
        parse_release_id(release_id)
    except ReleaseIdError as exc:
        raise PlanError(
            f"{RELEASE_VAR}={release_id!r} is not a release id: {exc}",
            hint="pass the id `stagecraft build --release` tagged the images with, "
                 "e.g. -e stagecraft_release=20261121T101500Z-3f9c2ab") from None
    return release_id


def load_fleet(config_path: Path, environment: str) -> Fleet:
    """The environment's fleet, from stagecraft.yml and its state files."""
    loaded = load_config(Path(config_path))
    env = loaded.environment(environment)
    return Fleet.load(env, loaded.project_dir, require=False)


def release_images(fleet: Fleet, release_id: str) -> dict[str, str]:
    """Each service's image in ``release_id`` (see the module docstring)."""
    from stagecraft.deploy.release import registry_for_plan
    from stagecraft.ledger.store import ReleaseNotFound

    env = fleet.env
    try:
        recorded = fleet.ledger.get(release_id, env.name)
    except ReleaseNotFound:
        recorded = None
    if recorded is not None:
        if recorded.action == "rollback" and recorded.rollback_of:
            recorded = fleet.ledger.get(recorded.rollback_of, env.name)
        if recorded.images:
            return {name: image.ref for name, image in recorded.images.items()}
    return tagged_images(env, release_id, registry_for_plan(fleet))


def tagged_images(env: ResolvedEnvironment, release_id: str,
                  server: str | None) -> dict[str, str]:
    """The tags `stagecraft build --release` gives the built services."""
    from stagecraft.deploy.build import repository

    images: dict[str, str] = {}
    for name, service in env.services.items():
        if service.image is not None:
            images[name] = service.image
        elif service.build is not None:
            if server is None:
                raise PlanError(
                    f"service {name} is built, but environment '{env.name}' has no registry "
                    "the hosts could pull its image from",
                    hint="set project.registry in stagecraft.yml (plain ansible-playbook runs "
                         "pull every image; only the stagecraft CLI can send images over SSH)")
            images[name] = f"{repository(server, env.project.name, name)}:{release_id}"
    for name, service in env.services.items():
        if service.from_ is not None:
            images[name] = images[service.from_]
    return images


@dataclass(frozen=True)
class ReleaseInputs:
    """What a release's files are rendered from."""

    release_id: str
    images: Mapping[str, str]
    traefik_image: str


def release_inputs(fleet: Fleet, release_id: str) -> ReleaseInputs:
    from stagecraft.deploy.release import traefik_image_for

    return ReleaseInputs(release_id=release_id, images=release_images(fleet, release_id),
                         traefik_image=traefik_image_for(fleet))


def render(fleet: Fleet, inputs: ReleaseInputs) -> dict[str, HostRender]:
    """Every host's files for the release, secrets resolved from the provider."""
    from stagecraft.deploy.planning import render_release
    from stagecraft.infra.tls import edge_tls
    from stagecraft.providers.secrets import resolve_secrets

    secrets = resolve_secrets(fleet.env, fleet.project_dir)
    return render_release(fleet, inputs.release_id, inputs.images, secrets,
                          inputs.traefik_image, edge_tls(fleet))


def bootstrap_variables(fleet: Fleet) -> dict[str, Any]:
    """What `stagecraft bootstrap` passes the bootstrap playbook (no secret among them)."""
    from stagecraft.infra.bootstrap import bootstrap_request

    return dict(bootstrap_request(fleet).extravars)


def inventory_variables(config_path: Path, environment: str,
                        release_id: str | None) -> tuple[dict[str, Any], dict[str, dict]]:
    """``(variables of all, {host: variables})`` the inventory plugin adds to the hosts
    stagecraft's inventory already has: never a secret."""
    from stagecraft.deploy.request import file_list
    from stagecraft.hosts.fleet import fleet_records, load_host_records, state_dir

    group: dict[str, Any] = {**host_root_extravars(), CONFIG_VAR: str(Path(config_path))}
    hosts: dict[str, dict[str, Any]] = {}
    loaded = load_config(Path(config_path))
    env = loaded.environment(environment)
    if not fleet_records(env, load_host_records(state_dir(loaded.project_dir, env.name))) \
            and release_id is None:
        return group, hosts  # nothing created yet: no cloud needs to be asked anything
    fleet = Fleet.load(env, loaded.project_dir, require=False)
    if fleet.records:
        group.update(bootstrap_variables(fleet))
    if release_id is None:
        return group, hosts
    missing = [h.name for h in fleet.env.hosts if h.name not in fleet.records]
    if missing:
        raise StateError(
            f"environment '{environment}' has no host record for {', '.join(missing)}",
            hint=f"create the hosts first (stagecraft infra up --env {environment})")
    inputs = release_inputs(fleet, release_id)
    renders = render(fleet, inputs)
    group.update({
        RELEASE_ID_VAR: release_id,
        IMAGES_VAR: dict(inputs.images),
        "stagecraft_traefik_image": inputs.traefik_image,
        "stagecraft_rollout": rollout_settings(env),
        "stagecraft_keep_releases": KEEP_RELEASES,
    })
    hooks, hook_env = batch_hooks(fleet, release_id)
    if hooks:
        group["stagecraft_hooks"] = hooks
        group["stagecraft_hook_env"] = hook_env
    for name, host_render in renders.items():
        hosts[name] = {
            "stagecraft_release_files": file_list(host_render.release_files, secret=False),
            "stagecraft_traefik_files": file_list(host_render.traefik_files, secret=False),
        }
    return group, hosts


def rollout_settings(env: ResolvedEnvironment) -> dict[str, Any]:
    from stagecraft.config.values import parse_duration

    return {"batch": env.rollout.batch,
            "health_timeout": parse_duration(env.rollout.health_timeout),
            "drain": parse_duration(env.rollout.drain)}


def batch_hooks(fleet: Fleet, release_id: str) -> tuple[dict[str, str], dict[str, str]]:
    """The project's pre-rollout and post-rollout hooks, run by the rollout play."""
    from stagecraft.deploy.hooks import HookContext, Hooks
    from stagecraft.identity import performer

    context = HookContext(project=fleet.env.project.name, environment=fleet.env.name,
                          release=release_id, action="deploy", performer=performer(),
                          hosts=tuple(h.name for h in fleet.env.hosts), message="")
    hooks = Hooks.load(fleet.project_dir, context)
    return hooks.batch_hooks(), context.batch_variables()


def secret_variables(config_path: Path, environment: str, host: str,
                     inputs: ReleaseInputs) -> dict[str, Any]:
    """One host's secret files (env files, TLS keys) and the registry login."""
    from stagecraft.deploy.release import registry_for
    from stagecraft.deploy.request import file_list

    fleet = load_fleet(config_path, environment)
    renders = render(fleet, inputs)
    if host not in renders:
        raise StateError(f"host {host} is not in environment '{environment}'",
                         hint="run against the stagecraft inventory of that environment")
    _target, login = registry_for(fleet)
    registry = ({"server": login.server, "username": login.username or "",
                 "password": login.password or ""} if login is not None else {})
    return {"files": file_list(renders[host].release_files, secret=True),
            "traefik_files": file_list(renders[host].traefik_files, secret=True),
            "registry": registry}


@dataclass(frozen=True)
class RecordInputs:
    """What the ledger callback records at the start of a release."""

    fleet: Fleet
    images: Mapping[str, str]
    states: Mapping[str, dict[str, Any]]  # host -> HostState.to_dict()


def release_record_inputs(config_path: Path, environment: str,
                          inputs: ReleaseInputs) -> RecordInputs:
    fleet = load_fleet(config_path, environment)
    renders = render(fleet, inputs)
    return RecordInputs(fleet=fleet, images=dict(inputs.images),
                        states={name: r.state.to_dict() for name, r in renders.items()})
