"""Every playbook of the stagecraft.platform collection passes `ansible-playbook
--syntax-check` by its FQCN; the collection passes `ansible-lint --profile production`
(offline: Galaxy is never asked).

No Docker needed. The tools are the venv's own, with the repo's collections/ on their
search path, as the CLI's runs have it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COLLECTION = REPO / "collections" / "ansible_collections" / "stagecraft" / "platform"
PLAYBOOKS = sorted((COLLECTION / "playbooks").glob("*.yml"))


def ansible_env() -> dict[str, str]:
    return {
        **os.environ,
        # ansible-lint runs ansible-playbook and ansible-config by name.
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
        "ANSIBLE_NOCOLOR": "1",
        "NO_COLOR": "1",
    }


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=REPO, env=ansible_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_there_are_playbooks_to_check() -> None:
    # The parametrised test below would silently check nothing otherwise.
    assert any(p.name == "bootstrap.yml" for p in PLAYBOOKS), PLAYBOOKS


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda p: p.name)
def test_playbook_passes_syntax_check(playbook: Path) -> None:
    result = run(str(BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,",
                 f"stagecraft.platform.{playbook.stem}")
    assert result.returncode == 0, (
        f"ansible-playbook --syntax-check {playbook.name} failed "
        f"(exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
    )


def test_the_collection_passes_ansible_lint_production_profile() -> None:
    result = run(str(BIN / "ansible-lint"), "--offline", "--profile", "production",
                 "--nocolor", str(COLLECTION.relative_to(REPO)))
    assert result.returncode == 0, (
        f"ansible-lint --profile production failed (exit {result.returncode}):\n"
        f"{result.stdout}\n{result.stderr}"
    )
    assert "Profile 'production' was required, and it passed" in result.stderr, result.stderr
