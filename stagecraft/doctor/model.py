"""What one check of `stagecraft doctor` found."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """The verdict of one check."""

    OK = "ok"
    MISSING = "missing"  # something needed is not there: doctor exits non-zero
    WRONG = "wrong"  # there, but the wrong version or state: doctor exits non-zero
    TODO = "todo"  # not there yet, and made by the first command that needs it


FAILING = (Status.MISSING, Status.WRONG)


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report: where, what, the verdict, and what to do."""

    scope: str  # "controller", or a host name
    name: str  # what was checked: "docker engine", "clock skew"
    status: Status
    detail: str  # what was found: "20.10.24", "not installed"
    fix: str = ""  # what to do about it (empty when ok)

    @property
    def failing(self) -> bool:
        return self.status in FAILING

    def to_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "check": self.name, "status": str(self.status),
                "detail": self.detail, "fix": self.fix or None}


def ok(scope: str, name: str, detail: str) -> Check:
    return Check(scope, name, Status.OK, detail)


def missing(scope: str, name: str, detail: str, fix: str) -> Check:
    return Check(scope, name, Status.MISSING, detail, fix)


def wrong(scope: str, name: str, detail: str, fix: str) -> Check:
    return Check(scope, name, Status.WRONG, detail, fix)


def todo(scope: str, name: str, detail: str, fix: str) -> Check:
    return Check(scope, name, Status.TODO, detail, fix)


def version_tuple(text: str) -> tuple[int, ...]:
    """``(2, 26, 1)`` from ``v2.26.1`` or ``2.26.1+ds1``; ``()`` when no number leads."""
    numbers: list[int] = []
    for part in text.strip().lstrip("v").split("."):
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        numbers.append(int(digits))
        if len(digits) != len(part):
            break
    return tuple(numbers)
