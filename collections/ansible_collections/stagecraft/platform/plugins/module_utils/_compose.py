# -*- coding: utf-8 -*-
# Copyright: stagecraft maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Pure helpers of the rollout: what a release's compose file asks for, what Docker
says runs, and what to do per service. No Docker call and no file access here, so
the decisions can be unit tested (tests/unit/test_module_compose.py).

Runs on the managed host with its Python (3.8+ stdlib only).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

LABEL_SERVICE = "stagecraft.service"
LABEL_STRATEGY = "stagecraft.strategy"
LABEL_HASH = "stagecraft.config-hash"
# A routed service: the Traefik service its containers serve, their port, and the
# load balancer's settings but its servers (JSON). The rollout writes the servers.
LABEL_TRAEFIK_SERVICE = "stagecraft.traefik.service"
LABEL_TRAEFIK_PORT = "stagecraft.traefik.port"
LABEL_TRAEFIK_BALANCER = "stagecraft.traefik.load-balancer"
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_ONEOFF = "com.docker.compose.oneoff"
COMPOSE_NUMBER = "com.docker.compose.container-number"

STRATEGIES = ("rolling", "recreate", "stateful")

# Actions per service, as the contract names them (spec/deploy/contracts.md).
UNCHANGED = "unchanged"
CREATED = "created"
ROLLED = "rolled"
RECREATED = "recreated"
REMOVED = "removed"
KEPT = "kept"
ACTIONS = (UNCHANGED, CREATED, ROLLED, RECREATED, REMOVED, KEPT)
# Actions that leave the host as it was.
NO_CHANGE_ACTIONS = (UNCHANGED, KEPT)

# Docker's healthcheck defaults, used when the container's config leaves them at 0.
DEFAULT_HEALTH_INTERVAL = 30.0
DEFAULT_HEALTH_TIMEOUT = 30.0
DEFAULT_HEALTH_RETRIES = 3

# How much of the health log a failure reports per container.
HEALTH_OUTPUTS = 3
HEALTH_OUTPUT_CHARS = 300


class ComposeConfigError(ValueError):
    """The compose file's config cannot be rolled out (missing label, bad value)."""


@dataclass(frozen=True)
class DesiredService:
    """One service as the release's compose file defines it."""

    name: str
    image: str
    strategy: str
    config_hash: str
    replicas: int
    has_healthcheck: bool
    depends_on: tuple = ()
    # Routed services only: the Traefik service, the container port, and the load
    # balancer's settings but its servers.
    traefik_service: str = ""
    traefik_port: int = 0
    traefik_balancer: dict = field(default_factory=dict, compare=False)

    @property
    def routed(self) -> bool:
        return bool(self.traefik_service)


@dataclass(frozen=True)
class Container:
    """One container of the compose project, as ``docker inspect`` shows it."""

    id: str
    name: str
    service: str
    number: int
    config_hash: str
    status: str  # created, running, restarting, paused, exited, dead, removing
    health: str  # "" (no healthcheck), starting, healthy, unhealthy
    exit_code: int = 0
    restart_count: int = 0
    health_interval: float = DEFAULT_HEALTH_INTERVAL
    health_timeout: float = DEFAULT_HEALTH_TIMEOUT
    health_retries: int = DEFAULT_HEALTH_RETRIES
    health_outputs: tuple = field(default=(), compare=False)
    oneoff: bool = False

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def ready(self) -> bool:
        """Running, and healthy when it has a healthcheck: what Traefik routes to."""
        return self.running and self.health in ("", "healthy")

    @classmethod
    def from_inspect(cls, data: dict) -> Container:
        """A container from one element of ``docker inspect``'s JSON array."""
        config = data.get("Config") or {}
        labels = config.get("Labels") or {}
        state = data.get("State") or {}
        health_state = state.get("Health") or {}
        check = config.get("Healthcheck") or {}
        test = check.get("Test") or []
        has_check = bool(test) and test[0] != "NONE"
        try:
            number = int(labels.get(COMPOSE_NUMBER, "0"))
        except ValueError:
            number = 0
        # The last probes, each cut to its end (where a traceback says what failed).
        outputs = tuple(
            str(entry.get("Output", "")).strip()[-HEALTH_OUTPUT_CHARS:]
            for entry in (health_state.get("Log") or [])[-HEALTH_OUTPUTS:]
        )
        return cls(
            id=str(data.get("Id", "")),
            name=str(data.get("Name", "")).lstrip("/"),
            service=str(labels.get(COMPOSE_SERVICE, "")),
            number=number,
            config_hash=str(labels.get(LABEL_HASH, "")),
            status=str(state.get("Status", "")),
            health=str(health_state.get("Status", "")) if has_check else "",
            exit_code=int(state.get("ExitCode") or 0),
            restart_count=int(data.get("RestartCount") or 0),
            health_interval=_nanoseconds(check.get("Interval"), DEFAULT_HEALTH_INTERVAL),
            health_timeout=_nanoseconds(check.get("Timeout"), DEFAULT_HEALTH_TIMEOUT),
            health_retries=int(check.get("Retries") or DEFAULT_HEALTH_RETRIES),
            health_outputs=outputs,
            oneoff=str(labels.get(COMPOSE_ONEOFF, "False")).lower() == "true",
        )


def _nanoseconds(value: object, default: float) -> float:
    """Seconds of a Docker duration in nanoseconds; 0 or missing means Docker's default."""
    try:
        seconds = int(value or 0) / 1e9  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default
    return seconds if seconds > 0 else default


def parse_inspect(text: str) -> list:
    """Containers from ``docker inspect`` output (a JSON array), one-off runs left out."""
    data = json.loads(text or "[]")
    containers = [Container.from_inspect(item) for item in data]
    return [c for c in containers if not c.oneoff]


_HASH = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def parse_compose_config(text: str, source: str = "compose.yml") -> dict:
    """The services of ``docker compose config --format json`` output, by name (none
    for a host that runs no service).

    Raises ComposeConfigError naming the service and what to set when a service
    lacks the labels the rollout reads or sets a value it cannot use.
    """
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ComposeConfigError(f"{source}: docker compose config gave no JSON ({exc})")
    if not isinstance(document, dict):
        raise ComposeConfigError(f"{source}: docker compose config gave no JSON object")
    # A host none of whose roles runs a service has an empty file: nothing to pull,
    # and its rollout only removes what an earlier release ran there.
    services = document.get("services") or {}
    if not isinstance(services, dict):
        raise ComposeConfigError(f"{source}: services is not a mapping")
    result = {}
    for name, spec in services.items():
        result[name] = _desired_service(name, spec or {}, source)
    return result


def _desired_service(name: str, spec: dict, source: str) -> DesiredService:
    labels = spec.get("labels") or {}
    if isinstance(labels, list):  # compose may keep the list form: ["k=v", ...]
        labels = dict(item.split("=", 1) if "=" in item else (item, "") for item in labels)
    strategy = labels.get(LABEL_STRATEGY)
    if strategy not in STRATEGIES:
        raise ComposeConfigError(
            f"{source}: service {name} needs the label {LABEL_STRATEGY} set to one of "
            f"{', '.join(STRATEGIES)} (got {strategy!r})")
    config_hash = labels.get(LABEL_HASH)
    if not isinstance(config_hash, str) or not _HASH.match(config_hash):
        raise ComposeConfigError(
            f"{source}: service {name} needs the label {LABEL_HASH} (a hash of its "
            f"definition; stagecraft renders it) to compare with what runs (got {config_hash!r})")
    image = spec.get("image")
    if not isinstance(image, str) or not image:
        raise ComposeConfigError(f"{source}: service {name} has no image (the rollout "
                                 "deploys built images only)")
    replicas = (spec.get("deploy") or {}).get("replicas")
    if replicas is None:
        replicas = spec.get("scale", 1)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise ComposeConfigError(f"{source}: service {name} has deploy.replicas {replicas!r}; "
                                 "use a whole number, 0 or more")
    check = spec.get("healthcheck") or {}
    test = check.get("test") or []
    has_healthcheck = not check.get("disable", False) and bool(test) and test[0] != "NONE"
    depends = spec.get("depends_on") or {}
    depends_on = tuple(sorted(depends if isinstance(depends, (dict, list)) else []))
    traefik_service, traefik_port, traefik_balancer = _routing(name, labels, source)
    return DesiredService(name=name, image=image, strategy=strategy, config_hash=config_hash,
                          replicas=replicas, has_healthcheck=has_healthcheck,
                          depends_on=depends_on, traefik_service=traefik_service,
                          traefik_port=traefik_port, traefik_balancer=traefik_balancer)


_TRAEFIK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _routing(name: str, labels: dict, source: str) -> tuple:
    """(Traefik service, port, load balancer settings) of a routed service, or
    ("", 0, {}) when it has no routing labels."""
    service = labels.get(LABEL_TRAEFIK_SERVICE)
    if service is None:
        return "", 0, {}
    if not isinstance(service, str) or not _TRAEFIK_NAME.match(service):
        raise ComposeConfigError(f"{source}: service {name} has the label {LABEL_TRAEFIK_SERVICE} "
                                 f"{service!r}; use letters, digits, '.', '_' or '-'")
    port = str(labels.get(LABEL_TRAEFIK_PORT, ""))
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ComposeConfigError(f"{source}: service {name} is routed but its label "
                                 f"{LABEL_TRAEFIK_PORT} is {port!r}: set the container port")
    try:
        balancer = json.loads(labels.get(LABEL_TRAEFIK_BALANCER) or "{}")
    except ValueError as exc:
        raise ComposeConfigError(f"{source}: service {name}: the label {LABEL_TRAEFIK_BALANCER} "
                                 f"is not JSON ({exc})")
    if not isinstance(balancer, dict) or "servers" in balancer:
        raise ComposeConfigError(f"{source}: service {name}: the label {LABEL_TRAEFIK_BALANCER} "
                                 "must be a JSON object without servers (the rollout adds them)")
    return service, int(port), balancer


def decide(desired: DesiredService, containers: list, force: bool = False) -> str:
    """The action a service needs, given its containers (any state) on the host.

    Running containers are the ones that count; stopped ones are leftovers the
    action clears. A running container still ``starting`` its healthcheck is not
    up to date: wait until Docker has decided before asking.
    """
    running = [c for c in containers if c.running]
    hashes_match = all(c.config_hash == desired.config_hash for c in running)
    if desired.strategy == "stateful":
        if not running:
            return RECREATED if force and containers else CREATED
        if hashes_match:
            return UNCHANGED
        return RECREATED if force else KEPT
    up_to_date = (
        hashes_match
        and len(running) == desired.replicas
        and all(c.ready for c in running)
    )
    if up_to_date:
        return UNCHANGED
    if not running:
        return CREATED
    return ROLLED if desired.strategy == "rolling" else RECREATED


def service_order(services: dict) -> list:
    """Service names with every service after the ones it depends on, else by name."""
    order: list = []
    visiting: set = set()

    def visit(name: str) -> None:
        if name in order or name not in services:
            return
        if name in visiting:  # compose refuses cycles; never loop on one anyway
            return
        visiting.add(name)
        for dependency in sorted(services[name].depends_on):
            visit(dependency)
        visiting.discard(name)
        order.append(name)

    for name in sorted(services):
        visit(name)
    return order


def orphan_services(services: dict, containers: list) -> list:
    """Services with containers under the project that the compose file no longer has."""
    return sorted({c.service for c in containers if c.service and c.service not in services})


def releases_to_prune(releases: list, keep: int, protected: set) -> list:
    """Release ids beyond the newest ``keep`` (ids sort by time), never a protected one."""
    ordered = sorted(r for r in releases if not r.startswith("."))
    kept = set(ordered[-keep:]) if keep > 0 else set()
    return [r for r in ordered if r not in kept and r not in protected]
