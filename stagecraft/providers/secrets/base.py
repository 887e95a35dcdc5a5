"""The secrets provider interface: names in, values out, nothing written anywhere."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol


class SecretsProvider(Protocol):
    """Resolves ``${secret:NAME}`` names for one environment of a project."""

    kind: str

    def resolve(self, names: Iterable[str]) -> Mapping[str, str]:
        """The value of every name, or SecretMissing naming each that has none."""
        ...
