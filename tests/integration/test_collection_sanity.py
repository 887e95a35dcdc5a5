"""`ansible-test sanity` passes for the stagecraft.platform collection (every sanity
test ansible-test runs: validate-modules, pylint, pep8, yamllint, import, shebang, ...).

Runs tools/collection_sanity.py: ansible-test from a venv of its own on a copy of the
collection. The first run on a machine installs each sanity test's requirements from
PyPI (a few minutes); later runs reuse them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_ansible_test_sanity_passes_for_the_collection() -> None:
    result = subprocess.run([sys.executable, "-m", "tools.collection_sanity"], cwd=REPO,
                            capture_output=True, text=True, timeout=2400, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    ran = [line for line in output.splitlines() if line.startswith("Running sanity test")]
    # Every sanity test ran: a run that skipped them all would also exit 0.
    assert len(ran) >= 20, output[-4000:]
    assert "validate-modules" in output and "ERROR" not in output, output[-8000:]
