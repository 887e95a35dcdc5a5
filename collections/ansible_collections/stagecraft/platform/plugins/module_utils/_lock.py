# -*- coding: utf-8 -*-
# Copyright: stagecraft maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The deploy lock: ``<base>/lock/`` made with one atomic ``mkdir``, holding
``info.json`` (who, pid, since when, which release, why, which command).

Same format as the CLI's stagecraft/hosts/lock.py (spec/deploy/contracts.md, "Deploy lock").
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

LOCK_DIR = "lock"
INFO_FILE = "info.json"


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class LockInfo:
    """What ``lock/info.json`` holds."""

    holder: str
    pid: int
    time: str
    release: str = ""
    message: str = ""
    command: str = "deploy"

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LockInfo | None:
        """The info, or None when the text is not a lock's info (empty: being written)."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("holder"), str):
            return None
        try:
            pid = int(data.get("pid") or 0)
        except (TypeError, ValueError):
            pid = 0
        return cls(holder=data["holder"], pid=pid, time=str(data.get("time", "")),
                   release=str(data.get("release") or ""), message=str(data.get("message") or ""),
                   command=str(data.get("command") or "deploy"))

    def same_owner(self, other: LockInfo) -> bool:
        """Taken by the same holder for the same command of the same release: taking
        it again is a no-op (a rerun of the same deploy)."""
        return (self.holder, self.release, self.command) == (other.holder, other.release,
                                                             other.command)

    def describe(self) -> str:
        text = (f"held by {self.holder} (pid {self.pid}) since {self.time or 'an unknown time'} "
                f"for {self.command} of {self.release or 'no release'}")
        return f"{text}: {self.message}" if self.message else text


# Shown when the lock directory exists but its info.json is not written (yet).
UNKNOWN_HOLDER = LockInfo(holder="unknown", pid=0, time="", message="info.json is missing")


def lock_path(base_dir: str) -> str:
    return os.path.join(base_dir, LOCK_DIR)


def read_lock(base_dir: str) -> LockInfo | None:
    """Who holds the lock, or None when nobody does."""
    path = lock_path(base_dir)
    if not os.path.isdir(path):
        return None
    try:
        with open(os.path.join(path, INFO_FILE), encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return UNKNOWN_HOLDER
    return LockInfo.from_json(text) or UNKNOWN_HOLDER


def try_acquire(base_dir: str, info: LockInfo) -> bool:
    """Take the lock with one ``mkdir`` and write its info; False when it is taken."""
    path = lock_path(base_dir)
    try:
        os.mkdir(path, 0o750)
    except FileExistsError:
        return False
    write_info(base_dir, info)
    return True


def write_info(base_dir: str, info: LockInfo) -> None:
    """Replace the held lock's info.json in one rename."""
    path = lock_path(base_dir)
    temporary = os.path.join(path, f".{INFO_FILE}.{os.getpid()}")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(info.to_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, os.path.join(path, INFO_FILE))


def release_lock(base_dir: str) -> bool:
    """Remove the lock; False when there was none."""
    path = lock_path(base_dir)
    if not os.path.isdir(path):
        return False
    shutil.rmtree(path)
    return True
