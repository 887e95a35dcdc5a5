"""/etc/hosts lines for dev route hosts that do not resolve to 127.0.0.1 by themselves.

stagecraft's lines live in one block per project, between a begin and an end
marker; adding replaces that block, removing deletes it, and every other line of
the file stays as it was, byte for byte.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

from stagecraft.errors import EnvironmentMissing

HOSTS_FILE = Path("/etc/hosts")
LOOPBACK = "127.0.0.1"


def markers(project: str) -> tuple[str, str]:
    return (f"# stagecraft dev {project} begin", f"# stagecraft dev {project} end")


def resolves_to_loopback(name: str) -> bool:
    """Whether ``name`` resolves to 127.0.0.1 (e.g. *.localhost with systemd-resolved)."""
    try:
        found = socket.getaddrinfo(name, None, family=socket.AF_INET)
    except OSError:
        return False
    return any(entry[4][0] == LOOPBACK for entry in found)


def names_to_add(names: Iterable[str],
                 resolves: Callable[[str], bool] = resolves_to_loopback) -> list[str]:
    """The names that need a line: those that do not reach 127.0.0.1 on their own."""
    return sorted({name for name in names if not resolves(name)})


def without_block(text: str, project: str) -> str:
    """``text`` with the project's block (markers included) removed."""
    begin, end = markers(project)
    lines = text.splitlines(keepends=True)
    kept: list[str] = []
    inside = False
    for line in lines:
        stripped = line.strip()
        if stripped == begin:
            inside = True
            continue
        if inside and stripped == end:
            inside = False
            continue
        if not inside:
            kept.append(line)
    if inside:  # a begin without an end: keep the file as it was rather than guess
        return text
    return "".join(kept)


def with_block(text: str, project: str, names: Iterable[str]) -> str:
    """``text`` with the project's block holding one line per name (no block when
    there are no names)."""
    rest = without_block(text, project)
    wanted = sorted(set(names))
    if not wanted:
        return rest
    if rest and not rest.endswith("\n"):
        rest += "\n"
    begin, end = markers(project)
    block = [begin + "\n"] + [f"{LOOPBACK}\t{name}\n" for name in wanted] + [end + "\n"]
    return rest + "".join(block)


def block_names(text: str, project: str) -> list[str]:
    """The names in the project's block (empty when there is none)."""
    begin, end = markers(project)
    names: list[str] = []
    inside = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == begin:
            inside = True
        elif stripped == end:
            inside = False
        elif inside and stripped and not stripped.startswith("#"):
            names.extend(stripped.split()[1:])
    return names


def update(path: Path, transform: Callable[[str], str]) -> bool:
    """Apply ``transform`` to the file; True when it changed. Writes by rename when
    it can, else in place (/etc/hosts is often a bind mount, which a rename cannot
    replace)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    new = transform(text)
    if new == text:
        return False
    try:
        mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
        temporary = path.with_name(f".{path.name}.stagecraft.tmp")
        temporary.write_text(new, encoding="utf-8")
        os.chmod(temporary, mode)
        try:
            os.replace(temporary, path)
        except OSError:
            temporary.unlink(missing_ok=True)
            with open(path, "r+", encoding="utf-8") as handle:
                handle.write(new)
                handle.truncate()
    except PermissionError as exc:
        raise EnvironmentMissing(
            f"cannot write {path}: {exc.strerror}",
            hint="run `stagecraft dev` with sudo, or pass --no-hosts and make the names "
                 "resolve another way") from None
    return True
