"""Host keys of servers that exist already: which key a server offers, and whether to
trust it.

A key is trusted when the environment's known_hosts pinned it before, or the user's
``~/.ssh/known_hosts`` vouches for it, or the user says yes when asked. A key that
differs from a pinned or vouched one is refused, always: the server was reinstalled,
or someone is in the middle, and only a person who checked the server's console can
tell which (:func:`changed_error` says how).

The lookups and fingerprints go through ``ssh-keygen`` (it reads hashed known_hosts
too); :func:`judge` and the messages are pure.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stagecraft.errors import EnvironmentMissing, HostKeyChanged, ProviderError
from stagecraft.execs import run
from stagecraft.providers.cloud.base import host_key_name

_KEYGEN_HINT = "install OpenSSH's client tools (apt-get install openssh-client)"

#: Host key algorithms that a known key of each type is checked with. An RSA key is
#: shown with SHA-2 signatures only: OpenSSH no longer accepts ssh-rsa (SHA-1) ones.
ALGORITHMS = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256"),
}

# Verdicts of :func:`judge`.
PINNED = "pinned"  # the environment's known_hosts has this key
VOUCHED = "vouched"  # the user's known_hosts has this key
NEW = "new"  # nobody knows this server: ask
CHANGED = "changed"  # a key is known for this server, and it is another one: refuse
REVOKED = "revoked"  # the user's known_hosts marks this key @revoked: refuse


@dataclass(frozen=True)
class HostKey:
    """A public host key: its type (``ssh-ed25519``) and base64 blob."""

    type: str
    blob: str

    @property
    def line(self) -> str:
        """``type blob``, as known_hosts and authorized_keys write it."""
        return f"{self.type} {self.blob}"


@dataclass(frozen=True)
class KnownEntry:
    """One known_hosts line that names a server: its key, and its marker
    (``@revoked``, ``@cert-authority``) if it has one."""

    key: HostKey
    marker: str | None = None


@dataclass(frozen=True)
class Judgement:
    """What :func:`judge` decided, and against which keys (for CHANGED)."""

    verdict: str
    known: tuple[HostKey, ...] = ()
    source: str | None = None  # "pinned" or "vouched": whose keys ``known`` are


def parse_entries(text: str) -> list[KnownEntry]:
    """The entries of known_hosts lines (``ssh-keygen -F`` output or a file's text);
    comments and lines that hold no key are skipped."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = None
        if fields[0].startswith("@"):
            marker, fields = fields[0], fields[1:]
        if len(fields) < 3:
            continue
        entries.append(KnownEntry(HostKey(fields[1], fields[2]), marker))
    return entries


def judge(offered: HostKey, pinned: Sequence[KnownEntry],
          vouched: Sequence[KnownEntry]) -> Judgement:
    """Whether to trust the key a server offered, given the environment's pinned keys
    for it and the keys the user's known_hosts has for it.

    The environment's own pins win: when it pinned keys for the server, only they
    count. Then the user's known_hosts. A key marked ``@revoked`` is never trusted;
    ``@cert-authority`` lines vouch for certificates, not keys, and are left out.
    """
    if any(e.marker == "@revoked" and e.key == offered for e in (*pinned, *vouched)):
        return Judgement(REVOKED)
    for source, entries in ((PINNED, pinned), (VOUCHED, vouched)):
        keys = tuple(e.key for e in entries if e.marker is None)
        if keys:
            if offered in keys:
                return Judgement(source)
            return Judgement(CHANGED, keys, source)
    return Judgement(NEW)


def algorithms_for(entries: Sequence[KnownEntry]) -> list[str]:
    """The host key algorithms to ask a server for so that it offers a key of a type
    already known for it (empty: none known, ssh's own order)."""
    found: list[str] = []
    for entry in entries:
        if entry.marker is not None:
            continue
        for algorithm in ALGORITHMS.get(entry.key.type, (entry.key.type,)):
            if algorithm not in found:
                found.append(algorithm)
    return found


def lookup(known_hosts: Path, address: str, port: int) -> list[KnownEntry]:
    """The entries of ``known_hosts`` for ``address:port`` (hashed names included);
    empty when the file does not exist."""
    if not known_hosts.is_file():
        return []
    proc = run(["ssh-keygen", "-F", host_key_name(address, port), "-f", str(known_hosts)],
               check=False, timeout=30, hint=_KEYGEN_HINT)
    if proc.returncode not in (0, 1):  # 1: not found
        raise EnvironmentMissing(
            f"ssh-keygen cannot read {known_hosts}: {proc.stderr.strip() or proc.stdout.strip()}",
            hint=f"check the file's permissions and contents ({known_hosts})")
    return parse_entries(proc.stdout)


def user_known_hosts() -> Path:
    """The user's own known_hosts: ``$HOME/.ssh/known_hosts``."""
    return Path(os.environ.get("HOME") or Path.home()) / ".ssh" / "known_hosts"


@dataclass(frozen=True)
class Fingerprint:
    """How ``ssh-keygen -l`` shows a key: ``SHA256:...`` and its type (``ED25519``)."""

    hash: str
    label: str

    def __str__(self) -> str:
        return f"{self.label} key {self.hash}"


def parse_fingerprint(output: str) -> Fingerprint:
    """``256 SHA256:abc... comment (ED25519)`` -> Fingerprint("SHA256:abc...", "ED25519")."""
    fields = output.split()
    if len(fields) < 2 or not fields[1].startswith("SHA256:"):
        raise ProviderError(f"ssh-keygen printed no fingerprint: {output.strip()!r}",
                            hint=_KEYGEN_HINT)
    label = fields[-1].strip("()") if fields[-1].startswith("(") else "?"
    return Fingerprint(fields[1], label)


def fingerprint(key: HostKey) -> Fingerprint:
    """The SHA256 fingerprint of ``key``, as the server's console shows it with
    ``ssh-keygen -lf``."""
    proc = run(["ssh-keygen", "-l", "-f", "-"], input=key.line + "\n", timeout=30,
               hint=_KEYGEN_HINT)
    return parse_fingerprint(proc.stdout)


def console_file(key_type: str) -> str:
    """The file on the server that holds its host key of ``key_type``."""
    name = {"ssh-ed25519": "ed25519", "ssh-rsa": "rsa"}.get(key_type)
    if name is None and key_type.startswith("ecdsa-"):
        name = "ecdsa"
    return f"/etc/ssh/ssh_host_{name or 'ed25519'}_key.pub"


def shown_path(path: Path) -> str:
    """``path`` as a user types it from here: relative below the working directory,
    ``~/...`` below the home directory, else absolute."""
    path = Path(path)
    try:
        return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else _home(path)
    except (OSError, ValueError):
        return str(path)


def _home(path: Path) -> str:
    home = Path(os.environ.get("HOME") or Path.home())
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def changed_error(label: str, address: str, port: int, offered: Fingerprint,
                  offered_type: str, known: Sequence[Fingerprint], known_hosts: Path,
                  *, pinned: bool) -> HostKeyChanged:
    """The refusal of a key that differs from the one ``known_hosts`` has for a server.

    ``pinned``: ``known_hosts`` is the environment's (re-pinning edits it), else the
    user's own.
    """
    where = shown_path(known_hosts)
    olds = ", ".join(f.hash for f in known)
    name = host_key_name(address, port)
    edit = f"ssh-keygen -R '{name}' -f {where}" if pinned else f"ssh-keygen -R '{name}'"
    return HostKeyChanged(
        f"{label} ({address}:{port}) offers {offered}, but {where} has {olds} for it: "
        "the server was reinstalled, or someone is in the middle; refusing to connect",
        hint=f"check the server's real key on its console: `ssh-keygen -lf "
        f"{console_file(offered_type)}`; if it shows {offered.hash}, forget the old key with "
        f"`{edit}` and run `stagecraft infra up` again",
    )


def question(label: str, address: str, port: int, offered: Fingerprint) -> str:
    """What the user is asked about a key nobody vouches for."""
    return f"{label} ({address}:{port}) offers {offered}; trust it?"


def not_trusted_error(refused: Sequence[tuple[str, str, int, Fingerprint, str]],
                      *, asked: bool) -> ProviderError:
    """The refusal of new keys: each (label, address, port, fingerprint, key type).

    ``asked``: the user said no (else nobody could be asked: no terminal).
    """
    lines = [f"{label} ({address}:{port}) offers {fp}" for label, address, port, fp, _ in refused]
    files = sorted({console_file(key_type) for *_, key_type in refused})
    if len(lines) == 1:
        reason = "it was not accepted" if asked else "no terminal is there to ask about it"
        message = f"{lines[0]}; nothing vouches for it yet, and {reason}"
    else:
        reason = "they were not accepted" if asked else "no terminal is there to ask about them"
        message = (f"{len(lines)} host keys that nothing vouches for yet, and {reason}:\n  "
                   + "\n  ".join(lines))
    commands = " or ".join(f"`ssh-keygen -lf {file}`" for file in files)
    what, match = ("the fingerprint", "it matches") if len(lines) == 1 else (
        "each fingerprint", "they match")
    return ProviderError(
        message,
        hint=f"check {what} on the server's console ({commands}); if {match}, run "
        "`stagecraft infra up --accept-new-host-keys`",
    )
