"""Small value types of stagecraft.yml: durations, references, names.

Each has a parse function that raises ValueError with a message written for
users, so the same words appear whether pydantic or a cross-field check finds
the problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, Literal

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_PATTERN = r"^\d+(\.\d+)?(ms|s|m|h|d)$"


def parse_duration(value: object) -> float:
    """Seconds in a duration string such as ``500ms``, ``10s``, ``2m``, ``1h``."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(
            f"expected a duration with a unit, like 10s or 500ms, got {value!r}"
        )
    match = _DURATION.match(value)
    if not match:
        raise ValueError(
            f"expected a duration with a unit (ms, s, m, h, d), like 10s or 500ms, got {value!r}"
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


# ${secret:NAME} and ${env:NAME}; `$${` writes a literal `${`.
_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_REF_BODY = re.compile(r"^(secret|env):([A-Za-z_][A-Za-z0-9_]*)$")
REFERENCE_PATTERN = r"^\$\{(secret|env):[A-Za-z_][A-Za-z0-9_]*\}$"


@dataclass(frozen=True)
class Reference:
    """A ``${secret:NAME}`` or ``${env:NAME}`` reference inside a string."""

    kind: Literal["secret", "env"]
    name: str
    start: int
    end: int

    def __str__(self) -> str:
        return f"${{{self.kind}:{self.name}}}"


def find_references(text: str) -> Iterator[Reference]:
    """Every reference in ``text``; raises ValueError for a malformed one."""
    for match in _REF.finditer(text):
        if match.group(0) == "$${":
            continue
        body = match.group(1)
        parsed = _REF_BODY.match(body.strip())
        if not parsed:
            raise ValueError(
                f"'${{{body}}}' is not a reference stagecraft understands: write "
                "${secret:NAME} (from the secrets provider) or ${env:NAME} (from the "
                "environment), or $${ for a literal '${'"
            )
        yield Reference(parsed.group(1), parsed.group(2), match.start(), match.end())
    # An unclosed `${` would otherwise pass silently as literal text.
    stripped = _REF.sub("", text)
    if "${" in stripped:
        raise ValueError("unclosed '${' (write $${ for a literal '${')")


def require_reference(value: str) -> str:
    """A setting that holds a secret must be exactly one reference, never a literal."""
    refs = list(find_references(value))
    if len(refs) != 1 or refs[0].start != 0 or refs[0].end != len(value):
        raise ValueError(
            "this setting holds a secret, so it must be a reference like "
            "${secret:NAME} or ${env:NAME}, not a literal value"
        )
    return value


DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DNS_LABEL_PATTERN = DNS_LABEL.pattern
_HOSTNAME_LABEL = re.compile(r"^(\*|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)$")


def check_hostname(name: str) -> str:
    """A DNS name for a route: labels of a-z, 0-9 and '-', an optional leading '*'."""
    if not name or len(name) > 253:
        raise ValueError(f"'{name}' is not a valid host name (1 to 253 characters)")
    labels = name.lower().rstrip(".").split(".")
    for index, label in enumerate(labels):
        if not _HOSTNAME_LABEL.match(label) or (label == "*" and index > 0):
            raise ValueError(
                f"'{name}' is not a valid host name: label '{label}' must be 1-63 of "
                "a-z, 0-9 and '-', not starting or ending with '-'"
            )
    return name
