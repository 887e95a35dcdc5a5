"""`stagecraft audit`: the audit logs of every host, merged by time.

Each host appends one JSON line per rollout to ``<base>/audit.log`` (written
by the rollout module, spec/deploy/contracts.md). Only the last lines of each
host are read: the newest N overall are among every host's newest N.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from stagecraft.errors import StagecraftError
from stagecraft.hosts.lock import base_dir
from stagecraft.hosts.remote import RemoteHost, in_parallel, quote
from stagecraft.ui.table import table_lines


def tail_command(project: str, environment: str, count: int) -> str:
    path = f"{base_dir(project, environment)}/audit.log"
    return f"[ -f {quote(path)} ] && tail -n {int(count)} {quote(path)} || true"


def parse_audit(host: str, text: str) -> list[dict[str, Any]]:
    """Records of one host's audit lines; a line that is not JSON is kept as text."""
    records = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            record = {"time": "", "unparsed": line}
        record.setdefault("host", host)
        record["audit_host"] = host  # the host whose log holds the line
        records.append(record)
    return records


def merge_audit(per_host: Iterable[list[dict[str, Any]]], count: int) -> list[dict[str, Any]]:
    """The newest ``count`` records of all hosts, oldest first."""
    merged = [r for records in per_host for r in records]
    merged.sort(key=lambda r: (str(r.get("time", "")), r["audit_host"]))
    return merged[-count:] if count > 0 else []


def read_audit(hosts: list[RemoteHost], project: str, environment: str, count: int,
               warn=None) -> list[dict[str, Any]]:
    """The newest ``count`` audit records of ``hosts``; unreachable hosts go to ``warn``."""
    command = tail_command(project, environment, count)

    def fetch(host: RemoteHost) -> list[dict[str, Any]]:
        try:
            proc = host.run(command, timeout=30, check=False, what="read the audit log")
        except StagecraftError as exc:  # timed out
            problem = exc.message
        else:
            if proc.returncode == 0:
                return parse_audit(host.name, proc.stdout)
            problem = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        if warn is not None:
            warn(f"cannot read the audit log of host {host.name}: {problem}")
        return []

    return merge_audit(in_parallel(hosts, fetch).values(), count)


def audit_lines(records: list[dict[str, Any]]) -> list[str]:
    """One line per record: time, host, action, release, result, performer, then what
    each service did and the error. A line that was not JSON is shown as is."""
    if not records:
        return ["no audit records yet"]
    rows = []
    for r in records:
        if "unparsed" in r:
            # In the last column, so that a long line does not widen the others.
            rows.append(["?", r["audit_host"], "", "", "", "", r["unparsed"]])
            continue
        services = ", ".join(f"{name} {action}" for name, action
                             in sorted((r.get("services") or {}).items()))
        details = [f"[{services}]"] if services else []
        if r.get("error"):
            details.append(f"error: {r['error']}")
        rows.append([r.get("time", "?"), r["audit_host"], r.get("action", "?"),
                     r.get("release", "?"), r.get("result", "?"),
                     f"by {r.get('performer', '?')}", "  ".join(details)])
    columns = ["time", "host", "action", "release", "result", "performer", "details"]
    return table_lines(columns, rows, header=False)
