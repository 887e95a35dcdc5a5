"""The wheel carries the Ansible content, and the code finds it from the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", str(out), str(REPO)],
        check=True, capture_output=True, text=True,
    )
    (found,) = out.glob("stagecraft-*.whl")
    return found


def test_wheel_contains_the_collection_with_its_playbooks_and_roles(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    platform = "collections/ansible_collections/stagecraft/platform"
    for tracked in (f"{platform}/playbooks", f"{platform}/roles", "collections"):
        files = [p for p in (REPO / tracked).rglob("*") if p.is_file()
                 and "__pycache__" not in p.parts]
        assert files, f"{tracked}/ has no files"
        for path in files:
            inside = f"stagecraft/_bundled/{path.relative_to(REPO)}"
            assert inside in names, f"{inside} missing from the wheel"
    assert "stagecraft/scaffold/stagecraft.yml.j2" in names


def test_wheel_leaves_out_the_projects_own_roadmap(wheel: Path) -> None:
    # The feature catalog and tools/ are for working on stagecraft, not for its users.
    names = zipfile.ZipFile(wheel).namelist()
    assert [n for n in names if n.startswith("tools/") or "features.yaml" in n
            or n.endswith("roadmap.py")] == []


def test_installed_wheel_finds_its_content_outside_the_repo(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "from stagecraft import paths;"
        "print(paths.content_root());print(paths.playbooks_dir().is_dir());"
        "print(paths.roles_dir().is_dir())"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, check=True,
    )
    root, playbooks_ok, roles_ok = result.stdout.split()
    assert Path(root) == site / "stagecraft" / "_bundled"
    assert playbooks_ok == "True" and roles_ok == "True"
