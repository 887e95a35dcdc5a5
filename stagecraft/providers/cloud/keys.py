"""The environment's SSH key pair, for clouds that make their hosts and give them
stagecraft's key (local, digitalocean). known_hosts helpers live in the cloud interface."""

from __future__ import annotations

import contextlib

from stagecraft.errors import StateError
from stagecraft.fsutil import write_atomic
from stagecraft.providers.cloud.base import StateFiles
from stagecraft.execs import run

_KEYGEN_HINT = "install OpenSSH's client tools (apt-get install openssh-client)"


def ensure_key_pair(files: StateFiles, comment: str) -> str:
    """Make ``id_ed25519``/``.pub`` in the state dir unless present; return the public key.

    A lone private key gets its public half back from ssh-keygen -y; a lone public
    key is useless (nobody can log in with it), so a new pair replaces it.
    """
    files.state_dir.mkdir(parents=True, exist_ok=True)
    if files.private_key.exists():
        if not files.public_key.exists():
            proc = run(["ssh-keygen", "-y", "-f", str(files.private_key)], hint=_KEYGEN_HINT)
            write_atomic(files.public_key, proc.stdout.strip() + "\n")
    else:
        with contextlib.suppress(FileNotFoundError):
            files.public_key.unlink()
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
             "-f", str(files.private_key)], hint=_KEYGEN_HINT)
    public = files.public_key.read_text().strip()
    if not public.startswith("ssh-ed25519 "):
        raise StateError(
            f"{files.public_key} does not hold an ed25519 public key",
            hint=f"delete {files.private_key} and {files.public_key}, then run "
            "`stagecraft infra up` to make a new pair",
        )
    return public
