"""Secrets providers: where ``${secret:NAME}`` values come from.

``resolve_secrets(env, project_dir, names)`` is what the rest of stagecraft calls;
it also registers every value with the log redactor, so a value that reaches a
log line or an error message by accident is masked.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from stagecraft.config.schema import ResolvedEnvironment
from stagecraft.config.values import find_references
from stagecraft.errors import ProviderError, SecretMissing
from stagecraft.providers.secrets.base import SecretsProvider
from stagecraft.providers.secrets.env import OVERRIDE_VARIABLE, EnvSecrets
from stagecraft.providers.secrets.envfile import EnvfileSecrets, parse_dotenv

__all__ = ["SecretsProvider", "EnvfileSecrets", "EnvSecrets", "parse_dotenv",
           "secrets_provider", "resolve_secrets", "resolve_reference", "needed_secrets",
           "OVERRIDE_VARIABLE"]

#: Values of STAGECRAFT_SECRETS that override providers.secrets.
OVERRIDE_KINDS = ("env",)


def secrets_provider(env: ResolvedEnvironment, project_dir: Path) -> SecretsProvider:
    """The environment's secrets provider: STAGECRAFT_SECRETS=env when set (CI jobs pass
    secrets as variables without editing stagecraft.yml), else providers.secrets."""
    settings = env.providers.secrets
    override = os.environ.get(OVERRIDE_VARIABLE, "").strip()
    if override:
        if override not in OVERRIDE_KINDS:
            raise ProviderError(
                f"{OVERRIDE_VARIABLE}={override!r} is not a secrets provider this variable "
                "can select",
                hint=f"set {OVERRIDE_VARIABLE}=env, or unset it to use providers.secrets "
                "of stagecraft.yml",
            )
        # The configured prefix still applies when the file chose env too.
        return EnvSecrets(getattr(settings, "prefix", "") if settings.kind == "env" else "")
    if settings.kind == "envfile":
        return EnvfileSecrets(project_dir, env.name, settings.path)
    if settings.kind == "env":
        return EnvSecrets(settings.prefix)
    raise ProviderError(
        f"secrets provider '{settings.kind}' is not available in this version",
        hint="use providers.secrets: {kind: envfile} or {kind: env}",
    )


def needed_secrets(env: ResolvedEnvironment) -> set[str]:
    """Names of every secret the environment's services ask for."""
    return {name for service in env.services.values() for name in service.secrets}


def resolve_secrets(env: ResolvedEnvironment, project_dir: Path,
                    names: Iterable[str] | None = None) -> Mapping[str, str]:
    """Values of ``names`` (default: every service secret), registered for redaction."""
    from stagecraft.log import add_secrets

    wanted = needed_secrets(env) if names is None else set(names)
    values = secrets_provider(env, project_dir).resolve(wanted) if wanted else {}
    add_secrets(*[v for v in values.values() if v])
    return values


def resolve_reference(env: ResolvedEnvironment, project_dir: Path, reference: str) -> str:
    """The value of one ``${secret:NAME}`` or ``${env:NAME}`` reference."""
    from stagecraft.log import add_secrets

    refs = list(find_references(reference))
    if len(refs) != 1:
        raise ProviderError(f"'{reference}' is not a single reference",
                            hint="write ${secret:NAME} or ${env:NAME}")
    ref = refs[0]
    if ref.kind == "env":
        value = os.environ.get(ref.name)
        if value is None:
            raise SecretMissing(f"environment variable {ref.name} is not set ({reference})",
                                hint=f"export {ref.name}=... before running stagecraft")
    else:
        value = secrets_provider(env, project_dir).resolve([ref.name])[ref.name]
    add_secrets(value)
    return value
