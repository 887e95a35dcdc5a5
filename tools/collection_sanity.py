"""Run `ansible-test sanity` on the stagecraft.platform collection, offline-friendly.

    python -m tools.collection_sanity [ansible-test options, e.g. --test pep8]

ansible-test runs each sanity test in a virtualenv of its own, which it gives pip by
downloading a bootstrap script from ci-files.testing.ansible.com. That host cannot be
reached from every machine (PyPI can), so this puts a bootstrap script of our own in
ansible-test's cache first: it installs pip with the standard library's ensurepip,
then asks that pip for what ansible-test wanted (pip itself, from PyPI).

ansible-test runs from a venv of its own (the ansible-core version of the project's
venv) on a copy of the collection, so tests/output/ never lands in the checkout. The
venv lives in /var/tmp/stagecraft (STAGECRAFT_CACHE_DIR) and is made once per machine.
Exit status: ansible-test's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLLECTION = REPO / "collections" / "ansible_collections" / "stagecraft" / "platform"
CACHE = Path(os.environ.get("STAGECRAFT_CACHE_DIR", "/var/tmp/stagecraft"))

# What the bootstrap script does: ensurepip, then pip installs what ansible-test asked.
BOOTSTRAP = '''\
"""pip bootstrap for ansible-test's sanity venvs (written by stagecraft's
tools/collection_sanity.py): ensurepip, then `pip install` of the requested packages."""
import ensurepip
import os
import ssl
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
# The pip ensurepip brings trusts only its own CA bundle: give it the system's, which
# holds any CA a proxy on the way to PyPI needs.
cafile = (os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
          or ssl.get_default_verify_paths().cafile)
if cafile and os.path.isfile(cafile):
    args = ["--cert", cafile, *args]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
'''


def sanity_venv() -> Path:
    """A venv with the same ansible-core as this Python's, made once per machine."""
    core = version("ansible-core")
    venv = CACHE / f"ansible-test-{core}-py{sys.version_info.major}{sys.version_info.minor}"
    complete = venv / ".complete"
    if not complete.exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", f"ansible-core=={core}"], check=True)
        complete.touch()
    return venv


def pip_versions(venv: Path) -> list[str]:
    """The pip versions ansible-test may ask a bootstrap script for."""
    found = sorted(venv.glob("lib/python*/site-packages/ansible_test/_internal/"
                             "python_requirements.py"))
    text = found[0].read_text(encoding="utf-8") if found else ""
    return sorted(set(re.findall(r"pip='([0-9.]+)'", text))) or ["24.2"]


def install_bootstrap(venv: Path) -> None:
    cache = Path.home() / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for pip in pip_versions(venv):
        script = cache / f"get_pip_{pip.replace('.', '_')}.py"
        if not script.exists() or script.read_text(encoding="utf-8") != BOOTSTRAP:
            temporary = script.with_suffix(".tmp")
            temporary.write_text(BOOTSTRAP, encoding="utf-8")
            temporary.replace(script)


def main(argv: list[str]) -> int:
    venv = sanity_venv()
    install_bootstrap(venv)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    with tempfile.TemporaryDirectory(prefix="stagecraft-sanity-") as work:
        copy = Path(work) / "ansible_collections" / "stagecraft" / "platform"
        shutil.copytree(COLLECTION, copy, ignore=shutil.ignore_patterns(
            "__pycache__", "*.pyc", "tests/output"))
        # ansible-test lists the collection's files with git when it is a repository.
        subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
        subprocess.run(["git", "add", "-A"], cwd=copy, check=True)
        command = [str(venv / "bin" / "ansible-test"), "sanity", "--requirements",
                   "--python", python, "--color", "no", *argv]
        env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
        return subprocess.run(command, cwd=copy, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
