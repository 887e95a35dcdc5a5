"""The frontend provider interface (PROVIDER_FRONTEND_INTERFACE).

A frontend provider says how the frontend's dev server runs in `stagecraft dev`
and, when configured, builds the frontend's assets before images are built (so
a Dockerfile can copy them). Images themselves are built like any service's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from stagecraft.providers.backend.base import DevCommand, LineSink


@runtime_checkable
class FrontendProvider(Protocol):
    """Runs the frontend in dev and builds its assets."""

    kind: str

    def dev_command(self, project_dir: Path) -> DevCommand | None:
        """How the dev server runs, or None when not configured."""
        ...

    def build_assets(self, project_dir: Path, env: Mapping[str, str],
                     on_line: LineSink | None = None) -> bool:
        """Build the frontend's assets; False when there is nothing to build.
        ``env`` adds STAGECRAFT_* variables to the command's environment."""
        ...
