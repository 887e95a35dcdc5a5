"""Everything one host needs for one release (spec/deploy/compose.md, traefik.md).

``render_host`` puts the pieces together: the release files (compose.yml, the
secret env files, release.json), the Traefik files, and the host's desired
state (what plan diffs and the ledger keeps). ``render_fleet`` does it for every
host of the environment. Pure: nothing is read or written.
"""

from __future__ import annotations

import gc

import json

from stagecraft.config.schema import Host, ResolvedEnvironment
from stagecraft.render.compose import (
    RenderError,
    compose_yaml,
    project_name,
    render_compose,
)
from stagecraft.render.state import HostRender, HostState, RenderedFile, RenderInput
from stagecraft.render.traefik import render_traefik, traefik_hash

RELEASE_FORMAT = 1
COMPOSE_FILE = "compose.yml"
RELEASE_FILE = "release.json"
SECRET_FILE_MODE = 0o600


def env_file_path(service: str) -> str:
    """Where a service's secrets go, relative to the release dir."""
    return f"env/{service}.env"


def host_of(env: ResolvedEnvironment, name: str) -> Host:
    """The host ``name`` of ``env``; an error listing the hosts otherwise."""
    for host in env.hosts:
        if host.name == name:
            return host
    names = ", ".join(h.name for h in env.hosts)
    raise RenderError(f"environment {env.name!r} has no host {name!r}",
                      hint=f"hosts of {env.name!r}: {names}")


def render_host(env: ResolvedEnvironment, host: str, inp: RenderInput) -> HostRender:
    """The release files, Traefik files and desired state of ``host``."""
    target = host_of(env, host)
    compose = render_compose(env, target, inp)
    traefik_files = render_traefik(env, target, inp)
    state = HostState(services=compose.services,
                      traefik_hash=traefik_hash(traefik_files, inp.traefik_image,
                                                inp.private_ips.get(target.name, "")))
    release_files: dict[str, RenderedFile] = {
        COMPOSE_FILE: RenderedFile(compose_yaml(env, target, compose.document)),
        RELEASE_FILE: RenderedFile(release_json(env, target, inp.release_id, state)),
    }
    for service, content in compose.env_files.items():
        release_files[env_file_path(service)] = RenderedFile(
            content, mode=SECRET_FILE_MODE, secret=True)
    return HostRender(host=target.name, release_files=dict(sorted(release_files.items())),
                      traefik_files=traefik_files, state=state)


def render_fleet(env: ResolvedEnvironment, inp: RenderInput) -> dict[str, HostRender]:
    """``render_host`` for every host of ``env``, in the environment's host order."""
    # Rendering makes many small objects that all stay alive (the renders): the cyclic
    # garbage collector would rescan the growing heap again and again, making big
    # fleets slower per host. Nothing here makes cycles, so it can pause.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return {host.name: render_host(env, host.name, inp) for host in env.hosts}
    finally:
        if collecting:
            gc.enable()


def release_json(env: ResolvedEnvironment, host: Host, release_id: str, state: HostState) -> str:
    """release.json: which release this is and what the host should run. No secrets:
    services carry their image, config hash, strategy and replicas only."""
    data = {
        "format": RELEASE_FORMAT,
        "release_id": release_id,
        "project": env.project.name,
        "environment": env.name,
        "compose_project": project_name(env),
        "host": host.name,
        **state.to_dict(),
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
