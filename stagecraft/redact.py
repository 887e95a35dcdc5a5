"""Redaction of secret values from text and JSON-like data.

One small object, shared by everything that writes or shows output that may
echo a secret: the ansible-runner driver (job events, stdout, artifacts), and
anything else that runs commands. It knows the secret *values*; it never
prints them, not even in its repr.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "********"


class Redactor:
    """Replaces every occurrence of known secret values with ``********``.

    Values are matched literally, longest first (so a secret that contains
    another is masked whole), in their raw form and in their JSON-escaped
    form (how a value with quotes, backslashes or newlines appears inside
    JSON text such as a module result echoed to stdout). Empty values are
    ignored: masking "" would mean nothing and masking every gap.
    """

    __slots__ = ("_count", "_pattern")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = {v for v in secrets if isinstance(v, str) and v != ""}
        forms: set[str] = set()
        for value in values:
            forms.add(value)
            escaped = json.dumps(value)[1:-1]
            if escaped != value:
                forms.add(escaped)
            ascii_escaped = json.dumps(value, ensure_ascii=True)[1:-1]
            if ascii_escaped != value:
                forms.add(ascii_escaped)
        self._count = len(values)
        ordered = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __repr__(self) -> str:  # never show the values
        return f"Redactor({self._count} value{'s' if self._count != 1 else ''})"

    def contains(self, text: str) -> bool:
        """True when ``text`` holds any secret value (in any form we mask)."""
        return self._pattern is not None and self._pattern.search(text) is not None

    def text(self, text: str) -> str:
        """``text`` with every secret value masked."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def data(self, value: Any) -> Any:
        """A copy of ``value`` (dicts, lists, tuples, strings) with secrets masked.

        Keys are masked too: a module result may use a value as a key.
        Numbers, booleans and None pass through unchanged.
        """
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.data(k): self.data(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.data(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.data(v) for v in value)
        return value

    def data_in_place(self, value: dict[str, Any]) -> None:
        """Mask secrets inside a dict without replacing the dict object.

        ansible-runner hands its event handler the very dict it writes to
        job_events afterwards, so masking in place is what keeps secrets out
        of the artifacts on disk.
        """
        if self._pattern is None:
            return
        masked = self.data(value)
        value.clear()
        value.update(masked)
