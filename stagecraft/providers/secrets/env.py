"""Secrets from the process environment: what a CI job hands stagecraft.

A CI system keeps secrets in its own store and passes them to a step as
environment variables; this provider reads them there, so nothing is written to
a file on the runner. An empty variable counts as missing: GitHub Actions
expands a secret that is not set to the empty string.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from stagecraft.errors import SecretMissing

#: Overrides providers.secrets of stagecraft.yml for one run: ``env`` selects this
#: provider (what the generated CI workflows set), without editing the file.
OVERRIDE_VARIABLE = "STAGECRAFT_SECRETS"


class EnvSecrets:
    """Reads ``<prefix><NAME>`` for each ``${secret:NAME}``."""

    kind = "env"

    def __init__(self, prefix: str = "", environ: Mapping[str, str] | None = None) -> None:
        self.prefix = prefix
        self.environ = os.environ if environ is None else environ

    def variable(self, name: str) -> str:
        """The environment variable that holds secret ``name``."""
        return f"{self.prefix}{name}"

    def resolve(self, names: Iterable[str]) -> Mapping[str, str]:
        wanted = sorted(set(names))
        missing = [self.variable(n) for n in wanted if not self.environ.get(self.variable(n))]
        if missing:
            listed = ", ".join(missing)
            raise SecretMissing(
                f"environment variable{'s' if len(missing) > 1 else ''} {listed} "
                f"{'are' if len(missing) > 1 else 'is'} not set or empty (secrets provider env)",
                hint=f"export {missing[0]}=... before running stagecraft; in GitHub Actions, "
                "add a secret of that name (Settings > Secrets and variables > Actions, or the "
                "environment's secrets) and pass it in the step's env:",
            )
        return {name: self.environ[self.variable(name)] for name in wanted}
