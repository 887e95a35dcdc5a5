"""Bootstrap the hosts of an environment: stagecraft.platform.bootstrap through the driver.

The inventory comes from the same renderer the inventory plugin uses; the role's
variables are the project/environment names, the environment's SSH public key for
the deploy user, and whatever the cloud provider needs (a Docker source, a quirk of
its hosts). The firewall play that follows gets the environment's
`firewall` section and the private network (stagecraft/infra/firewall.py). The volumes
play gets each host's block volumes (``volumes_by_host``). A cloud without a registry of
its own passes on the CA of ``project.registry`` (``registry_ca_vars``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509

from stagecraft.ansible.bundle import prepare
from stagecraft.ansible.request import RunRequest, SshSettings
from stagecraft.ansible.runner import RunResult, run
from stagecraft.config.schema import ResolvedEnvironment
from stagecraft.errors import ConfigError, StateError
from stagecraft.hosts.fleet import Fleet
from stagecraft.infra import firewall
from stagecraft.paths import host_root_extravars
from stagecraft.providers.cloud import StateFiles
from stagecraft.render.compose import services_on
from stagecraft.render.inventory import render_inventory

PLAYBOOK = "bootstrap.yml"


def new_run_id(verb: str, environment: str) -> str:
    """Sortable by time, names what ran: 20261121T101500Z-bootstrap-local."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{verb}-{environment}"


def bootstrap_request(fleet: Fleet, *, check: bool = False, verbosity: int = 0,
                      limit: str | None = None) -> RunRequest:
    """The run request for bootstrapping the fleet's hosts (pure apart from reading state)."""
    env, records, access = fleet.env, fleet.records, fleet.access
    if not records:
        raise StateError(
            f"environment '{env.name}' has no hosts yet",
            hint=f"create them first: stagecraft infra up --env {env.name}",
        )
    # Read before any host is touched: a bad CA file stops here.
    registry_vars = registry_ca_vars(fleet)
    public_key = StateFiles(fleet.state_dir).public_key
    cloud_vars = fleet.cloud.bootstrap_vars(fleet.spec, fleet.state_dir)
    private_cidrs = firewall.private_cidrs(cloud_vars, (r.private_ip for r in records.values()),
                                           tailnet_only=over_tailnet(fleet))
    extravars: dict[str, Any] = {
        **host_root_extravars(),
        "bootstrap_project": env.project.name,
        "bootstrap_environment": env.name,
        "bootstrap_deploy_authorized_keys": [public_key.read_text().strip()]
        if public_key.is_file() else [],
        **cloud_vars,
        **registry_vars,
        # Every host's but firewall_edge, which the playbook takes from each host's roles;
        # firewall_private_cidrs replaces the cloud's own.
        **firewall.environment_vars(env, private_cidrs),
        "volumes_by_host": volumes_by_host(
            env, lambda host, volume: fleet.cloud.volume_device(fleet.spec, host, volume)),
    }
    return RunRequest(
        run_id=new_run_id("bootstrap", env.name),
        playbook=PLAYBOOK,
        inventory=render_inventory(env, records, fleet.connection),
        extravars=extravars,
        check=check,
        verbosity=max(0, verbosity - 1),
        limit=limit,
        ssh=SshSettings.of(access),
    )


def over_tailnet(fleet: Fleet) -> bool:
    """Whether every host joined the tailnet and is reached over it: then the tailnet
    is the whole private side (SSH and the private ports come only over it)."""
    network = fleet.env.providers.network
    return (bool(fleet.records) and set(fleet.records) <= set(fleet.mesh)
            and bool(getattr(network, "ssh_over_mesh", False)))


def registry_ca_vars(fleet: Fleet) -> dict[str, str]:
    """The bootstrap role's registry CA variables for ``project.registry.ca_file``.

    Empty when the cloud runs its own registry (its bootstrap_vars pass that one's CA)
    or the registry names no CA file. Raises ConfigError when the file cannot be read
    or holds no PEM certificate.
    """
    registry = fleet.env.project.registry
    if registry is None or not registry.ca_file or fleet.cloud.capabilities.registry:
        return {}
    path = fleet.project_dir / Path(registry.ca_file).expanduser()
    hint = ("set project.registry.ca_file to the PEM file of the CA that signed the "
            "registry's certificate (relative to stagecraft.yml)")
    try:
        pem = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"project.registry.ca_file: cannot read {path}: {reason}",
                          hint=hint) from None
    try:
        x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise ConfigError(f"project.registry.ca_file: {path} holds no PEM certificate",
                          hint=hint) from None
    # Docker looks the CA up by the registry's host[:port], without the path.
    return {"bootstrap_registry_server": registry.server.split("/", 1)[0],
            "bootstrap_registry_ca_pem": pem}


def volumes_by_host(env: ResolvedEnvironment,
                    device_of: Callable[[str, str], str | None] | None = None,
                    ) -> dict[str, list[dict[str, Any]]]:
    """Host name -> the volumes role's ``volumes_list`` for it (hosts without volumes left out).

    Each volume the host carries, with its filesystem, its device (the config's, else
    where the cloud says the host sees it: ``device_of(host, volume)``), and one
    directory per service on that host that mounts it (the directory compose binds:
    /mnt/<volume>/<service>).
    """
    result: dict[str, list[dict[str, Any]]] = {}
    for host in env.hosts:
        placed = services_on(env, host)
        items = []
        for name in host.volumes:
            volume = env.volumes[name]
            users = sorted(s for s in placed if any(
                m.split(":", 1)[0] == name for m in env.services[s].volumes))
            item: dict[str, Any] = {"name": name, "filesystem": volume.filesystem,
                                    "directories": [{"path": s} for s in users]}
            device = volume.device or (device_of(host.name, name) if device_of else None)
            if device:
                item["device"] = device
            items.append(item)
        if items:
            result[host.name] = items
    return result


def run_bootstrap(request: RunRequest, runs_dir: Path,
                  on_event: Callable[[Any], None] | None = None) -> RunResult:
    """Prepare the run bundle and run it; the result says per host what changed."""
    bundle = prepare(request, runs_dir)
    return run(bundle, on_event=on_event)
