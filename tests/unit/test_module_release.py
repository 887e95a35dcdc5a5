"""The release layout helpers (module_utils/_release.py) and the release_files
module, run the way Ansible runs it on a host (its own Python process reading its
arguments from a file), on a temporary directory. No Docker needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / "collections"
MODULES = COLLECTIONS / "ansible_collections/stagecraft/platform/plugins/modules"
sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.stagecraft.platform.plugins.module_utils._release import (  # noqa: E402
    ReleaseError,
    ReleaseFile,
    append_audit,
    build_tree,
    check_relative_path,
    check_release_id,
    current_release,
    parse_mode,
    publish_tree,
    read_tree,
    release_files,
    release_ids,
    switch_current,
)


def run_module(name: str, args: dict[str, Any], tmp_path: Path,
               check: bool = False) -> dict[str, Any]:
    """Run a module of the collection as Ansible does on a host; its JSON result."""
    args_file = tmp_path / f"args-{name}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {
        **args, "_ansible_check_mode": check, "_ansible_tmpdir": str(tmp_path)}}))
    proc = subprocess.run([sys.executable, str(MODULES / f"{name}.py"), str(args_file)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(COLLECTIONS)})
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


FILES = [
    {"path": "compose.yml", "content": "services: {}\n", "mode": "0644"},
    {"path": "env/web.env", "content": "TOKEN=very-secret-value\n", "mode": "0600"},
    {"path": "release.json", "content": "{}\n"},
]


# --------------------------------------------------------------------- helpers


@pytest.mark.parametrize("path", [
    "/etc/passwd", "../escape", "env/../../escape", "a/../../b", "", "  ", ".", "a\\b",
])
def test_paths_outside_the_release_dir_are_refused(path: str) -> None:
    with pytest.raises(ReleaseError):
        check_relative_path(path)


def test_paths_are_normalised() -> None:
    assert check_relative_path("./env//web.env") == "env/web.env"


@pytest.mark.parametrize(("value", "mode"), [("0600", 0o600), ("644", 0o644), (0o640, 0o640),
                                              (None, 0o644), ("", 0o644)])
def test_modes_are_octal_strings_or_numbers(value: object, mode: int) -> None:
    assert parse_mode(value, "f") == mode


@pytest.mark.parametrize("value", ["rw-r--r--", "0999", True, 0o10000])
def test_bad_modes_are_refused(value: object) -> None:
    with pytest.raises(ReleaseError, match="file f: mode"):
        parse_mode(value, "f")


@pytest.mark.parametrize("release_id", ["", "../x", ".hidden", "a/b", "x" * 200, "a b"])
def test_bad_release_ids_are_refused(release_id: str) -> None:
    with pytest.raises(ReleaseError, match="is not valid"):
        check_release_id(release_id)


def test_a_path_listed_twice_or_as_file_and_directory_is_refused() -> None:
    with pytest.raises(ReleaseError, match="listed twice"):
        release_files([{"path": "a"}, {"path": "./a"}])
    with pytest.raises(ReleaseError, match="env is listed as a file and as the directory"):
        release_files([{"path": "env"}, {"path": "env/web.env"}])


def test_a_tree_is_built_published_and_read_back(tmp_path: Path) -> None:
    files = release_files(FILES)
    staging = build_tree(str(tmp_path), ".r1.tmp-", files)
    publish_tree(staging, str(tmp_path / "r1"))
    assert read_tree(str(tmp_path / "r1")) == files
    assert (tmp_path / "r1/env/web.env").stat().st_mode & 0o777 == 0o600
    assert files["release.json"] == ReleaseFile("release.json", b"{}\n", 0o644)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r1"]


def test_publishing_over_a_release_replaces_it_whole(tmp_path: Path) -> None:
    target = tmp_path / "r1"
    publish_tree(build_tree(str(tmp_path), ".t-", release_files(FILES)), str(target))
    newer = release_files([{"path": "compose.yml", "content": "services: {web: {}}\n"}])
    publish_tree(build_tree(str(tmp_path), ".t-", newer), str(target))
    assert read_tree(str(target)) == newer  # env/ and release.json are gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r1"]  # no staging left


def test_a_link_inside_a_release_makes_it_unreadable_as_files(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r/compose.yml").symlink_to("/etc/hostname")
    assert read_tree(str(tmp_path / "r")) is None


def test_current_switches_by_rename_and_reads_back(tmp_path: Path) -> None:
    assert current_release(str(tmp_path)) is None
    switch_current(str(tmp_path), "20261121T100000Z-a")
    switch_current(str(tmp_path), "20261121T100100Z-b")
    assert os.readlink(tmp_path / "current") == "releases/20261121T100100Z-b"
    assert current_release(str(tmp_path)) == "20261121T100100Z-b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current"]


def test_audit_lines_are_appended_as_json(tmp_path: Path) -> None:
    append_audit(str(tmp_path), {"release": "a", "services": {"web": "rolled"}})
    append_audit(str(tmp_path), {"release": "b"})
    lines = (tmp_path / "audit.log").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"release": "a", "services": {"web": "rolled"}}, {"release": "b"}]


def test_release_ids_are_the_release_directories_only(tmp_path: Path) -> None:
    releases = tmp_path / "releases"
    for name in ["b", "a", ".a.tmp-x"]:
        (releases / name).mkdir(parents=True)
    (releases / "file").write_text("")
    (releases / "link").symlink_to(releases / "a")
    assert release_ids(str(tmp_path)) == ["a", "b"]


# ---------------------------------------------------------------------- module


def test_the_module_writes_the_release_then_changes_nothing(tmp_path: Path) -> None:
    args = {"base_dir": str(tmp_path), "release_id": "20261121T100000Z-abc", "files": FILES}
    first = run_module("release_files", args, tmp_path)
    assert first["changed"] is True, first
    release = tmp_path / "releases/20261121T100000Z-abc"
    assert first["release_dir"] == str(release)
    assert first["files"] == ["compose.yml", "env/web.env", "release.json"]
    assert (release / "env/web.env").read_text() == "TOKEN=very-secret-value\n"
    assert (release / "env/web.env").stat().st_mode & 0o777 == 0o600
    second = run_module("release_files", args, tmp_path)
    assert second["changed"] is False, second
    # The secret content is a no_log value: not in what the module returns.
    assert "very-secret-value" not in json.dumps(first) + json.dumps(second)


def test_the_module_rewrites_a_release_whose_files_differ(tmp_path: Path) -> None:
    args = {"base_dir": str(tmp_path), "release_id": "r1", "files": FILES}
    run_module("release_files", args, tmp_path)
    (tmp_path / "releases/r1/env/web.env").chmod(0o644)
    (tmp_path / "releases/r1/stray").write_text("left over")
    again = run_module("release_files", args, tmp_path)
    assert again["changed"] is True and again["existed"] is True
    assert sorted(p.name for p in (tmp_path / "releases/r1").iterdir()) == [
        "compose.yml", "env", "release.json"]
    assert (tmp_path / "releases/r1/env/web.env").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in (tmp_path / "releases").iterdir()) == ["r1"]


def test_check_mode_reports_a_change_and_writes_nothing(tmp_path: Path) -> None:
    args = {"base_dir": str(tmp_path), "release_id": "r1", "files": FILES}
    result = run_module("release_files", args, tmp_path, check=True)
    assert result["changed"] is True
    assert not (tmp_path / "releases").exists()


def test_the_module_refuses_a_path_escaping_the_release(tmp_path: Path) -> None:
    args = {"base_dir": str(tmp_path), "release_id": "r1",
            "files": [{"path": "../../outside", "content": "x"}]}
    result = run_module("release_files", args, tmp_path)
    assert result["failed"] is True
    assert result["msg"] == "file path '../../outside' escapes the release dir"
    assert not (tmp_path / "releases").exists()


def test_the_module_refuses_a_host_that_is_not_bootstrapped(tmp_path: Path) -> None:
    args = {"base_dir": str(tmp_path / "missing"), "release_id": "r1", "files": FILES}
    result = run_module("release_files", args, tmp_path)
    assert result["failed"] is True
    assert "does not exist: bootstrap the host first" in result["msg"]


# ------------------------------------------------------- the release module


def test_the_release_module_uploads_in_its_first_step(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    args = {"steps": ["upload"], "files": FILES, "project_name": "shop-production",
            "base_dir": str(tmp_path / "env"), "release_id": "R1"}
    first = run_module("release", args, tmp_path)
    assert first["changed"] is True, first
    assert set(first["steps"]) == {"upload"}
    assert first["steps"]["upload"]["files"] == ["compose.yml", "env/web.env", "release.json"]
    assert first["steps"]["upload"]["seconds"] >= 0
    assert "very-secret-value" not in json.dumps(first)
    assert read_tree(str(tmp_path / "env/releases/R1")) is not None
    timing = first["timing"]
    assert timing["loaded"] <= timing["ready"] <= timing["ended"], timing
    assert timing["ended"] - timing["loaded"] >= first["steps"]["upload"]["seconds"] - 0.01
    again = run_module("release", args, tmp_path)
    assert again["changed"] is False and again["steps"]["upload"]["changed"] is False


def test_the_release_module_names_the_step_that_failed(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    args = {"steps": ["upload", "pull", "rollout"], "project_name": "shop-production",
            "base_dir": str(tmp_path / "env"), "release_id": "R1"}
    result = run_module("release", args, tmp_path)
    assert result["failed"] is True and result["step"] == "upload"
    assert "needs files" in result["msg"]
    assert result["timing"]["ended"] >= result["timing"]["ready"], result["timing"]
    assert set(result["steps"]) == {"upload"}


def test_a_rollback_to_a_release_the_host_lacks_fails_in_the_pull_step(tmp_path: Path) -> None:
    (tmp_path / "env/releases/R0").mkdir(parents=True)
    args = {"steps": ["pull", "rollout"], "project_name": "shop-production",
            "base_dir": str(tmp_path / "env"), "release_id": "R1", "action": "rollback"}
    result = run_module("release", args, tmp_path)
    assert result["failed"] is True and result["step"] == "pull"
    assert "release R1 is not on this host" in result["msg"] and "R0" in result["msg"]
    assert result["steps"]["pull"]["releases"] == ["R0"]
