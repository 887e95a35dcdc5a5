"""The ``generic`` frontend provider (PROVIDER_FRONTEND_GENERIC).

Any frontend whose dev server and build are commands (Vite, Next, ...): ``dev``
runs in `stagecraft dev`, ``build`` (if set) runs once before `stagecraft build`
builds images, both with ``sh -c`` in ``workdir``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from stagecraft import execs
from stagecraft.providers.backend.base import (
    BUILD_TIMEOUT_SECONDS,
    DevCommand,
    LineSink,
    command_environment,
    stream,
    workdir_path,
)

KIND = "generic"


class GenericFrontend:
    """A frontend driven by its own dev and build commands."""

    kind = KIND

    def __init__(self, dev: str | None = None, build: str | None = None,
                 workdir: str | None = None) -> None:
        self.dev = dev
        self.build = build
        self.workdir = workdir

    def dev_command(self, project_dir: Path) -> DevCommand | None:
        if not self.dev:
            return None
        return DevCommand(shell=self.dev, cwd=workdir_path(project_dir, self.workdir))

    def build_assets(self, project_dir: Path, env: Mapping[str, str],
                     on_line: LineSink | None = None) -> bool:
        if not self.build:
            return False
        execs.run(["sh", "-c", self.build], cwd=workdir_path(project_dir, self.workdir),
                  env=command_environment(env), timeout=BUILD_TIMEOUT_SECONDS,
                  on_line=stream(on_line),
                  hint="fix the command in providers.frontend.build, or run it by hand in "
                  "the frontend's workdir to see why it fails")
        return True
