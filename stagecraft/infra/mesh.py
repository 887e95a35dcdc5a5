"""Join an environment's hosts to its tailnet (PROVIDER_NETWORK_TAILSCALE):
stagecraft.platform.mesh (role tailscale) through the driver, before bootstrap.

Network ``tailscale`` logs in at Tailscale with the configured auth key; network
``headscale`` at its ``login_server``, or, on a cloud that runs the server itself
(capability ``mesh_server``), at that server with the key the cloud made. Each host
reports its tailnet addresses (the ``tailscale_node`` fact); :func:`record_join`
keeps them in mesh.json, and from then on the fleet uses them (hosts/mesh.py).
The key travels only as a secret extra variable: never in a log, an event or the
run's recorded inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stagecraft.ansible.request import RunRequest, SshSettings
from stagecraft.ansible.runner import RunResult
from stagecraft.config.schema import NetworkHeadscale, NetworkTailscale, ResolvedEnvironment
from stagecraft.errors import ProviderError, StateError
from stagecraft.hosts.fleet import Fleet
from stagecraft.hosts.mesh import MeshNode, nodes_from_events, record_nodes
from stagecraft.infra.bootstrap import new_run_id
from stagecraft.providers.cloud.base import MeshCloud, MeshServer
from stagecraft.render.inventory import render_inventory
from stagecraft.steps import Log

PLAYBOOK = "mesh.yml"
#: Seconds after the leave run until the hosts log out (role tailscale schedules it, as
#: the run itself may travel over the tailnet); ``infra down`` waits this long and a
#: little more before the cloud removes them.
LEAVE_DELAY = 3


def tailnet_settings(env: ResolvedEnvironment) -> NetworkTailscale | NetworkHeadscale | None:
    """The environment's tailnet settings; None when its hosts join none."""
    network = env.providers.network
    return network if isinstance(network, (NetworkTailscale, NetworkHeadscale)) else None


def mesh_server(fleet: Fleet, log: Log) -> MeshServer | None:
    """The control server the cloud runs for this environment, started if need be;
    None when the network names its own (Tailscale, or a Headscale login_server)."""
    network = tailnet_settings(fleet.env)
    if network is None or network.kind != "headscale" or network.login_server:
        return None
    if not (fleet.cloud.capabilities.mesh_server and isinstance(fleet.cloud, MeshCloud)):
        raise ProviderError(
            f"network 'headscale' of environment '{fleet.env.name}' names no login_server, "
            f"and cloud '{fleet.env.providers.cloud.kind}' runs no Headscale server",
            hint="set providers.network.login_server and auth_key to your Headscale "
                 "server and a pre-auth key")
    return fleet.cloud.mesh_server(fleet.spec, fleet.state_dir, log)


def join_vars(env: ResolvedEnvironment, server: MeshServer | None) -> dict[str, Any]:
    """The tailscale role's variables (the key aside: see :func:`join_secret_vars`)."""
    network = tailnet_settings(env)
    if network is None:
        raise StateError(f"environment '{env.name}' joins no tailnet (providers.network "
                         f"is '{env.providers.network.kind}')")
    login_server = (getattr(network, "login_server", None)
                    or (server.login_server if server is not None else ""))
    # Headscale (v0.29) refuses tags a node advertises when it registers with a
    # pre-auth key: there the key carries them (`preauthkeys create --tags`; the
    # cloud's own server makes its key so).
    advertised = list(network.tags) if network.kind == "tailscale" else []
    return {
        "tailscale_state": "present",
        "tailscale_tags": advertised,
        "tailscale_login_server": login_server or "",
        "tailscale_login_server_ca_pem": (server.ca_pem or "") if server is not None else "",
    }


def join_secret_vars(env: ResolvedEnvironment, project_dir: Path,
                     server: MeshServer | None) -> dict[str, Any]:
    """``tailscale_auth_key``: the configured reference, resolved, or the key the
    cloud's server made."""
    network = tailnet_settings(env)
    reference = getattr(network, "auth_key", None)
    if reference:
        from stagecraft.providers.secrets import resolve_reference

        return {"tailscale_auth_key": resolve_reference(env, project_dir, reference)}
    if server is not None:
        return {"tailscale_auth_key": server.auth_key}
    raise ProviderError(f"environment '{env.name}' has no key to join its tailnet with",
                        hint="set providers.network.auth_key to a reference, "
                             "e.g. ${secret:TS_AUTHKEY}")


def _install_vars(fleet: Fleet) -> dict[str, Any]:
    """How tailscale gets onto the cloud's hosts: the role's variables among the cloud's
    bootstrap variables."""
    cloud_vars = fleet.cloud.bootstrap_vars(fleet.spec, fleet.state_dir)
    return {k: v for k, v in cloud_vars.items() if k.startswith("tailscale_")}


def join_request(fleet: Fleet, server: MeshServer | None, *, check: bool = False,
                 verbosity: int = 0, limit: str | None = None) -> RunRequest:
    """The run that joins the fleet's hosts (reached as the fleet reaches them now)."""
    env = fleet.env
    if not fleet.records:
        raise StateError(f"environment '{env.name}' has no hosts yet",
                         hint=f"create them first: stagecraft infra up --env {env.name}")
    extravars = {**_install_vars(fleet), **join_vars(env, server)}
    return RunRequest(
        run_id=new_run_id("mesh", env.name),
        playbook=PLAYBOOK,
        inventory=render_inventory(env, fleet.records, fleet.connection),
        extravars=extravars,
        secret_extravars=join_secret_vars(env, fleet.project_dir, server),
        check=check,
        verbosity=max(0, verbosity - 1),
        limit=limit,
        ssh=SshSettings.of(fleet.access),
    )


def leave_request(fleet: Fleet, *, verbosity: int = 0) -> RunRequest:
    """The run that logs the joined hosts out of the tailnet and stops tailscaled."""
    env = fleet.env
    joined = {name: record for name, record in fleet.records.items() if name in fleet.mesh}
    return RunRequest(
        run_id=new_run_id("mesh-leave", env.name),
        playbook=PLAYBOOK,
        inventory=render_inventory(env, fleet.records, fleet.connection),
        extravars={**_install_vars(fleet), "tailscale_state": "absent",
                   "tailscale_leave_delay": LEAVE_DELAY},
        verbosity=max(0, verbosity - 1),
        limit=",".join(sorted(joined)),
        ssh=SshSettings.of(fleet.access),
    )


def record_join(fleet: Fleet, result: RunResult) -> dict[str, MeshNode]:
    """Keep what the hosts that joined reported (also after a run that failed on some
    hosts: those that joined are reached over the tailnet next time). Returns every
    node now recorded."""
    joined = nodes_from_events(result.events)
    if result.check:
        return dict(fleet.mesh)
    return record_nodes(fleet.state_dir, joined, keep=fleet.host_names)


__all__ = ["PLAYBOOK", "join_request", "leave_request", "join_secret_vars", "join_vars", "mesh_server",
           "record_join", "tailnet_settings"]
