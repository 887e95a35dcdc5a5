"""CI providers: the workflows that plan, deploy and roll back a project from CI, and
GitHub's REST API (github_api.py) for `secrets sync` and `ci run`.

``workflow_request(loaded, ...)`` gathers from stagecraft.yml what the workflows
need (environments, the secrets each references, where the file is in its
repository); ``ci_provider(kind)`` renders them. Both are pure: `ci init` writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from stagecraft.config.schema import ResolvedEnvironment
from stagecraft.config.values import find_references
from stagecraft.errors import ConfigError, UsageError
from stagecraft.providers.ci.base import (
    CIProvider,
    EnvironmentTarget,
    SecretVariable,
    WorkflowFile,
    WorkflowRequest,
    ssh_key_secret,
)

__all__ = ["CIProvider", "EnvironmentTarget", "SecretVariable", "WorkflowFile",
           "WorkflowRequest", "ci_provider", "workflow_request", "secret_variables",
           "repository_root", "default_environments"]

CI_GROUP = "stagecraft.providers.ci"
CI_BUILTIN = {"github": "stagecraft.providers.ci.github:GithubActions"}


def ci_provider(kind: str) -> CIProvider:
    """The CI provider ``kind``: registered under stagecraft.providers.ci, or built in."""
    from stagecraft.providers.registry import load_provider

    registered = {ep.name: ep for ep in entry_points(group=CI_GROUP)}
    return load_provider("ci", kind, None, registered=registered, builtin=CI_BUILTIN,
                         group=CI_GROUP, protocol=CIProvider,
                         interface="kind, workflows(request)")


def secret_variables(env: ResolvedEnvironment) -> tuple[SecretVariable, ...]:
    """Every reference the environment makes, as the variable stagecraft reads it from
    in CI and the CI secret of the reference's name: services' ``secrets:`` and each
    ``${secret:NAME}`` (read with the env provider's prefix) and ``${env:NAME}`` (read
    as is) anywhere in the resolved environment."""
    settings = env.providers.secrets
    prefix = getattr(settings, "prefix", "") if settings.kind == "env" else ""
    found: dict[str, SecretVariable] = {}
    names = {name for service in env.services.values() for name in service.secrets}
    env_names: set[str] = set()
    for text in _strings(env.model_dump(mode="json", by_alias=True)):
        for ref in find_references(text):
            (names if ref.kind == "secret" else env_names).add(ref.name)
    for name in names:
        found[prefix + name] = SecretVariable(prefix + name, name)
    for name in env_names:
        found.setdefault(name, SecretVariable(name, name))
    for item in found.values():
        _check_secret_name(item.secret, env.name)
    return tuple(found[key] for key in sorted(found))


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str) and "${" in value:
        yield value


def _check_secret_name(name: str, environment: str) -> None:
    # GitHub's rules for secret names (letters, digits, _; not GITHUB_; no leading digit).
    if name.upper().startswith("GITHUB_"):
        raise ConfigError(
            f"environment '{environment}' references the secret {name}, but CI secrets "
            "cannot have names that start with GITHUB_",
            hint=f"rename {name} in stagecraft.yml (and in the secrets store)")


def default_environments(loaded, disposable: Callable[[ResolvedEnvironment], bool]
                         ) -> list[str]:
    """The environments CI deploys when none are named: all but those whose hosts are
    ``disposable`` (its cloud's capability: containers on the machine that runs
    stagecraft, which a CI runner would make anew on every run)."""
    return [name for name, env in loaded.environments.items() if not disposable(env)]


def repository_root(project_dir: Path) -> Path:
    """Where .github/ goes: the git work tree that holds the project (its closest parent
    with a .git), else the project directory itself."""
    project_dir = Path(project_dir).resolve()
    for directory in (project_dir, *project_dir.parents):
        if (directory / ".git").exists():
            return directory
    return project_dir


def workflow_request(loaded, *, environments: Sequence[str] | None, branch: str,
                     python_version: str, install: str, requirements: str | None = None,
                     stagecraft_version: str = "",
                     disposable: Callable[[ResolvedEnvironment], bool] = lambda env: False,
                     ) -> WorkflowRequest:
    """What the workflows of ``loaded`` (a LoadedConfig) need; UsageError when the
    environments asked for are unknown, or none is left to deploy. ``disposable``: whether
    an environment's hosts are disposable (see :func:`default_environments`)."""
    chosen = list(environments) if environments else default_environments(loaded, disposable)
    if not chosen:
        listed = ", ".join(loaded.environments)
        raise UsageError(
            "no environment to deploy from CI: every environment of "
            f"{loaded.path.name} ({listed}) runs on disposable hosts, containers on the "
            "machine that runs stagecraft",
            hint="name the environments CI deploys, in order: --environments "
                 + ",".join(loaded.environments))
    unknown = [name for name in chosen if name not in loaded.environments]
    if unknown:
        raise UsageError(
            f"--environments: {', '.join(unknown)} not defined in {loaded.path.name}",
            hint=f"environments: {', '.join(loaded.environments)}")
    if len(set(chosen)) != len(chosen):
        raise UsageError("--environments: an environment is named twice",
                         hint="name each environment once, in deploy order")
    root = repository_root(loaded.project_dir)
    relative = Path(loaded.project_dir).resolve().relative_to(root).as_posix()
    targets = tuple(
        EnvironmentTarget(name, secret_variables(loaded.environments[name]),
                          ssh_key_secret(name))
        for name in chosen)
    return WorkflowRequest(
        project=loaded.config.project.name, working_directory=relative or ".",
        config_file=loaded.path.name, environments=targets, branch=branch,
        python_version=python_version, install=install, requirements=requirements,
        stagecraft_version=stagecraft_version,
        all_environments=tuple(loaded.environments))
