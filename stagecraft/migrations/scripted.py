"""Helpers shared by the engines whose container command is a shell script that
prints marked JSON lines (drizzle, prisma)."""

from __future__ import annotations

import json
from typing import Any


def parse_marks(stdout: str, mark: str) -> list[dict[str, Any]]:
    """The JSON objects the script printed after ``mark`` on a line, in order."""
    marks = []
    for line in stdout.splitlines():
        at = line.find(mark)
        if at < 0:
            continue
        try:
            value = json.loads(line[at + len(mark):])
        except ValueError:
            continue
        if isinstance(value, dict):
            marks.append(value)
    return marks


def in_image(image: str | None) -> str:
    """How an error names the image a command ran in."""
    return f"image {image}" if image else "the migration image"
