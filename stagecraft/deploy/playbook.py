"""Running a release's host phases: one Ansible run of stagecraft.platform.deploy or
rollback.yml, whose request deploy/request.py builds."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from stagecraft.deploy.hooks import Hooks
from stagecraft.deploy.request import RegistryLogin, release_request
from stagecraft.hosts.fleet import Fleet
from stagecraft.identity import performer
from stagecraft.render.state import HostRender

if TYPE_CHECKING:
    from stagecraft.ansible.runner import RunResult


def run_release_playbook(fleet: Fleet, *, action: str, release_id: str,
                         renders: Mapping[str, HostRender], registry: RegistryLogin | None,
                         traefik_image: str, force: bool, check: bool, verbosity: int,
                         on_event: Callable[[Any], None] | None, hooks: Hooks,
                         traefik_current: set[str], phases: tuple[str, ...] | None = None,
                         start_stateful: bool = False) -> RunResult:
    """Run deploy.yml (or rollback.yml) for the release: the host phases, or only
    ``phases`` of them. Returns the run's result (its events included)."""
    from stagecraft.ansible.bundle import prepare
    from stagecraft.ansible.runner import run as run_bundle

    playbook = "deploy.yml" if action == "deploy" else "rollback.yml"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    request = release_request(
        run_id=f"{stamp}-{action}-{fleet.env.name}-{int(time.time() * 1000) % 1000:03d}",
        playbook=playbook, env=fleet.env, records=fleet.records, access=fleet.access,
        renders=renders, release_id=release_id, action=action, performer=performer(),
        registry=registry, traefik_image=traefik_image, force=force,
        upload=action == "deploy", check=check, verbosity=verbosity,
        hooks=hooks.batch_hooks(), hook_env=hooks.context.batch_variables(),
        traefik_current=traefik_current, phases=phases, start_stateful=start_stateful)
    bundle = prepare(request, fleet.runs_dir)
    return run_bundle(bundle, on_event=on_event)
