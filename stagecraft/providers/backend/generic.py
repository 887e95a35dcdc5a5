"""The ``generic`` backend provider (PROVIDER_BACKEND_GENERIC).

Without a ``build`` command it runs ``docker build`` with the service's build
settings. With one, it runs that command (``sh -c``) in ``workdir`` with the tag
to produce in ``STAGECRAFT_IMAGE`` (and the service, context, Dockerfile, target,
project, environment and release in other STAGECRAFT_* variables); the command
must leave an image under exactly that tag.
"""

from __future__ import annotations

from pathlib import Path

from stagecraft import execs
from stagecraft.errors import CommandFailed
from stagecraft.providers.backend.base import (
    BUILD_TIMEOUT_SECONDS,
    BuildRequest,
    BuiltImage,
    DevCommand,
    LineSink,
    check_context,
    command_environment,
    docker_build_argv,
    local_image_id,
    stream,
    workdir_path,
)

KIND = "generic"


class GenericBackend:
    """Builds with `docker build`, or with the configured command."""

    kind = KIND

    def __init__(self, build: str | None = None, dev: str | None = None,
                 workdir: str | None = None) -> None:
        self.build_command = build
        self.dev = dev
        self.workdir = workdir

    def build(self, request: BuildRequest, on_line: LineSink | None = None) -> BuiltImage:
        if self.build_command:
            self._run_command(request, on_line)
        else:
            docker_build(request, on_line)
        image_id = local_image_id(request.tag)
        if image_id is None:
            raise CommandFailed(
                f"service '{request.service}': the build command finished but Docker has "
                f"no image {request.tag}",
                argv=["sh", "-c", self.build_command or ""],
                hint="the build command must tag its image with $STAGECRAFT_IMAGE "
                "(e.g. docker build -t \"$STAGECRAFT_IMAGE\" .)",
            )
        return BuiltImage(service=request.service, push_ref=request.tag, pull_ref=request.tag,
                          image_id=image_id)

    def dev_command(self, project_dir: Path) -> DevCommand | None:
        if not self.dev:
            return None
        return DevCommand(shell=self.dev, cwd=workdir_path(project_dir, self.workdir))

    def _run_command(self, request: BuildRequest, on_line: LineSink | None) -> None:
        cwd = workdir_path(request.project_dir, self.workdir)
        execs.run(["sh", "-c", self.build_command], cwd=cwd,
                  env=command_environment(request.command_env()),
                  timeout=BUILD_TIMEOUT_SECONDS, on_line=stream(on_line),
                  hint="fix the command in providers.backend.build, or run it by hand "
                  "with STAGECRAFT_IMAGE set to see why it fails")


def docker_build(request: BuildRequest, on_line: LineSink | None = None) -> None:
    """`docker build` of a request's context, tagged ``request.tag``."""
    check_context(request)
    execs.run(docker_build_argv(request), cwd=request.context_dir,
              timeout=BUILD_TIMEOUT_SECONDS, on_line=stream(on_line),
              hint="read the build output above; run the same docker build by hand to debug")
