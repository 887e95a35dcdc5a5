"""`stagecraft lock status|release`: the deploy lock on the primary host."""

from __future__ import annotations

from typing import Any

from stagecraft.hosts.lock import LockInfo


def lock_report(info: LockInfo | None, host: str) -> dict[str, Any]:
    if info is None:
        return {"held": False, "host": host}
    return {"held": True, "host": host, **info.to_dict()}


def lock_lines(report: dict[str, Any]) -> list[str]:
    if not report["held"]:
        return [f"the deploy lock is not held (primary host {report['host']})"]
    lines = [
        f"the deploy lock is held (primary host {report['host']})",
        f"  holder:  {report['holder']} (pid {report['pid']})",
        f"  since:   {report['time']} ({report['age_seconds']:.0f} s ago)",
        f"  command: {report['command']} of {report['release'] or '?'}",
    ]
    if report["message"]:
        lines.append(f"  message: {report['message']}")
    lines.append("  stale:   " + ("yes, that process is gone: release it with "
                                  "`stagecraft lock release`" if report["stale"] else "no"))
    return lines
