"""Build and push the images of a release (CLI_BUILD).

``build_images`` builds every selected service that has ``build:`` with the
environment's backend provider, tags it ``<push server>/<project>-<service>:<release>``,
pushes it and reads its digest, so hosts pull exactly what was built:
``<pull server>/<project>-<service>:<release>@sha256:...``. Services with ``from:``
reuse the image of the service they name; services with ``image:`` are not built.

The push and pull servers may differ: a cloud's own registry may be pushed to on
127.0.0.1 from this machine and pulled from at its private address by the hosts.
Registry credentials live only in a temporary Docker config for the push.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stagecraft import execs, log
from stagecraft.config.schema import ResolvedEnvironment
from stagecraft.errors import CommandFailed, ConfigError, ProviderError, UsageError
from stagecraft.providers.cloud import CloudProvider

if TYPE_CHECKING:  # the backends load when something is built, not for a plan or a no-op
    from stagecraft.providers.backend import BackendProvider, BuiltImage

_log = log.get_logger("build")

#: Receives (service, line) for every line of build and push output.
OutputSink = Callable[[str, str], None]

PUSH_TIMEOUT_SECONDS = 15 * 60
LOGIN_TIMEOUT_SECONDS = 120
#: Lines of output a build failure shows.
FAILURE_TAIL_LINES = 15

_PUSHED_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")


class BuildFailed(CommandFailed):
    """Building or pushing one service's image failed."""

    def __init__(self, service: str, action: str, cause: CommandFailed) -> None:
        tail = [line for line in cause.output_tail.splitlines() if line.strip()]
        tail = tail[-FAILURE_TAIL_LINES:]
        message = f"service '{service}': {action} failed"
        if cause.returncode is not None:
            message += f" (exit code {cause.returncode})"
        if tail:
            message += "; last lines of output:\n" + "\n".join(f"    {line}" for line in tail)
        else:
            message += f": {cause.message}"
        super().__init__(message, argv=cause.argv, returncode=cause.returncode,
                         output_tail=cause.output_tail, hint=cause.hint)
        self.service = service


@dataclass(frozen=True)
class RegistryTarget:
    """Where images go: pushed from this machine, pulled by the hosts."""

    push_server: str  # e.g. registry.example.com, or 127.0.0.1:5443 for a cloud's own
    pull_server: str  # usually push_server; e.g. 10.201.7.2:5000 for a cloud's own
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_pem: str | None = field(default=None, repr=False)  # the CA the hosts trust it with

    def to_dict(self) -> dict[str, Any]:
        """Without the password and CA: safe to print."""
        return {"push_server": self.push_server, "pull_server": self.pull_server,
                "username": self.username}


def repository(server: str | None, project: str, service: str) -> str:
    """``<server>/<project>-<service>``, or ``<project>-<service>`` without a registry."""
    name = f"{project}-{service}"
    return f"{server.rstrip('/')}/{name}" if server else name


# --- which services to build ---------------------------------------------------------


def select_services(env: ResolvedEnvironment, services: Sequence[str] | None) -> list[str]:
    """The services asked for, in the config's order; all of them when none are named."""
    available = list(env.services)
    if not services:
        return available
    unknown = [name for name in services if name not in env.services]
    if unknown:
        raise UsageError(
            f"no service named {', '.join(repr(n) for n in unknown)} in environment "
            f"'{env.name}'",
            hint=f"services: {', '.join(available)}",
        )
    wanted = set(services)
    return [name for name in available if name in wanted]


def services_to_build(env: ResolvedEnvironment, selected: Sequence[str]) -> list[str]:
    """Services whose image is built from source: the selected ones with ``build:``
    and the ``from:`` targets of the selected ones (even when not selected)."""
    needed: set[str] = set()
    for name in selected:
        service = env.services[name]
        source = service.from_ if service.from_ is not None else name
        if env.services[source].build is not None:
            needed.add(source)
    return [name for name in env.services if name in needed]


# --- the build --------------------------------------------------------------------


def backend_for(env: ResolvedEnvironment) -> BackendProvider:
    """The environment's backend provider, built with its settings from stagecraft.yml."""
    from stagecraft.providers.backend import get_backend_provider

    settings = env.providers.backend.model_dump(exclude={"kind"}, exclude_none=True)
    return get_backend_provider(env.providers.backend.kind, settings)


def build_images(
    env: ResolvedEnvironment,
    project_dir: Path,
    release_id: str,
    target: RegistryTarget | None,
    *,
    services: Sequence[str] | None = None,
    push: bool = True,
    on_line: OutputSink | None = None,
    backend: BackendProvider | None = None,
    cloud: CloudProvider | None = None,
) -> dict[str, BuiltImage]:
    """Build (and push) the images of ``services`` (all by default) for ``release_id``.

    Returns one BuiltImage per selected service plus every service built for them
    (a ``from:`` target), in the config's order. ``target`` may be None with
    ``push=False`` (images are then tagged ``<project>-<service>:<release>``) or
    when nothing is to be built (only ``image:`` services). ``cloud``: the
    environment's cloud, which may build the base images the Dockerfiles name.
    Raises UsageError for unknown services, BuildFailed when a build or push fails.
    """
    from stagecraft.providers.backend import SOURCE_FROM, SOURCE_IMAGE, BuildRequest, BuiltImage

    selected = select_services(env, services)
    to_build = services_to_build(env, selected)
    if push and target is None and to_build:
        raise ConfigError(
            f"environment '{env.name}' has no registry to push images to",
            hint="set project.registry in stagecraft.yml, or build with --no-push",
        )
    project_dir = Path(project_dir).resolve()
    server = target.push_server if target is not None else None

    built: dict[str, BuiltImage] = {}
    if to_build:
        backend = backend or backend_for(env)
        if cloud is not None:
            _ensure_base_images(cloud, env, project_dir, to_build)
        _build_frontend_assets(env, project_dir, release_id, on_line)
        for name in to_build:
            request = BuildRequest(
                service=name,
                build=env.services[name].build,
                project_dir=project_dir,
                tag=f"{repository(server, env.project.name, name)}:{release_id}",
                project=env.project.name,
                environment=env.name,
                release_id=release_id,
            )
            _log.info("building %s as %s", name, request.tag)
            try:
                built[name] = backend.build(request, _sink(on_line, name))
            except CommandFailed as failure:
                raise BuildFailed(name, f"building {request.tag}", failure) from failure
        if push:
            assert target is not None
            with registry_login(target) as docker_config:
                for name, image in built.items():
                    built[name] = push_image(image, target, docker_config,
                                             _sink(on_line, name))

    result: dict[str, BuiltImage] = {}
    for name, service in env.services.items():
        if name in built:
            result[name] = built[name]
        elif name not in selected:
            continue
        elif service.image is not None:
            result[name] = BuiltImage(service=name, push_ref=None, pull_ref=service.image,
                                      source=SOURCE_IMAGE)
        elif service.from_ is not None:
            origin = built.get(service.from_)
            if origin is None:  # the target uses `image:`
                origin = BuiltImage(service=service.from_, push_ref=None,
                                    pull_ref=env.services[service.from_].image or "",
                                    source=SOURCE_IMAGE)
            result[name] = replace(origin, service=name, source=SOURCE_FROM,
                                   from_service=service.from_)
    return result


def _ensure_base_images(cloud: CloudProvider, env: ResolvedEnvironment, project_dir: Path,
                        services: Sequence[str]) -> None:
    """Some clouds build the base images they offer apps (``capabilities.base_images``)
    instead of pulling them: make those a Dockerfile names exist."""
    offered = cloud.capabilities.base_images
    if not offered:
        return
    wanted: set[str] = set()
    for name in services:
        build = env.services[name].build
        if build is None:
            continue
        dockerfile = project_dir / build.context / (build.dockerfile or "Dockerfile")
        try:
            text = dockerfile.read_text(encoding="utf-8")
        except OSError:
            continue  # the backend reports a missing Dockerfile
        wanted.update(repo for repo in offered if repo in text)
    for repo in sorted(wanted):
        cloud.ensure_base_image(repo)


def _sink(on_line: OutputSink | None, service: str) -> Callable[[str], None]:
    if on_line is None:
        return lambda line: _log.debug("%s: %s", service, line)
    return lambda line: on_line(service, line)


def _build_frontend_assets(env: ResolvedEnvironment, project_dir: Path, release_id: str,
                           on_line: OutputSink | None) -> None:
    """Run the frontend's build command (if any) once, before images are built."""
    frontend = env.providers.frontend
    if frontend is None:
        return
    from stagecraft.providers.frontend import get_frontend_provider

    provider = get_frontend_provider(
        frontend.kind, frontend.model_dump(exclude={"kind"}, exclude_none=True))
    variables = {"STAGECRAFT_PROJECT": env.project.name, "STAGECRAFT_ENV": env.name,
                 "STAGECRAFT_RELEASE": release_id}
    try:
        provider.build_assets(project_dir, variables, _sink(on_line, "frontend"))
    except CommandFailed as failure:
        raise BuildFailed("frontend", "the frontend build command", failure) from failure


# --- registry -----------------------------------------------------------------------


@contextmanager
def registry_login(target: RegistryTarget) -> Iterator[str | None]:
    """A temporary Docker config dir logged in to ``target`` (removed afterwards), so
    credentials never land in the user's ~/.docker. None when there is no username:
    the push then uses the ambient Docker config."""
    if not target.username:
        yield None
        return
    if target.password:
        log.add_secrets(target.password)
    with tempfile.TemporaryDirectory(prefix="stagecraft-docker-") as config_dir:
        os.chmod(config_dir, 0o700)
        try:
            execs.run(["docker", "--config", config_dir, "login", "--username",
                       target.username, "--password-stdin", target.push_server],
                      input=target.password or "", secrets=[target.password or ""],
                      timeout=LOGIN_TIMEOUT_SECONDS,
                      hint="check the registry address and credentials "
                      "(project.registry, or the cloud's own registry)")
        except CommandFailed as failure:
            raise ProviderError(
                f"cannot log in to registry {target.push_server} as {target.username}: "
                f"{failure.message}",
                hint=failure.hint,
            ) from failure
        yield config_dir


def push_image(image: BuiltImage, target: RegistryTarget, docker_config: str | None,
               on_line: Callable[[str], None] | None = None) -> BuiltImage:
    """Push ``image.push_ref``; return the image with its digest and pull reference."""
    assert image.push_ref is not None
    config = ["--config", docker_config] if docker_config else []
    try:
        pushed = execs.run(["docker", *config, "push", image.push_ref],
                           secrets=[target.password or ""], timeout=PUSH_TIMEOUT_SECONDS,
                           on_line=(lambda _s, line: on_line(line)) if on_line else None,
                           hint=f"check that the registry {target.push_server} is up and "
                           "accepts pushes from this machine")
    except CommandFailed as failure:
        raise BuildFailed(image.service, f"pushing {image.push_ref}", failure) from failure
    digest = pushed_digest(pushed.stdout + "\n" + pushed.stderr) or repo_digest(image.push_ref)
    if digest is None:
        raise ProviderError(
            f"service '{image.service}': pushed {image.push_ref} but could not read its digest",
            hint="check `docker image inspect` of the image; the registry may not "
            "support content digests",
        )
    name, _, tag = image.push_ref.rpartition(":")
    pull_name = target.pull_server.rstrip("/") + name[len(target.push_server.rstrip("/")):]
    return replace(image, pull_ref=f"{pull_name}:{tag}@{digest}", digest=digest)


def pushed_digest(output: str) -> str | None:
    """The manifest digest `docker push` reports (``<tag>: digest: sha256:... size: N``)."""
    found = _PUSHED_DIGEST.findall(output)
    return found[-1] if found else None


def repo_digest(ref: str) -> str | None:
    """The digest Docker recorded for ``ref``'s repository after a push, or None."""
    name = ref.rpartition(":")[0]
    found = execs.run(["docker", "image", "inspect", "--format",
                       "{{range .RepoDigests}}{{println .}}{{end}}", ref], check=False,
                      timeout=60)
    for line in found.stdout.splitlines():
        repo, _, digest = line.strip().partition("@")
        if repo == name and digest.startswith("sha256:"):
            return digest
    return None


def registry_target(env: ResolvedEnvironment, project_dir: Path,
                    cloud: CloudProvider) -> RegistryTarget:
    """The registry of an environment: its cloud's own (when the cloud runs one),
    or project.registry."""
    if cloud.capabilities.registry:
        return _cloud_registry(env, project_dir, cloud)
    registry = env.project.registry
    if registry is None:
        raise ConfigError(
            f"environment '{env.name}' has no registry: project.registry is not set",
            hint="set project.registry (server, username, password) in stagecraft.yml",
        )
    password = None
    if registry.password is not None:
        password = _resolve_password(env, project_dir, registry.password)
    return RegistryTarget(push_server=registry.server, pull_server=registry.server,
                          username=registry.username, password=password)


def _resolve_password(env: ResolvedEnvironment, project_dir: Path, reference: str) -> str:
    """The registry password: ${env:NAME} from the environment, ${secret:NAME} from
    the secrets provider; registered for redaction either way."""
    from stagecraft.providers.secrets import resolve_reference

    return resolve_reference(env, project_dir, reference)


def _cloud_registry(env: ResolvedEnvironment, project_dir: Path,
                    cloud: CloudProvider) -> RegistryTarget:
    from stagecraft.hosts.fleet import fleet_spec, state_dir

    access = cloud.registry_access(fleet_spec(env), state_dir(project_dir, env.name))
    if access.password:
        log.add_secrets(access.password)
    return RegistryTarget(push_server=access.push_server, pull_server=access.pull_server,
                          username=access.username, password=access.password,
                          ca_pem=access.ca_pem)
