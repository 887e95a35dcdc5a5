"""The deploy lock: one directory on the environment's primary host.

``mkdir`` is atomic on every filesystem a host has, so whoever creates
``<base>/lock`` holds the lock; ``lock/info.json`` says who, since when, for
which release and why. The same format is read and written by the
``stagecraft.platform.deploy_lock`` module for teams running the playbooks
directly. See spec/deploy/contracts.md.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from stagecraft.errors import LockHeld, StateError
from stagecraft.hosts.remote import RemoteHost, quote
from stagecraft.identity import performer, process_gone
from stagecraft.paths import HOST_ROOT

POLL_SECONDS = 2.0


def base_dir(project: str, environment: str) -> str:
    """The environment's directory on a host."""
    return f"{HOST_ROOT}/{project}/{environment}"


def lock_dir(project: str, environment: str) -> str:
    return f"{base_dir(project, environment)}/lock"


@dataclass(frozen=True)
class LockInfo:
    """What ``lock/info.json`` holds."""

    holder: str
    pid: int
    time: str
    release: str
    message: str = ""
    command: str = "deploy"

    @classmethod
    def new(cls, release: str, message: str = "", command: str = "deploy") -> LockInfo:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return cls(holder=performer(), pid=os.getpid(), time=now, release=release,
                   message=message, command=command)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LockInfo:
        try:
            data = json.loads(text)
            return cls(holder=str(data["holder"]), pid=int(data.get("pid", 0)),
                       time=str(data["time"]), release=str(data.get("release", "")),
                       message=str(data.get("message", "")),
                       command=str(data.get("command", "deploy")))
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"the lock's info.json is unreadable ({exc})",
                             hint="inspect it with `stagecraft lock status`") from None

    def age_seconds(self, now: float | None = None) -> float:
        taken = datetime.strptime(self.time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        return max(0.0, (now if now is not None else time.time()) - taken.timestamp())

    @property
    def stale(self) -> bool:
        """Held by a process of this machine that no longer exists."""
        return process_gone(self.holder, self.pid)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["age_seconds"] = round(self.age_seconds(), 1)
        data["stale"] = self.stale
        return data

    def describe(self) -> str:
        text = (f"held by {self.holder} (pid {self.pid}) since {self.time} "
                f"({self.age_seconds():.0f} s) for {self.command} of {self.release}")
        if self.message:
            text += f": {self.message}"
        if self.stale:
            text += " [stale: that process is gone]"
        return text


def read(host: RemoteHost, project: str, environment: str) -> LockInfo | None:
    """The lock's holder, or None when nobody holds it."""
    path = lock_dir(project, environment)
    proc = host.run(f"if [ -d {quote(path)} ]; then cat {quote(path + '/info.json')} "
                    "2>/dev/null || echo '{}'; fi", what="read the deploy lock")
    text = proc.stdout.strip()
    if not text:
        return None
    if text == "{}":  # the directory exists but info.json is not written yet
        return LockInfo(holder="unknown", pid=0, time=_now(), release="", message="being taken")
    return LockInfo.from_json(text)


def acquire(host: RemoteHost, project: str, environment: str, info: LockInfo, *,
            wait: float = 0.0, on_wait: Callable[[LockInfo], None] | None = None) -> None:
    """Take the lock, or raise LockHeld with the holder's details (after ``wait`` s)."""
    path = lock_dir(project, environment)
    script = (f"mkdir {quote(path)} 2>/dev/null || exit 3; "
              f"cat > {quote(path + '/info.json.tmp')} && "
              f"mv {quote(path + '/info.json.tmp')} {quote(path + '/info.json')}")
    deadline = time.monotonic() + wait
    announced = False
    while True:
        proc = host.run(script, input=info.to_json() + "\n", check=False,
                        what="take the deploy lock")
        if proc.returncode == 0:
            return
        if proc.returncode != 3:
            raise StateError(
                f"host {host.name}: cannot create the deploy lock {path}: "
                f"{proc.stderr.strip() or proc.returncode}",
                hint="check that the host is bootstrapped: stagecraft bootstrap")
        holder = read(host, project, environment)
        if holder is None:  # released between our mkdir and our read: try again
            continue
        if time.monotonic() >= deadline:
            hint = "wait for it to finish, or use --lock-wait DURATION"
            if holder.stale:
                hint = ("its process is gone; release it with "
                        f"`stagecraft lock release --env {environment}` and deploy again")
            raise LockHeld(f"the deploy lock of {project}/{environment} on {host.name} is "
                           f"{holder.describe()}", hint=hint)
        if on_wait is not None and not announced:
            on_wait(holder)
            announced = True
        time.sleep(min(POLL_SECONDS, max(0.1, deadline - time.monotonic())))


def release(host: RemoteHost, project: str, environment: str, info: LockInfo | None) -> bool:
    """Release the lock if ``info`` (what we wrote) still holds it; None: release any.

    Returns whether a lock was removed.
    """
    path = lock_dir(project, environment)
    if info is None:
        script = f"[ -d {quote(path)} ] || exit 3; rm -rf {quote(path)}"
    else:
        script = (f"[ \"$(cat {quote(path + '/info.json')} 2>/dev/null)\" = "
                  f"{quote(info.to_json())} ] || exit 3; rm -rf {quote(path)}")
    proc = host.run(script, check=False, what="release the deploy lock")
    if proc.returncode not in (0, 3):
        raise StateError(f"host {host.name}: cannot remove the deploy lock {path}: "
                         f"{proc.stderr.strip()}", hint="remove it by hand: rm -rf " + path)
    return proc.returncode == 0


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
