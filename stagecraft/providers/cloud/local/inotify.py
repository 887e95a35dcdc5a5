"""The kernel's inotify limit against the local cloud's fleet hosts.

Every fleet host runs systemd, dbus, containerd and Traefik, and each of them opens
inotify instances (about PER_HOST per host, counted on a fleet of 21). All containers
share the kernel's per-user limit, fs.inotify.max_user_instances, which is 128 on
many distributions. Past it, inotify_init fails inside the hosts: Traefik's file
provider does not start ("too many open files") and a rollout then waits for
servers Traefik never loads. So `infra up` checks there is room for its new hosts,
and `doctor --fix` raises the limit.
"""

from __future__ import annotations

import os
from pathlib import Path

LIMITS_DIR = Path("/proc/sys/fs/inotify")
PROC = Path("/proc")
#: Instances one fleet host opens, rounded up (21 hosts held 146 with the machine's own).
PER_HOST = 8
#: The limits `doctor --fix` sets: room for over a hundred fleet hosts.
WANTED = {"max_user_instances": 1024, "max_user_watches": 524288}
SYSCTL_FILE = Path("/etc/sysctl.d/90-stagecraft-local-cloud.conf")
INOTIFY_LINK = "anon_inode:inotify"


def read_limit(name: str, limits_dir: Path = LIMITS_DIR) -> int | None:
    """fs.inotify.<name>, or None when the kernel does not say."""
    try:
        return int((limits_dir / name).read_text().strip())
    except (OSError, ValueError):
        return None


def instances_in_use(proc: Path = PROC) -> int | None:
    """inotify instances open on this machine (its containers' too), counted from
    the processes' file descriptors; None when no process's descriptors can be read
    (not root), so the count would say nothing."""
    count, readable = 0, False
    for pid in proc.iterdir():
        if not pid.name.isdigit():
            continue
        try:
            descriptors = os.listdir(pid / "fd")
        except OSError:
            continue
        readable = True
        for fd in descriptors:
            try:
                if os.readlink(pid / "fd" / fd) == INOTIFY_LINK:
                    count += 1
            except OSError:
                continue
    return count if readable else None


def room_problem(new_hosts: int, in_use: int, limit: int | None) -> str | None:
    """Why ``new_hosts`` more fleet hosts would not fit, or None when they do."""
    if new_hosts <= 0 or limit is None:
        return None
    needed = new_hosts * PER_HOST
    if in_use + needed <= limit:
        return None
    return (f"the kernel allows {limit} inotify instances per user "
            f"(fs.inotify.max_user_instances), {in_use} are in use, and {new_hosts} new "
            f"host(s) need about {needed} more: inside the hosts, systemd and Traefik would "
            "fail to watch their files")


def fix_hint() -> str:
    wanted = WANTED["max_user_instances"]
    return (f"run `stagecraft doctor --fix` as root (it sets fs.inotify.max_user_instances="
            f"{wanted} and keeps it in {SYSCTL_FILE}), or `sudo sysctl -w "
            f"fs.inotify.max_user_instances={wanted}`; or remove fleets you no longer use "
            "(`stagecraft infra down`)")


def raise_limits(limits_dir: Path = LIMITS_DIR, sysctl_file: Path = SYSCTL_FILE) -> list[str]:
    """Raise each limit below WANTED, now and at boot (a sysctl.d file). Returns what
    changed, e.g. ``["fs.inotify.max_user_instances 128 -> 1024"]``; raises OSError
    when it may not (not root)."""
    changed = []
    for name, wanted in WANTED.items():
        current = read_limit(name, limits_dir)
        if current is not None and current < wanted:
            (limits_dir / name).write_text(f"{wanted}\n")
            changed.append(f"fs.inotify.{name} {current} -> {wanted}")
    if changed:
        sysctl_file.parent.mkdir(parents=True, exist_ok=True)
        lines = ["# Written by `stagecraft doctor --fix`: room for the local cloud's fleet hosts,",
                 "# whose systemd, dbus, containerd and Traefik each watch files with inotify."]
        # The ones at our value (raised now or on an earlier run): a limit set higher
        # elsewhere stays as it is at boot.
        lines += [f"fs.inotify.{name} = {value}" for name, value in WANTED.items()
                  if read_limit(name, limits_dir) == value]
        temporary = sysctl_file.with_name(f".{sysctl_file.name}.tmp")
        temporary.write_text("\n".join(lines) + "\n")
        os.replace(temporary, sysctl_file)
    return changed
