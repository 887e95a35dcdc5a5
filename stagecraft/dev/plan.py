"""What `stagecraft dev` runs, from a resolved environment: pure, no I/O.

Each service gets a dev role (``infra``, ``backend``, ``frontend`` or ``skip``: its
``dev:`` field, or the default of :func:`dev_role`). Infra services run as
containers; the backend and frontend dev processes serve the routes of the services
with their role, and Traefik routes each route's host and path to them with the
same rules a deploy renders (spec/cli/dev.md).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stagecraft.config.schema import ResolvedEnvironment
from stagecraft.errors import PlanError

INFRA, BACKEND, FRONTEND, SKIP = "infra", "backend", "frontend", "skip"
PROCESS_ROLES = (BACKEND, FRONTEND)
LOOPBACK = "127.0.0.1"
ENCORE_DEV = "encore run --port {port}"


@dataclass(frozen=True)
class DevProcess:
    """A dev server the supervisor runs: the backend or the frontend."""

    name: str
    command: str  # run by /bin/sh -c, in its own process group
    cwd: Path
    port: int
    services: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)  # holds secrets: never logged
    url: str | None = None  # HTTPS URL of its first route through Traefik


@dataclass(frozen=True)
class DevRoute:
    service: str
    host: str
    path: str
    target: str  # http://127.0.0.1:<port> of a process or an infra container


@dataclass(frozen=True)
class DevInfra:
    service: str
    port: int | None  # published on 127.0.0.1 at the same number; None: not published


@dataclass(frozen=True)
class DevPlan:
    project: str
    environment: str
    roles: Mapping[str, str]
    infra: tuple[DevInfra, ...]
    processes: tuple[DevProcess, ...]
    routes: tuple[DevRoute, ...]
    https_port: int
    http_port: int
    api_port: int

    @property
    def route_hosts(self) -> tuple[str, ...]:
        return tuple(sorted({route.host for route in self.routes}))

    @property
    def compose_project(self) -> str:
        return f"{self.project}-dev"

    def url(self, host: str) -> str:
        return f"https://{host}" + ("" if self.https_port == 443 else f":{self.https_port}")


def dev_role(env: ResolvedEnvironment, name: str) -> str:
    """The service's ``dev:`` role, or its default."""
    service = env.services[name]
    if service.dev is not None:
        return service.dev
    if service.stateful or service.image is not None:
        return INFRA
    if service.from_ is not None:
        return SKIP
    frontend = env.providers.frontend
    workdir = getattr(frontend, "workdir", None) if frontend is not None else None
    if service.build is not None and workdir is not None and \
            _same_dir(service.build.context, workdir):
        return FRONTEND
    return BACKEND


def _same_dir(a: str, b: str) -> bool:
    return Path(a.rstrip("/") or ".").as_posix().lstrip("./") == \
        Path(b.rstrip("/") or ".").as_posix().lstrip("./")


def plan_dev(env: ResolvedEnvironment, project_dir: Path, secrets: Mapping[str, str],
             free_port: Callable[[], int], *, https_port: int | None = None,
             http_port: int | None = None) -> DevPlan:
    """The dev plan of ``env``. ``secrets``: the values of the services' secrets;
    ``free_port``: a new free port on 127.0.0.1 at each call."""
    roles = {name: dev_role(env, name) for name in sorted(env.services)}
    https = https_port or free_port()
    http = http_port or free_port()
    api = free_port()
    infra = tuple(DevInfra(name, env.services[name].port)
                  for name, role in roles.items() if role == INFRA)
    processes: list[DevProcess] = []
    targets: dict[str, str] = {}
    for role in PROCESS_ROLES:
        served = tuple(name for name, r in roles.items() if r == role)
        if not served:
            continue
        port = free_port()
        first = _first_route_host(env, served)
        url = None if first is None else f"https://{first}" + (
            "" if https == 443 else f":{https}")
        processes.append(DevProcess(
            name=role, command=_command(env, role, served, port),
            cwd=_workdir(env, role, project_dir), port=port, services=served,
            env=_process_env(env, role, served, secrets, port, url), url=url))
        for name in served:
            targets[name] = f"http://{LOOPBACK}:{port}"
    for item in infra:
        if item.port is not None:
            targets[item.service] = f"http://{LOOPBACK}:{item.port}"
    routes = []
    for name, role in roles.items():
        for route in env.services[name].routes:
            if role == SKIP:
                continue
            if name not in targets:
                raise PlanError(
                    f"service {name!r} has routes, but `stagecraft dev` runs it as infra "
                    "without a port to route to",
                    hint=f"give services.{name} a port, or set `dev: skip` on it")
            routes.append(DevRoute(name, env.route_host(route), route.path, targets[name]))
    return DevPlan(project=env.project.name, environment=env.name, roles=roles,
                   infra=infra, processes=tuple(processes), routes=tuple(routes),
                   https_port=https, http_port=http, api_port=api)


def _first_route_host(env: ResolvedEnvironment, served: tuple[str, ...]) -> str | None:
    for name in served:
        for route in env.services[name].routes:
            return env.route_host(route)
    return None


def _command(env: ResolvedEnvironment, role: str, served: tuple[str, ...], port: int) -> str:
    provider = env.providers.backend if role == BACKEND else env.providers.frontend
    command = getattr(provider, "dev", None) if provider is not None else None
    if provider is not None and provider.kind == "encore-ts" and not command:
        command = ENCORE_DEV
    if not command:
        field_name = f"providers.{role}"
        raise PlanError(
            f"`stagecraft dev` runs service(s) {', '.join(served)} in the {role} dev process, "
            f"but {field_name} has no dev command",
            hint=f"set {field_name}: {{kind: generic, dev: \"<command>\"}} in stagecraft.yml, "
                 f"or mark the service(s) `dev: infra` or `dev: skip`")
    # {port} lets a command that takes no PORT variable name its port.
    return command.replace("{port}", str(port))


def _workdir(env: ResolvedEnvironment, role: str, project_dir: Path) -> Path:
    provider = env.providers.backend if role == BACKEND else env.providers.frontend
    workdir = getattr(provider, "workdir", None) if provider is not None else None
    directory = (project_dir / workdir) if workdir else project_dir
    return directory.resolve()


def _process_env(env: ResolvedEnvironment, role: str, served: tuple[str, ...],
                 secrets: Mapping[str, str], port: int, url: str | None) -> dict[str, str]:
    """What a deploy would give the served services' containers (env: and secrets),
    plus where to listen and the public URL."""
    values: dict[str, str] = {}
    origin: dict[str, str] = {}
    for name in served:
        service = env.services[name]
        pairs = [(key, env_text(value)) for key, value in service.env.items()]
        for secret in service.secrets:
            if secret not in secrets:
                raise PlanError(
                    f"service {name!r} needs secret {secret}, but the secrets provider has "
                    f"no value for it (environment {env.name!r})",
                    hint=f"add {secret} to the secrets of environment {env.name!r} "
                         f"(providers.secrets: {env.providers.secrets.kind})")
            pairs.append((secret, secrets[secret]))
        for key, value in pairs:
            if key in values and values[key] != value:
                raise PlanError(
                    f"the {role} dev process serves services {origin[key]!r} and {name!r}, "
                    f"which set {key} to different values",
                    hint=f"give {key} one value in both, or run one of them as `dev: infra`")
            values[key], origin[key] = value, name
    values.update({"PORT": str(port), "HOST": LOOPBACK})
    if url is not None:
        values["STAGECRAFT_DEV_URL"] = url
    return values


def env_text(value: object) -> str:
    """An env: value as the process sees it (YAML booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def command_argv(command: str) -> list[str]:
    """How the supervisor runs a dev command: through /bin/sh, so `npm run dev` and
    `A=1 make dev` work as typed."""
    return ["/bin/sh", "-c", f"exec {command}" if _simple(command) else command]


def _simple(command: str) -> bool:
    # One program with arguments: exec it, so the process group's leader is the
    # program itself and its exit code is the one reported.
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    return bool(words) and "=" not in words[0] and \
        not any(ch in command for ch in ";&|<>()$`\n")
