"""The public keys the deploy user accepts on servers of cloud `ssh`: the public halves
of the keys stagecraft reaches the servers with."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from stagecraft.errors import ConfigError
from stagecraft.execs import run

_KEYGEN_HINT = "install OpenSSH's client tools (apt-get install openssh-client)"


def public_key_of(private_key: str | Path) -> str:
    """The public half of ``private_key``: ``<key>.pub`` beside it, else what
    ``ssh-keygen -y`` derives (it fails for a key with a passphrase: no one types it).

    Raises ConfigError naming the key when neither works.
    """
    private_key = Path(private_key)
    public = Path(f"{private_key}.pub")
    if public.is_file():
        return _first_key(public.read_text(), public)
    proc = run(["ssh-keygen", "-y", "-f", str(private_key)], check=False, timeout=30,
               hint=_KEYGEN_HINT)
    if proc.returncode != 0:
        raise ConfigError(
            f"cannot get the public half of {private_key}: "
            f"{(proc.stderr or proc.stdout).strip() or 'ssh-keygen -y failed'}",
            hint=f"put it beside the key as {public} (`ssh-keygen -y -f {private_key} > "
            f"{public}` asks for the passphrase once)")
    return _first_key(proc.stdout, private_key)


def agent_keys() -> list[str]:
    """The public keys the ssh agent holds (``ssh-add -L``); empty without an agent."""
    if not os.environ.get("SSH_AUTH_SOCK"):
        return []
    proc = run(["ssh-add", "-L"], check=False, timeout=30, hint=_KEYGEN_HINT)
    if proc.returncode != 0:  # 1: no identities; 2: no agent answers
        return []
    return [line.strip() for line in proc.stdout.splitlines() if _is_key(line)]


def home_keys() -> list[str]:
    """The public keys ``~/.ssh/id_*.pub`` ($HOME respected)."""
    home = Path(os.environ.get("HOME") or Path.home())
    return [_first_key(path.read_text(), path) for path in sorted((home / ".ssh").glob("id_*.pub"))
            if path.is_file()]


def deploy_keys(private_keys: Iterable[str | None]) -> list[str]:
    """The public keys for the deploy user's authorized_keys: each named key's public
    half, and when a host names none, the agent's keys, else ``~/.ssh/id_*.pub``.

    Raises ConfigError when no key at all can be found.
    """
    found: list[str] = []
    defaults = False
    for key in private_keys:
        if key is None:
            defaults = True
        else:
            found.append(public_key_of(key))
    if defaults:
        found += agent_keys() or home_keys()
    unique = list(dict.fromkeys(" ".join(k.split()[:2]) for k in found))
    if not unique:
        raise ConfigError(
            "cloud `ssh`: no public key to authorize for the deploy user: no host names an "
            "ssh_key, the ssh agent holds none and there is no ~/.ssh/id_*.pub",
            hint="set providers.cloud.ssh_key (or ssh_key of each host) in stagecraft.yml to "
            "the private key that reaches the servers")
    return unique


def _is_key(line: str) -> bool:
    fields = line.split()
    return len(fields) >= 2 and (fields[0].startswith(("ssh-", "ecdsa-", "sk-")))


def _first_key(text: str, source: Path) -> str:
    for line in text.splitlines():
        if _is_key(line):
            return line.strip()
    raise ConfigError(f"{source} holds no OpenSSH public key",
                      hint=f"rewrite it: `ssh-keygen -y -f <private key> > {source}`")
