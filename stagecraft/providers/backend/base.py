"""The backend provider interface (PROVIDER_BACKEND_INTERFACE).

A backend provider turns one service's source into a Docker image on this
machine, tagged with the exact reference stagecraft asks for. It does not push:
the build core (stagecraft.deploy.build) tags, pushes and reads digests for every
provider the same way. It also says how the backend runs in `stagecraft dev`.

Providers know the service's ``Build`` settings from stagecraft.yml, the project
directory and the tag; nothing else of the config.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from stagecraft import execs
from stagecraft.config.schema import Build
from stagecraft.errors import ConfigError

#: Receives one line of build output at a time (without the newline).
LineSink = Callable[[str], None]

#: Where a service's image comes from (BuiltImage.source).
SOURCE_BUILD = "build"  # built from source by a backend provider
SOURCE_IMAGE = "image"  # a prebuilt image named in stagecraft.yml (`image:`)
SOURCE_FROM = "from"  # the image of another service (`from:`)


@dataclass(frozen=True)
class BuildRequest:
    """What a backend provider needs to build one service's image."""

    service: str
    build: Build  # context, dockerfile, args, target (stagecraft.config.schema.Build)
    project_dir: Path  # the directory of stagecraft.yml; relative paths start here
    tag: str  # the full reference the image must carry when build() returns
    project: str = ""
    environment: str = ""
    release_id: str = ""

    @property
    def context_dir(self) -> Path:
        """The build context as an absolute path."""
        return (Path(self.project_dir) / self.build.context).resolve()

    @property
    def dockerfile_path(self) -> Path | None:
        """The Dockerfile as an absolute path (relative to the context), or None for the default."""
        if self.build.dockerfile is None:
            return None
        return (self.context_dir / self.build.dockerfile).resolve()

    def command_env(self) -> dict[str, str]:
        """Variables that tell a build command what to build (STAGECRAFT_*)."""
        dockerfile = self.dockerfile_path
        return {
            "STAGECRAFT_IMAGE": self.tag,
            "STAGECRAFT_SERVICE": self.service,
            "STAGECRAFT_CONTEXT": str(self.context_dir),
            "STAGECRAFT_DOCKERFILE": str(dockerfile) if dockerfile else "",
            "STAGECRAFT_TARGET": self.build.target or "",
            "STAGECRAFT_PROJECT": self.project,
            "STAGECRAFT_ENV": self.environment,
            "STAGECRAFT_RELEASE": self.release_id,
        }


@dataclass(frozen=True)
class BuiltImage:
    """The image of one service: where the build pushed it and where hosts pull it.

    A provider returns it with ``push_ref == pull_ref == tag`` and no digest; the
    build core fills in the registry references and the digest after pushing.
    """

    service: str
    push_ref: str | None  # the tag pushed from this machine; None for `image:` services
    pull_ref: str  # what hosts pull: <pull server>/<repo>:<release>@sha256:..., or the image
    digest: str | None = None  # sha256:... of the pushed manifest; None when not pushed
    source: str = SOURCE_BUILD  # build | image | from
    from_service: str | None = None  # for `from:` services, the service that built the image
    image_id: str | None = None  # the local image id (sha256:...) when built here

    def to_dict(self) -> dict[str, Any]:
        """The image as JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class DevCommand:
    """A command that runs a part of the app in `stagecraft dev`."""

    shell: str  # run with `sh -c`
    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class BackendProvider(Protocol):
    """Builds service images (and names the dev command) for one kind of backend."""

    kind: str

    def build(self, request: BuildRequest, on_line: LineSink | None = None) -> BuiltImage:
        """Build the image of ``request.service`` and leave it on this machine's Docker
        under ``request.tag``. Raises CommandFailed (or another StagecraftError)."""
        ...

    def dev_command(self, project_dir: Path) -> DevCommand | None:
        """How the backend runs in `stagecraft dev`, or None when not configured."""
        ...


# --- helpers shared by the providers ----------------------------------------------

#: Builds can be long (dependencies, compilers); a stuck one must still end.
BUILD_TIMEOUT_SECONDS = 30 * 60


def workdir_path(project_dir: Path, workdir: str | None) -> Path:
    """A provider's ``workdir`` setting as an absolute path (the project dir by default)."""
    return (Path(project_dir) / (workdir or ".")).resolve()


def stream(on_line: LineSink | None) -> execs.LineCallback | None:
    """Adapt a LineSink to execs' (stream, line) callback."""
    if on_line is None:
        return None
    return lambda _stream, line: on_line(line)


def arg_value(value: object) -> str:
    """A build argument as Docker expects it (YAML true -> "true", not "True")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def docker_build_argv(request: BuildRequest) -> list[str]:
    """The `docker build` command line for a request's Build settings."""
    argv = ["docker", "build", "--tag", request.tag]
    dockerfile = request.dockerfile_path
    if dockerfile is not None:
        argv += ["--file", str(dockerfile)]
    if request.build.target:
        argv += ["--target", request.build.target]
    for name, value in request.build.args.items():
        argv += ["--build-arg", f"{name}={arg_value(value)}"]
    argv.append(str(request.context_dir))
    return argv


def check_context(request: BuildRequest) -> None:
    """Fail early, with the setting to fix, when the context or Dockerfile is missing."""
    context = request.context_dir
    if not context.is_dir():
        raise ConfigError(
            f"service '{request.service}': build context {context} is not a directory",
            hint=f"fix services.{request.service}.build.context (relative to stagecraft.yml)",
        )
    dockerfile = request.dockerfile_path or context / "Dockerfile"
    if not dockerfile.is_file():
        raise ConfigError(
            f"service '{request.service}': no Dockerfile at {dockerfile}",
            hint=f"add it, or set services.{request.service}.build.dockerfile "
            "(relative to the context)",
        )


def local_image_id(tag: str) -> str | None:
    """The id of the local image ``tag``, or None when Docker has no such image."""
    found = execs.run(["docker", "image", "inspect", "--format", "{{.Id}}", tag],
                      check=False, timeout=60)
    if not found.ok:
        return None
    return found.stdout.strip() or None


def command_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment plus ``extra`` (commands need PATH, HOME, DOCKER_HOST)."""
    return {**os.environ, **extra}
