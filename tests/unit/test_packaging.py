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


def test_wheel_contains_playbooks_roles_collections_and_catalog(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    for tracked in ("playbooks", "roles", "collections"):
        files = [p for p in (REPO / tracked).rglob("*") if p.is_file()
                 and "__pycache__" not in p.parts]
        assert files, f"{tracked}/ has no files"
        for path in files:
            inside = f"stagecraft/_bundled/{path.relative_to(REPO)}"
            assert inside in names, f"{inside} missing from the wheel"
    assert "stagecraft/_bundled/spec/features.yaml" in names
    assert "stagecraft/scaffold/stagecraft.yml.j2" in names


def test_installed_wheel_finds_its_content_outside_the_repo(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "from stagecraft import paths;"
        "print(paths.content_root());print(paths.playbooks_dir().is_dir());"
        "print(paths.features_file().is_file())"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, check=True,
    )
    root, playbooks_ok, features_ok = result.stdout.split()
    assert Path(root) == site / "stagecraft" / "_bundled"
    assert playbooks_ok == "True" and features_ok == "True"
