"""The ``encore-ts`` backend provider (PROVIDER_BACKEND_ENCORE).

An Encore.ts app builds its own image: ``encore build docker <image:tag>``, run in
the app's directory, compiles the app on this machine and leaves the image in the
local Docker under that tag (the Encore CLI's documented self-hosting path). In
dev the app runs with ``encore run``.

Which services are the Encore app: a service whose build context is the
provider's ``workdir`` or, without ``workdir``, a service whose context holds an
``encore.app`` file. Other services with ``build:`` (a frontend, say) are built
with ``docker build`` as the generic provider does. Encore ignores ``dockerfile``,
``target`` and ``args``: it writes its own image.

The Encore CLI is looked up on PATH; nothing else changes when it is a stand-in.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from stagecraft import execs
from stagecraft.errors import CommandFailed, ConfigError, EnvironmentMissing
from stagecraft.providers.backend.base import (
    BUILD_TIMEOUT_SECONDS,
    BuildRequest,
    BuiltImage,
    DevCommand,
    LineSink,
    command_environment,
    local_image_id,
    stream,
    workdir_path,
)
from stagecraft.providers.backend.generic import docker_build

KIND = "encore-ts"
APP_FILE = "encore.app"  # marks the root of an Encore app
DEFAULT_DEV = "encore run"


def encore_build_argv(tag: str) -> list[str]:
    """The Encore CLI call that builds the app's image under ``tag``."""
    return ["encore", "build", "docker", tag]


class EncoreBackend:
    """Builds the Encore app with `encore build docker`; other services with docker build."""

    kind = KIND

    def __init__(self, workdir: str | None = None, dev: str | None = None) -> None:
        self.workdir = workdir
        self.dev = dev

    def is_encore_service(self, request: BuildRequest) -> bool:
        """Whether the service's context is the Encore app (see the module doc)."""
        if self.workdir is not None:
            return request.context_dir == workdir_path(request.project_dir, self.workdir)
        return (request.context_dir / APP_FILE).is_file()

    def build(self, request: BuildRequest, on_line: LineSink | None = None) -> BuiltImage:
        if not self.is_encore_service(request):
            docker_build(request, on_line)
        else:
            self._encore_build(request, on_line)
        image_id = local_image_id(request.tag)
        if image_id is None:
            raise CommandFailed(
                f"service '{request.service}': `encore build docker` finished but Docker has "
                f"no image {request.tag}",
                argv=encore_build_argv(request.tag),
                hint="check that the Encore CLI talks to the same Docker engine "
                "(DOCKER_HOST) as stagecraft",
            )
        return BuiltImage(service=request.service, push_ref=request.tag, pull_ref=request.tag,
                          image_id=image_id)

    def dev_command(self, project_dir: Path) -> DevCommand:
        return DevCommand(shell=self.dev or DEFAULT_DEV,
                          cwd=workdir_path(project_dir, self.workdir))

    def _encore_build(self, request: BuildRequest, on_line: LineSink | None) -> None:
        encore = shutil.which("encore")
        if encore is None:
            raise EnvironmentMissing(
                f"service '{request.service}' is an Encore app, but the Encore CLI "
                "(`encore`) is not on PATH",
                hint="install the Encore CLI on this machine (and in CI), or build this "
                "service with providers.backend.kind: generic and a Dockerfile",
            )
        app_dir = request.context_dir
        if not app_dir.is_dir():
            raise ConfigError(
                f"service '{request.service}': the Encore app directory {app_dir} does not exist",
                hint=f"fix services.{request.service}.build.context or providers.backend.workdir",
            )
        execs.run([encore, *encore_build_argv(request.tag)[1:]], cwd=app_dir,
                  env=command_environment({}), timeout=BUILD_TIMEOUT_SECONDS,
                  on_line=stream(on_line),
                  hint="read the Encore output above; run `encore build docker IMAGE:TAG` "
                  "in the app directory to debug")
