"""Which secrets an environment references, and whether its provider has them
(`stagecraft secrets list`, and what `secrets sync` copies). Names out, never values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stagecraft.config.schema import ResolvedEnvironment
from stagecraft.config.values import find_references
from stagecraft.errors import SecretMissing
from stagecraft.providers.secrets import resolve_secrets, secrets_provider


def referenced_secrets(env: ResolvedEnvironment) -> dict[str, list[str]]:
    """Every secret name the environment uses, with where: the dotted setting of each
    ``${secret:NAME}`` and ``services.<name>.secrets`` for service secrets."""
    found: dict[str, set[str]] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")
        elif isinstance(value, str) and "${" in value:
            for ref in find_references(value):
                if ref.kind == "secret":
                    found.setdefault(ref.name, set()).add(path)

    walk(env.model_dump(mode="json", by_alias=True), "")
    for service_name, service in env.services.items():
        for name in service.secrets:
            found.setdefault(name, set()).add(f"services.{service_name}.secrets")
    return {name: sorted(where) for name, where in sorted(found.items())}


def provider_has(env: ResolvedEnvironment, project_dir: Path,
                 names: Iterable[str]) -> dict[str, bool]:
    """Whether the secrets provider has a value for each name (values not kept)."""
    from stagecraft.log import add_secrets

    wanted = sorted(set(names))
    provider = secrets_provider(env, project_dir)
    try:
        values = provider.resolve(wanted)
        add_secrets(*[v for v in values.values() if v])
        return {name: True for name in wanted}
    except SecretMissing:
        pass
    has: dict[str, bool] = {}
    for name in wanted:
        try:
            add_secrets(*[v for v in provider.resolve([name]).values() if v])
            has[name] = True
        except SecretMissing:
            has[name] = False
    return has


def secrets_report(env: ResolvedEnvironment, project_dir: Path) -> dict[str, Any]:
    """`secrets list`: names, where each is used, whether the provider has it."""
    used = referenced_secrets(env)
    has = provider_has(env, project_dir, used)
    return {
        "environment": env.name,
        "provider": env.providers.secrets.kind,
        "secrets": [{"name": name, "used_by": where, "in_provider": has[name]}
                    for name, where in used.items()],
    }


def values_for(env: ResolvedEnvironment, project_dir: Path,
               names: Iterable[str]) -> Mapping[str, str]:
    """The provider's values of ``names`` (registered for redaction); SecretMissing
    naming every name it lacks."""
    wanted = sorted(set(names))
    has = provider_has(env, project_dir, wanted)
    missing = [name for name in wanted if not has[name]]
    if missing:
        raise SecretMissing(
            f"the secrets provider ({env.providers.secrets.kind}) of environment "
            f"'{env.name}' has no value for {', '.join(missing)}",
            hint="add them there (stagecraft secrets list shows every referenced name)")
    return resolve_secrets(env, project_dir, wanted)
