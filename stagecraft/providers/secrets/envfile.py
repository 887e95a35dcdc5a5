"""Secrets from a dotenv file per environment (`.env.{env}` beside stagecraft.yml).

The format is the common dotenv subset: ``NAME=value`` lines, ``#`` comments,
blank lines, an optional ``export`` prefix, and values in single quotes (taken
literally) or double quotes (``\\n``, ``\\"`` and ``\\\\`` escapes). No
interpolation: a secret is exactly what the file says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from stagecraft.errors import SecretMissing, StateError

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_DOUBLE_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def parse_dotenv(text: str, source: str = "<text>") -> dict[str, str]:
    """Parse dotenv text; a malformed line is an error naming file and line."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise StateError(
                f"{source}:{number}: not a NAME=value line",
                hint="write one secret per line as NAME=value (quote values with spaces)",
            )
        name, raw = match.groups()
        values[name] = _unquote(raw, f"{source}:{number}")
    return values


def _unquote(raw: str, where: str) -> str:
    if raw[:1] == "'":
        if len(raw) < 2 or not raw.endswith("'"):
            raise StateError(f"{where}: unclosed single quote", hint="close the quote")
        return raw[1:-1]
    if raw[:1] == '"':
        if len(raw) < 2 or not raw.endswith('"') or raw.endswith('\\"') and not raw.endswith('\\\\"'):
            raise StateError(f"{where}: unclosed double quote", hint="close the quote")
        return re.sub(r"\\(.)", lambda m: _DOUBLE_ESCAPES.get(m.group(1), "\\" + m.group(1)),
                      raw[1:-1])
    # Unquoted: a ` #` starts a comment.
    return re.split(r"\s+#", raw, maxsplit=1)[0]


class EnvfileSecrets:
    """Reads ``path`` (``{env}`` replaced by the environment name) relative to the project."""

    kind = "envfile"

    def __init__(self, project_dir: Path, environment: str, path: str = ".env.{env}") -> None:
        self.file = Path(project_dir) / path.replace("{env}", environment)

    def resolve(self, names: Iterable[str]) -> Mapping[str, str]:
        wanted = sorted(set(names))
        if not wanted:
            return {}
        if not self.file.is_file():
            raise SecretMissing(
                f"secrets {', '.join(wanted)} are needed but {self.file} does not exist",
                hint=f"create {self.file} (mode 0600) with one NAME=value line per secret",
            )
        values = parse_dotenv(self.file.read_text(encoding="utf-8"), str(self.file))
        missing = [name for name in wanted if name not in values]
        if missing:
            raise SecretMissing(
                f"{self.file} has no value for {', '.join(missing)}",
                hint=f"add {missing[0]}=... to {self.file}",
            )
        return {name: values[name] for name in wanted}
