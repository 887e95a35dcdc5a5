"""Per-host Compose files (DEPLOY_COMPOSE_GEN, CORE_COMPOSE; spec/deploy/compose.md).

One Compose file per host holds only the services placed on that host, in the
shape spec/deploy/contracts.md fixes: the labels the rollout module routes
services by, a healthcheck that fails once the drain file exists, a config hash per service,
the shared external network ``stagecraft``, log rotation, restart policy.

Pure: the result depends only on the arguments, never on the release id, so an
unchanged service keeps its config hash (and its containers) from release to
release. Secret values go only into the env files, never into compose.yml.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from stagecraft.config.schema import Healthcheck, Host, ResolvedEnvironment, Service
from stagecraft.config.values import find_references, parse_duration
from stagecraft.errors import PlanError, SecretMissing
from stagecraft.render.state import RenderInput, ServiceState, Strategy

SHARED_NETWORK = "stagecraft"
PRIVATE_ENTRYPOINT = "private"
VOLUME_MOUNT_ROOT = "/mnt"  # where the volumes role mounts a host's block volumes
CONFIG_HASH_LABEL = "stagecraft.config-hash"
# What the rollout module needs to write a routed service's servers into Traefik's
# file provider: the Traefik service's name, the container port, and the load
# balancer's settings but its servers (JSON).
TRAEFIK_SERVICE_LABEL = "stagecraft.traefik.service"
TRAEFIK_PORT_LABEL = "stagecraft.traefik.port"
TRAEFIK_BALANCER_LABEL = "stagecraft.traefik.load-balancer"
CONFIG_HASH_LENGTH = 16
LOGGING = {"driver": "json-file", "options": {"max-size": "10m", "max-file": "5"}}
RESTART = "unless-stopped"

_MOUNT = re.compile(r"^(?P<source>[^:]+):(?P<target>/[^:]*)(?::(?P<mode>ro|rw))?$")


class RenderError(PlanError):
    """A host's files cannot be rendered from what the release provides."""


@dataclass(frozen=True)
class ComposeRender:
    """The Compose side of one host: the document, env files, desired services."""

    document: dict[str, Any]  # what compose.yml holds
    env_files: dict[str, str]  # service -> content of env/<service>.env (secrets only)
    services: dict[str, ServiceState]


# --------------------------------------------------------------------- names


def project_name(env: ResolvedEnvironment) -> str:
    """The Compose project (and Docker-provider constraint): ``<project>-<env>``."""
    return f"{env.project.name}-{env.name}"


def router_name(env: ResolvedEnvironment, service: str) -> str:
    """Name of a service's router on its hosts' private entrypoint, and of the Traefik
    service (its containers) the router sends to."""
    return f"{project_name(env)}-{service}"


def load_balancer_settings(env: ResolvedEnvironment, service: str) -> dict[str, Any]:
    """The host Traefik's load balancer of a routed service, but its servers (the
    rollout module adds those): the Host header passed on and, with an HTTP
    healthcheck, Traefik's own check of each container, which takes a failing one out
    between rollouts."""
    definition = env.services[service]
    settings: dict[str, Any] = {"passHostHeader": True}
    check = definition.healthcheck
    if check is not None and check.path is not None:
        settings["healthCheck"] = {"path": check.path,
                                   "hostname": health_hostname(env, service),
                                   "interval": go_duration(check.interval),
                                   "timeout": go_duration(check.timeout)}
    return settings


def strategy_of(service: Service) -> Strategy:
    """stateful beats rolling (has routes) beats recreate."""
    if service.stateful:
        return "stateful"
    if service.routes:
        return "rolling"
    return "recreate"


def services_on(env: ResolvedEnvironment, host: Host) -> list[str]:
    """Names of the services placed on ``host``, sorted."""
    # The host's own roles decide (as hosts_for_service does), without scanning every
    # host of the environment for every service: rendering stays linear in hosts.
    roles = set(host.roles)
    return sorted(name for name, service in env.services.items() if roles.intersection(service.on))


def private_services(env: ResolvedEnvironment) -> dict[str, str]:
    """Stateful services with a port and no routes (databases), by the host that runs
    them: they are published on that host's private address, and services on other
    hosts reach them by name (spec/deploy/contracts.md, "Private services")."""
    found: dict[str, str] = {}
    for name, service in sorted(env.services.items()):
        if service.stateful and service.port is not None and not service.routes:
            hosts = env.hosts_for_service(name)
            if hosts:
                found[name] = hosts[0].name
    return found


# --------------------------------------------------------------------- rules


def route_rule(host: str, path: str) -> str:
    """The Traefik rule of one route: ``Host(...)``, plus ``PathPrefix(...)`` off ``/``."""
    for part in (host, path):
        if "`" in part:
            raise RenderError(f"route {host}{path} contains a backtick",
                              hint="remove the backtick from the route")
    rule = f"Host(`{host}`)"
    if path != "/":
        rule += f" && PathPrefix(`{path}`)"
    return rule


def health_hostname(env: ResolvedEnvironment, service: str) -> str:
    """The Host header of the edge's health checks of ``service``.

    The first route served at ``/``: its Host rule on the private entrypoint
    matches the health path. A service whose routes all have a path prefix
    would not match its own health path that way, so it answers an internal
    name no public router serves: ``<service>.<project>-<env>.internal``.
    """
    for route in env.services[service].routes:
        if route.path == "/":
            return env.route_host(route)
    return f"{service}.{project_name(env)}.internal"


def private_rule(env: ResolvedEnvironment, service: str) -> str:
    """The rule of a service's router on the private entrypoint of its hosts."""
    definition = env.services[service]
    rules = [route_rule(env.route_host(route), route.path) for route in definition.routes]
    health_host = health_hostname(env, service)
    if _http_healthcheck(definition) and health_host not in {
            env.route_host(r) for r in definition.routes if r.path == "/"}:
        rules.append(route_rule(health_host, "/"))
    if len(rules) == 1:
        return rules[0]
    return " || ".join(f"({rule})" if " && " in rule else rule for rule in rules)


def _http_healthcheck(service: Service) -> bool:
    return service.healthcheck is not None and service.healthcheck.path is not None


# --------------------------------------------------------------------- values


def go_duration(text: str) -> str:
    """A config duration (``2m``, ``500ms``, ``1d``) as Compose/Traefik read it."""
    seconds = parse_duration(text)
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def _literal(text: str, where: str) -> str:
    """A config string as the literal text it stands for.

    Render cannot resolve references (it is pure): secrets belong in
    ``secrets:``. ``$${`` is the config's escape for a literal ``${``.
    """
    try:
        refs = list(find_references(text))
    except ValueError as exc:  # the loader rejects these; kept for direct callers
        raise RenderError(f"{where}: {exc}") from exc
    if refs:
        raise RenderError(
            f"{where} holds the reference {refs[0]}; references are not expanded there",
            hint="pass secrets with the service's secrets: list, and plain values as text")
    return text.replace("$${", "${")


def _compose_text(text: str) -> str:
    """Text that Compose must not interpolate: ``$`` is written ``$$``."""
    return text.replace("$", "$$")


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def dotenv_line(name: str, value: str, *, service: str) -> str:
    """``NAME=value`` that every Compose v2 reads back as exactly ``value``.

    Single quotes keep a value raw (no escapes, no ``$`` expansion, newlines
    kept). A value with a ``'`` is double-quoted with ``\\``, ``"`` and newline
    escaped, which only works without ``$`` (expansion differs between Compose
    versions). A value ending in ``\\`` is taken raw by no quoting at all, so it
    goes unquoted when nothing in it needs quotes. Anything else is refused
    rather than written in a form some Compose would read differently.
    """
    if "\x00" in value:
        return _undotenvable(name, service, "a NUL character")
    if "'" not in value and not value.endswith("\\"):
        return f"{name}='{value}'"
    if value.endswith("\\"):
        if re.fullmatch(r"[^\s'\"#$][^\n\r#$]*", value):
            return f"{name}={value}"
        return _undotenvable(name, service, "a trailing backslash together with a line "
                                            "break, '#', '$', or a leading space or quote")
    if "$" in value or value.endswith('"'):
        return _undotenvable(name, service, "a single quote together with '$' or a "
                                            "trailing double quote")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{name}="{escaped}"'


def _undotenvable(name: str, service: str, what: str) -> str:
    raise RenderError(
        f"secret {name} of service {service!r} holds {what}, which Compose env "
        "files cannot carry unchanged",
        hint=f"change the value of {name} in the secrets provider")


# ------------------------------------------------------------------- services


def image_of(env: ResolvedEnvironment, service: str, images: Mapping[str, str]) -> str:
    """The image reference a service runs: its own, or that of the service in ``from:``."""
    source = env.services[service].from_ or service
    image = images.get(source)
    if not image:
        via = f" (it runs the image of {source!r})" if source != service else ""
        raise RenderError(
            f"no image for service {source!r}{via}",
            hint="build the release first (every service needs an image reference)")
    return image


def healthcheck_of(service_name: str, service: Service, check: Healthcheck) -> dict[str, Any]:
    """The Compose healthcheck: the service's command, or an HTTP probe of its port.
    It decides when new containers are ready; Traefik's servers follow the rollout."""
    if check.command is not None:
        words = [_literal(word, f"services.{service_name}.healthcheck.command")
                 for word in check.command]
        probe = shlex.join(words)
    else:
        if service.port is None:
            raise RenderError(f"service {service_name!r} has an HTTP healthcheck but no port",
                              hint=f"set services.{service_name}.port")
        url = shlex.quote(f"http://127.0.0.1:{service.port}{check.path}")
        # Images ship different HTTP clients (or none): use the first one found.
        probe = (f"if command -v curl >/dev/null 2>&1; then curl -fsS -o /dev/null {url}; "
                 f"elif command -v wget >/dev/null 2>&1; then wget -q -O /dev/null {url}; "
                 "elif command -v python3 >/dev/null 2>&1; then python3 -c "
                 "'import sys, urllib.request; urllib.request.urlopen(sys.argv[1])' "
                 f"{url}; "
                 "else echo 'no curl, wget or python3 in the image for the healthcheck' >&2; "
                 "exit 1; fi")
    rendered = {
        "test": ["CMD-SHELL", _compose_text(probe)],
        "interval": go_duration(check.interval),
        "timeout": go_duration(check.timeout),
        "retries": check.retries,
        "start_period": go_duration(check.start_period),
    }
    # While it starts, probe every second (Docker 25+): a new container of a rolling
    # update takes traffic as soon as it answers, not one `interval` later.
    if parse_duration(check.start_period) > 0 and parse_duration(check.interval) > 1:
        rendered["start_interval"] = "1s"
    return rendered


def volume_directory(volume: str, service: str) -> str:
    """The directory of ``service`` on block volume ``volume``: /mnt/<volume>/<service>."""
    return f"{VOLUME_MOUNT_ROOT}/{volume}/{service}"


def _mounts(env: ResolvedEnvironment, host: Host, name: str,
            service: Service) -> tuple[list[Any], dict[str, dict[str, Any]]]:
    """A service's mounts, and the named volumes they need declared at the top level.

    A volume the host carries as block storage binds the service's own directory
    on it, ``/mnt/<volume>/<service>`` (the volumes role makes it; a filesystem's
    root holds lost+found, which postgres refuses as its data directory), and
    never creates it: unmounted, the service fails to start instead of writing to
    the empty mount point. Any other named volume is a Docker volume named
    ``<project>-<env>-<volume>``.
    """
    mounts: list[Any] = []
    declared: dict[str, dict[str, Any]] = {}
    for mount in service.volumes:
        match = _MOUNT.match(mount)
        if match is None:
            raise RenderError(
                f"services.{name}.volumes: {mount!r} is not a mount",
                hint="write 'volume:/path' or '/host/path:/path', with an optional ':ro'")
        source, target, mode = match.group("source", "target", "mode")
        suffix = f":{mode}" if mode else ""
        if source.startswith(("/", ".")):
            mounts.append(_compose_text(f"{source}:{target}{suffix}"))
        elif source in host.volumes:
            bind: dict[str, Any] = {
                "type": "bind", "source": _compose_text(volume_directory(source, name)),
                "target": _compose_text(target), "bind": {"create_host_path": False}}
            if mode == "ro":
                bind["read_only"] = True
            mounts.append(bind)
        else:
            declared[source] = {"name": f"{project_name(env)}-{source}"}
            mounts.append(_compose_text(f"{source}:{target}{suffix}"))
    return mounts, declared


def env_file_of(env: ResolvedEnvironment, name: str, secrets: Mapping[str, str]) -> str | None:
    """Content of ``env/<name>.env``: the service's secrets, sorted; None without any."""
    service = env.services[name]
    if not service.secrets:
        return None
    lines = [f"# Secrets of service {name} ({project_name(env)}). Do not share."]
    for secret in sorted(set(service.secrets)):
        if secret in service.env:
            raise RenderError(
                f"service {name!r} sets {secret} both in env: and in secrets:",
                hint=f"keep {secret} in one of them")
        if secret not in secrets:
            raise SecretMissing(
                f"service {name!r} needs secret {secret}, but the secrets provider has no "
                f"value for it (environment {env.name!r})",
                hint=f"add {secret} to the secrets of environment {env.name!r} "
                     f"(providers.secrets: {env.providers.secrets.kind})")
        lines.append(dotenv_line(secret, secrets[secret], service=name))
    return "\n".join(lines) + "\n"


def service_config_hash(definition: Mapping[str, Any], env_file: str | None,
                volumes: Mapping[str, Any]) -> str:
    """Hash of a service as rendered: definition (without the hash label), env file,
    and the top-level declarations of the volumes it mounts."""
    payload = {"service": definition, "env_file": env_file or "", "volumes": volumes}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:CONFIG_HASH_LENGTH]


def service_definition(env: ResolvedEnvironment, host: Host, name: str, inp: RenderInput
                       ) -> tuple[dict[str, Any], str | None, dict[str, dict[str, Any]]]:
    """One service's Compose definition (with its config-hash label), its env file
    content, and the named volumes it needs declared."""
    service = env.services[name]
    strategy = strategy_of(service)
    definition: dict[str, Any] = {
        "image": image_of(env, name, inp.images),
        "restart": RESTART,
        "stop_grace_period": go_duration(service.stop_grace),
        "logging": json.loads(json.dumps(LOGGING)),  # a copy: callers may change it
        "deploy": {"replicas": service.replicas},
    }
    if service.command is not None:
        where = f"services.{name}.command"
        if isinstance(service.command, str):
            definition["command"] = _compose_text(_literal(service.command, where))
        else:
            definition["command"] = [_compose_text(_literal(word, where))
                                     for word in service.command]
    if service.env:
        definition["environment"] = {
            key: _compose_text(_literal(_env_value(value), f"services.{name}.env.{key}"))
            for key, value in sorted(service.env.items())}
    env_file = env_file_of(env, name, inp.secrets)
    if env_file is not None:
        definition["env_file"] = [f"env/{name}.env"]
    if service.healthcheck is not None:
        definition["healthcheck"] = healthcheck_of(name, service, service.healthcheck)
    private = private_services(env)
    if private.get(name) == host.name:
        address = inp.private_ips.get(host.name)
        if address:  # published on the private network only
            definition["ports"] = [f"{address}:{service.port}:{service.port}"]
    others = {other: inp.private_ips[where] for other, where in private.items()
              if where != host.name and other != name and where in inp.private_ips}
    if others:  # on the private service's own host, Compose's DNS finds it
        definition["extra_hosts"] = [f"{other}:{address}"
                                     for other, address in sorted(others.items())]
    mounts, volumes = _mounts(env, host, name, service)
    if mounts:
        definition["volumes"] = mounts
    labels = {
        "stagecraft.project": project_name(env),
        "stagecraft.service": name,
        "stagecraft.strategy": strategy,
    }
    if service.routes:
        if service.port is None:
            raise RenderError(f"service {name!r} has routes but no port",
                              hint=f"set services.{name}.port")
        definition["networks"] = ["default", SHARED_NETWORK]
        # Not Traefik labels: the rollout module writes the service's servers (these
        # containers) into Traefik's file provider, so it decides when one stops
        # taking requests instead of waiting for a healthcheck to fail.
        labels.update({
            TRAEFIK_SERVICE_LABEL: router_name(env, name),
            TRAEFIK_PORT_LABEL: str(service.port),
            TRAEFIK_BALANCER_LABEL: json.dumps(load_balancer_settings(env, name),
                                               sort_keys=True, separators=(",", ":")),
        })
    definition["labels"] = {key: _compose_text(value) for key, value in labels.items()}
    labels[CONFIG_HASH_LABEL] = service_config_hash(definition, env_file, volumes)
    definition["labels"] = {key: _compose_text(value) for key, value in sorted(labels.items())}
    return definition, env_file, volumes


def render_compose(env: ResolvedEnvironment, host: Host, inp: RenderInput) -> ComposeRender:
    """The Compose document, env files and desired services of ``host``."""
    services: dict[str, Any] = {}
    env_files: dict[str, str] = {}
    states: dict[str, ServiceState] = {}
    volumes: dict[str, dict[str, Any]] = {}
    for name in services_on(env, host):
        definition, env_file, declared = service_definition(env, host, name, inp)
        services[name] = definition
        if env_file is not None:
            env_files[name] = env_file
        volumes.update(declared)
        service = env.services[name]
        states[name] = ServiceState(
            name=name, image=definition["image"],
            config_hash=definition["labels"][CONFIG_HASH_LABEL],
            strategy=strategy_of(service), replicas=service.replicas)
    document: dict[str, Any] = {"name": project_name(env), "services": services}
    if any(SHARED_NETWORK in d.get("networks", ()) for d in services.values()):
        document["networks"] = {SHARED_NETWORK: {"external": True, "name": SHARED_NETWORK}}
    if volumes:
        document["volumes"] = dict(sorted(volumes.items()))
    return ComposeRender(document=document, env_files=env_files, services=states)


# ----------------------------------------------------------------------- YAML


# libyaml's emitter when PyYAML has it: the same text, several times faster.
_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[misc, valid-type]
    """Plain YAML: no anchors/aliases for repeated values."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(data: Any, header: str = "") -> str:
    """Stable YAML: sorted keys, block style, long lines never folded."""
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                     allow_unicode=True, width=1_000_000)
    return header + body


def compose_yaml(env: ResolvedEnvironment, host: Host, document: Mapping[str, Any]) -> str:
    """compose.yml's text: a header naming what it is, then the document."""
    header = (f"# Compose project {project_name(env)} on host {host.name}, rendered by "
              "stagecraft.\n# Do not edit: the next deploy replaces this file.\n")
    return to_yaml(dict(document), header)
