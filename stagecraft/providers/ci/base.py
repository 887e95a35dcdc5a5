"""The CI provider interface: what a project's workflows need in, workflow files out.

A CI provider renders files; it never writes them, runs git or calls its service
(`ci init` writes, `ci run` talks to the service). The request holds everything taken
from stagecraft.yml, so rendering is a pure function and tests compare its output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


def ssh_key_secret(environment: str) -> str:
    """The CI secret that holds an environment's SSH private key (CI secret names are
    letters, digits and _)."""
    return "STAGECRAFT_SSH_KEY_" + environment.upper().replace("-", "_")


@dataclass(frozen=True)
class SecretVariable:
    """One variable a CI step gets: ``variable`` (what stagecraft reads) from the CI
    secret ``secret``."""

    variable: str
    secret: str


@dataclass(frozen=True)
class EnvironmentTarget:
    """An environment CI plans and deploys: its secrets and its SSH key's secret."""

    name: str
    secrets: tuple[SecretVariable, ...]
    ssh_key_secret: str


@dataclass(frozen=True)
class WorkflowRequest:
    """What the workflows of one project need.

    ``working_directory``: the directory of stagecraft.yml relative to the repository
    root ("." at the root); ``config_file``: its file name there. ``environments``: in
    deploy order (each deploys after the one before). ``install``: the pip requirement
    that installs stagecraft, or ``requirements``: a requirements file (relative to the
    repository root) that does.
    """

    project: str
    working_directory: str
    config_file: str
    environments: tuple[EnvironmentTarget, ...]
    branch: str
    python_version: str
    install: str
    requirements: str | None = None
    stagecraft_version: str = ""
    all_environments: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class WorkflowFile:
    """A rendered file: ``path`` relative to the repository root, and its text."""

    path: str
    text: str
    purpose: str


@runtime_checkable
class CIProvider(Protocol):
    """Renders a project's CI workflows (plan on pull requests, deploy, rollback)."""

    kind: str

    def workflows(self, request: WorkflowRequest) -> list[WorkflowFile]:
        """Every workflow file of the project; the same request gives the same text."""
        ...
