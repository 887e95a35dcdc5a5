"""Local HTTPS certificates for `stagecraft dev`, from mkcert's local CA.

mkcert keeps its CA in its CAROOT (``mkcert -CAROOT``; the CAROOT variable moves it)
and makes it when it is missing. One certificate covers every route host of the
session; it is made again when the hosts or the CA change. Trusting the CA in this
machine's stores (``mkcert -install``) is the user's choice: `dev --trust-ca`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stagecraft.errors import CommandFailed, EnvironmentMissing

CERT_FILE, KEY_FILE, STAMP_FILE = "dev.crt", "dev.key", "stamp.json"
MKCERT_HINT = "install mkcert (Debian: `apt-get install mkcert`; `make setup` does it)"


@dataclass(frozen=True)
class DevCertificate:
    cert_file: Path
    key_file: Path
    ca_file: Path  # mkcert's rootCA.pem: what a browser must trust
    made: bool  # False: the one on disk already covered these hosts


def mkcert_binary() -> str:
    found = shutil.which("mkcert")
    if found is None:
        raise EnvironmentMissing("mkcert is not installed; `stagecraft dev` makes its "
                                 "HTTPS certificates with it", hint=MKCERT_HINT)
    return found


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env,
                              check=False)
    except subprocess.TimeoutExpired:
        raise CommandFailed(f"cannot {what}: `{' '.join(argv)}` took over 120 s",
                            hint="run it by hand to see what it waits for") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise CommandFailed(f"cannot {what}: `{' '.join(argv)}` exited {proc.returncode}: {last}",
                            hint="run it by hand to see the whole output")
    return proc.stdout


def ca_root(mkcert: str) -> Path:
    return Path(_run([mkcert, "-CAROOT"], "find mkcert's CA directory").strip())


def ensure_certificate(directory: Path, hosts: list[str]) -> DevCertificate:
    """A certificate for ``hosts`` in ``directory`` (made or reused)."""
    mkcert = mkcert_binary()
    root = ca_root(mkcert)
    ca_file = root / "rootCA.pem"
    cert, key, stamp_path = directory / CERT_FILE, directory / KEY_FILE, directory / STAMP_FILE
    wanted = {"hosts": sorted(set(hosts)), "ca": _digest(ca_file)}
    if cert.exists() and key.exists() and wanted["ca"] is not None:
        try:
            if json.loads(stamp_path.read_text()) == wanted:
                return DevCertificate(cert, key, ca_file, made=False)
        except (OSError, ValueError):
            pass
    directory.mkdir(parents=True, exist_ok=True)
    # mkcert makes the CA first when CAROOT has none.
    _run([mkcert, "-cert-file", str(cert), "-key-file", str(key), *wanted["hosts"]],
         f"make a certificate for {', '.join(wanted['hosts'])}")
    key.chmod(0o600)
    wanted["ca"] = _digest(ca_file)
    stamp_path.write_text(json.dumps(wanted) + "\n")
    return DevCertificate(cert, key, ca_file, made=True)


def install_ca() -> None:
    """`mkcert -install`: trust the CA in the system store (and NSS, with certutil)."""
    _run([mkcert_binary(), "-install"], "install mkcert's CA in this machine's trust stores")


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
