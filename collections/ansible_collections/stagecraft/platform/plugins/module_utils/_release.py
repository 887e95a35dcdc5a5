# -*- coding: utf-8 -*-
# Copyright: stagecraft maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The release layout on a host: ``<base>/releases/<id>/``, the ``current`` link and
the ``audit.log`` (spec/deploy/contracts.md, "Names on a host").

Directories are published whole: built beside their final place, then renamed
(or exchanged with the old one), so nobody ever sees half a release.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import posixpath
import re
import shutil
import tempfile
from dataclasses import dataclass

RELEASES = "releases"
CURRENT = "current"
AUDIT_LOG = "audit.log"
DIR_MODE = 0o750
DEFAULT_FILE_MODE = 0o644

_RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ReleaseError(ValueError):
    """A release id, file list or layout the modules refuse."""


@dataclass(frozen=True)
class ReleaseFile:
    """One file of a release: its path inside the release dir, bytes and mode."""

    path: str
    content: bytes
    mode: int


def check_release_id(release_id: str) -> str:
    if not isinstance(release_id, str) or not _RELEASE_ID.match(release_id):
        raise ReleaseError(
            f"release id {release_id!r} is not valid: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (for example 20261121T101500Z-3f9c2ab)")
    return release_id


def parse_mode(value: object, path: str) -> int:
    """A file mode: an octal string (``"0600"``) or the number itself (384)."""
    if value is None or value == "":
        return DEFAULT_FILE_MODE
    if isinstance(value, bool):
        raise ReleaseError(f"file {path}: mode {value!r} is not a mode")
    if isinstance(value, int):
        mode = value
    else:
        try:
            mode = int(str(value), 8)
        except ValueError:
            raise ReleaseError(f"file {path}: mode {value!r} is not an octal mode like '0644'")
    if not 0 <= mode <= 0o7777:
        raise ReleaseError(f"file {path}: mode {value!r} is out of range")
    return mode


def check_relative_path(path: object) -> str:
    """A normalised path that stays inside the release dir, or ReleaseError."""
    if not isinstance(path, str) or not path.strip():
        raise ReleaseError(f"file path {path!r} is empty")
    if path.startswith("/") or "\\" in path or "\0" in path:
        raise ReleaseError(f"file path {path!r} must be relative to the release dir, with '/'")
    parts = path.split("/")
    if any(part in ("..",) for part in parts):
        raise ReleaseError(f"file path {path!r} escapes the release dir")
    normal = posixpath.normpath(path)
    if normal in (".", "") or normal.startswith("../"):
        raise ReleaseError(f"file path {path!r} does not name a file inside the release dir")
    return normal


def release_files(entries: list) -> dict:
    """``{path: ReleaseFile}`` from the module's ``files`` list; refuses duplicates,
    paths escaping the dir and a path that is both a file and a directory."""
    files: dict = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise ReleaseError(f"each file is a dict with path, content and mode (got {type(entry).__name__})")
        path = check_relative_path(entry.get("path"))
        if path in files:
            raise ReleaseError(f"file path {path} is listed twice")
        content = entry.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise ReleaseError(f"file {path}: content must be text")
        files[path] = ReleaseFile(path=path, content=content.encode("utf-8"),
                                  mode=parse_mode(entry.get("mode"), path))
    for path in files:
        parent = posixpath.dirname(path)
        while parent:
            if parent in files:
                raise ReleaseError(f"{parent} is listed as a file and as the directory of {path}")
            parent = posixpath.dirname(parent)
    return files


def read_tree(directory: str) -> dict | None:
    """``{path: ReleaseFile}`` of the regular files under ``directory``; None when
    the directory holds anything else (a link, a device): it must be rewritten."""
    found: dict = {}
    for root, dirs, names in os.walk(directory):
        for name in dirs:
            if os.path.islink(os.path.join(root, name)):
                return None
        for name in names:
            full = os.path.join(root, name)
            if os.path.islink(full) or not os.path.isfile(full):
                return None
            rel = os.path.relpath(full, directory).replace(os.sep, "/")
            with open(full, "rb") as handle:
                content = handle.read()
            found[rel] = ReleaseFile(path=rel, content=content,
                                     mode=os.stat(full).st_mode & 0o7777)
    return found


def same_files(wanted: dict, existing: dict | None) -> bool:
    return existing is not None and wanted == existing


def _write_file(path: str, item: ReleaseFile) -> None:
    # Created with its final mode from the start: a secret is never readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, item.mode & 0o777)
    try:
        os.write(fd, item.content)
        os.fchmod(fd, item.mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def build_tree(parent: str, prefix: str, files: dict) -> str:
    """Write ``files`` into a new temporary directory inside ``parent``; return its path."""
    staging = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        os.chmod(staging, DIR_MODE)
        for path in sorted(files):
            target = os.path.join(staging, path)
            _make_dirs(staging, posixpath.dirname(path))
            _write_file(target, files[path])
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def _make_dirs(root: str, relative: str) -> None:
    current = root
    for part in [p for p in relative.split("/") if p]:
        current = os.path.join(current, part)
        if not os.path.isdir(current):
            os.mkdir(current, DIR_MODE)
            os.chmod(current, DIR_MODE)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(first: str, second: str) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False when the
    kernel, libc or filesystem cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second),
                       _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), second)


def publish_tree(staging: str, target: str) -> None:
    """Put the staging directory in place of ``target`` (absent or not)."""
    if not os.path.lexists(target):
        os.rename(staging, target)
        return
    if exchange(staging, target):
        shutil.rmtree(staging)  # now the old tree
        return
    # No atomic exchange here: move the old tree aside first; the gap is one rename.
    aside = tempfile.mkdtemp(prefix=".old-", dir=os.path.dirname(target))
    os.rmdir(aside)
    os.rename(target, aside)
    os.rename(staging, target)
    shutil.rmtree(aside, ignore_errors=True)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_release(base_dir: str, release_id: str, entries: list, check: bool) -> dict:
    """Make ``<base>/releases/<id>/`` hold exactly ``entries`` (release_files' list of
    {path, content, mode}); nothing is written when it already does. Returns the
    module result (``changed``, ``release_dir``, ``files``, ``existed``); ReleaseError
    for a bad list or a missing ``base_dir``, OSError when writing fails."""
    check_release_id(release_id)
    files = release_files(entries)
    if not os.path.isdir(base_dir):
        raise ReleaseError(f"{base_dir} does not exist: bootstrap the host first "
                           "(the bootstrap role makes the release layout)")
    releases = os.path.join(base_dir, RELEASES)
    target = os.path.join(releases, release_id)
    existed = os.path.isdir(target)
    result = {"release_dir": target, "files": sorted(files), "existed": existed}
    if existed and same_files(files, read_tree(target)):
        return {"changed": False, **result}
    if not check:
        if not os.path.isdir(releases):
            os.mkdir(releases, DIR_MODE)
        staging = build_tree(releases, f".{release_id}.tmp-", files)
        publish_tree(staging, target)
        fsync_dir(releases)
    return {"changed": True, **result}


# ------------------------------------------------------------ current, audit


def current_release(base_dir: str) -> str | None:
    """The release id ``<base>/current`` points at, or None."""
    link = os.path.join(base_dir, CURRENT)
    try:
        target = os.readlink(link)
    except OSError:
        return None
    return posixpath.basename(target.rstrip("/")) or None


def switch_current(base_dir: str, release_id: str) -> None:
    """Point ``current`` at ``releases/<id>`` in one rename (a new link, then rename)."""
    link = os.path.join(base_dir, CURRENT)
    temporary = os.path.join(base_dir, f".{CURRENT}.{os.getpid()}")
    if os.path.lexists(temporary):
        os.unlink(temporary)
    os.symlink(f"{RELEASES}/{release_id}", temporary)
    os.replace(temporary, link)
    fsync_dir(base_dir)


def append_audit(base_dir: str, record: dict) -> None:
    """One JSON line at the end of ``audit.log``, written with one ``write``."""
    line = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
    fd = os.open(os.path.join(base_dir, AUDIT_LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def release_ids(base_dir: str) -> list:
    """The release ids on the host (directories under ``releases/``)."""
    root = os.path.join(base_dir, RELEASES)
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(name for name in names
                  if not name.startswith(".") and os.path.isdir(os.path.join(root, name))
                  and not os.path.islink(os.path.join(root, name)))


def remove_release(base_dir: str, release_id: str) -> None:
    shutil.rmtree(os.path.join(base_dir, RELEASES, check_release_id(release_id)))
