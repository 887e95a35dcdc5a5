"""The Ansible run of a deploy or rollback, as a RunRequest (pure).

Non-secret rendered files travel as host variables in the inventory; files
holding secrets (env files, TLS keys) and the registry password travel as
secret extra variables, which the run bundle keeps in a 0600 file deleted when
the run ends. See spec/deploy/contracts.md and stagecraft.platform.deploy.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stagecraft.ansible.request import RunRequest, SshSettings
from stagecraft.config.schema import ResolvedEnvironment
from stagecraft.config.values import parse_duration
from stagecraft.paths import host_root_extravars
from stagecraft.providers.cloud.base import HostRecord, SshAccess
from stagecraft.hosts.fleet import ConnectionSettings
from stagecraft.render.inventory import render_inventory
from stagecraft.render.state import HostRender, RenderedFile

KEEP_RELEASES = 5
# Ansible's forks for a release run: at least as many as hosts, up to MAX_FORKS.
MIN_FORKS = 10
MAX_FORKS = 64


@dataclass(frozen=True)
class RegistryLogin:
    """Where hosts pull from, and as whom. ``password`` is a secret."""

    server: str
    username: str | None = None
    password: str | None = None


def file_list(files: Mapping[str, RenderedFile], *, secret: bool) -> list[dict[str, str]]:
    """``[{path, content, mode}]`` of the files that are (or are not) secret."""
    return [{"path": path, "content": f.content, "mode": f"{f.mode:04o}"}
            for path, f in sorted(files.items()) if f.secret == secret]


def _host_entries(inventory: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every host's variable dict inside an inventory made by render_inventory."""
    found: dict[str, dict[str, Any]] = {}

    def walk(group: Mapping[str, Any]) -> None:
        for name, host_vars in (group.get("hosts") or {}).items():
            if host_vars:
                found[name] = host_vars
        for child in (group.get("children") or {}).values():
            walk(child or {})

    walk(inventory["all"])
    return found


def release_request(
    *,
    run_id: str,
    playbook: str,
    env: ResolvedEnvironment,
    records: Mapping[str, HostRecord],
    access: SshAccess,
    renders: Mapping[str, HostRender],
    release_id: str,
    action: str,
    performer: str,
    registry: RegistryLogin | None,
    traefik_image: str,
    force: bool = False,
    upload: bool = True,
    check: bool = False,
    verbosity: int = 0,
    limit: str | None = None,
    hooks: Mapping[str, str] | None = None,
    hook_env: Mapping[str, str] | None = None,
    traefik_current: Iterable[str] = (),
    phases: Iterable[str] | None = None,
    start_stateful: bool = False,
) -> RunRequest:
    """The run of ``playbook`` (deploy.yml or rollback.yml) for ``renders``' hosts."""
    connection = ConnectionSettings.of(access)
    inventory = copy.deepcopy(render_inventory(env, dict(records), connection))
    hosts = _host_entries(inventory)
    current = set(traefik_current)
    secret_files: dict[str, list[dict[str, str]]] = {}
    secret_traefik: dict[str, list[dict[str, str]]] = {}
    for name, render in renders.items():
        hosts[name]["stagecraft_release_files"] = file_list(render.release_files, secret=False)
        hosts[name]["stagecraft_traefik_files"] = file_list(render.traefik_files, secret=False)
        secret_files[name] = file_list(render.release_files, secret=True)
        secret_traefik[name] = file_list(render.traefik_files, secret=True)
        # Same Traefik configuration and running: the rollout play skips the role.
        hosts[name]["stagecraft_traefik_changed"] = name not in current
    extravars: dict[str, Any] = {
        **host_root_extravars(),
        "stagecraft_project": env.project.name,
        "stagecraft_environment": env.name,
        "stagecraft_release_id": release_id,
        "stagecraft_action": action,
        "stagecraft_performer": performer,
        "stagecraft_rollout": {
            "batch": env.rollout.batch,
            "health_timeout": parse_duration(env.rollout.health_timeout),
            "drain": parse_duration(env.rollout.drain),
        },
        "stagecraft_force": force,
        "stagecraft_traefik_image": traefik_image,
        "stagecraft_keep_releases": KEEP_RELEASES,
        "stagecraft_upload": upload,
        # The CLI holds the lock itself (it must outlive a failed playbook).
        "stagecraft_manage_lock": False,
        # Every input above is built here, so the playbook's own checks are skipped.
        "stagecraft_inputs_checked": True,
    }
    if phases is not None:  # a part of the host phases (around pre-deploy migrations)
        extravars["stagecraft_phases"] = list(phases)
    if start_stateful:  # the database must run before pre-deploy migrations
        extravars["stagecraft_start_stateful"] = True
    if hooks:  # pre-rollout / post-rollout, run once per batch on the controller
        extravars["stagecraft_hooks"] = dict(hooks)
        extravars["stagecraft_hook_env"] = dict(hook_env or {})
    secret_extravars: dict[str, Any] = {
        "stagecraft_secret_files": secret_files,
        "stagecraft_secret_traefik_files": secret_traefik,
    }
    if registry is not None:
        secret_extravars["stagecraft_registry"] = {
            "server": registry.server, "username": registry.username or "",
            "password": registry.password or ""}
    return RunRequest(
        run_id=run_id,
        playbook=playbook,
        inventory=inventory,
        extravars=extravars,
        secret_extravars=secret_extravars,
        check=check,
        verbosity=max(0, verbosity - 1),
        limit=limit,
        ssh=SshSettings.of(access),
        # Every host of a batch works at once (a batch may be the whole fleet).
        forks=max(MIN_FORKS, min(len(renders), MAX_FORKS)),
    )
