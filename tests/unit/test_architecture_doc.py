"""docs/architecture.md (ARCH_OVERVIEW) and the README stand alone: they describe
this repository as it is, and nothing a user reads points outside it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"

# Files a user of a clone (or of the wheel) reads: docs, specs, code, roles, playbooks.
USER_FACING = ("README.md", "docs", "spec", "stagecraft", "collections",
               "inventories", "bench")
TEXT_SUFFIXES = {".md", ".py", ".yml", ".yaml", ".j2", ".txt", ".cfg", ".toml", ".sh"}


def user_facing_files() -> list[Path]:
    files = []
    for name in USER_FACING:
        path = ROOT / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES]
    return files


def test_nothing_cites_files_outside_the_repository() -> None:
    outside = re.compile(r"\.\./shared|shared/design|TESTBED\.md|ARCHITECTURE\.md")
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
             for p in user_facing_files()
             for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
             if outside.search(line)]
    assert found == []


@pytest.mark.parametrize("doc", ["README.md", "docs/architecture.md"])
def test_markdown_links_stay_inside_the_repository(doc: str) -> None:
    path = ROOT / doc
    text = path.read_text(encoding="utf-8")
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target) or target.startswith("#"):
            continue
        resolved = (path.parent / target.split("#", 1)[0]).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            bad.append(target)
    # A bare [name] with no target is a link that leads nowhere.
    bad += re.findall(r"^- \[[^\]]+\](?!\()", text, re.M)
    assert bad == []


def test_the_readme_points_at_the_architecture_page() -> None:
    assert "](docs/architecture.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_paths_the_architecture_page_names_exist() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:stagecraft|playbooks|roles|collections|molecule|tests|bench|"
                           r"spec|docs|examples|scripts|inventories)/[^`\s<>*]+)`", text))
    assert len(named) > 20  # the regex still finds the paths
    not_paths = {"stagecraft/host"}  # an image name
    missing = sorted(p for p in named - not_paths if not (ROOT / p.rstrip("/")).exists()
                     and not p.startswith("stagecraft/_bundled"))
    assert missing == []


def test_the_layout_block_lists_folders_that_exist() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    block = text.split("## Where things live", 1)[1].split("```", 2)[1]
    top = re.findall(r"^([a-z_][\w./-]*/)\s", block, re.M)
    inner = re.findall(r"^  ([a-z_]+/)\s", block, re.M)
    assert "stagecraft/" in top and "cli/" in inner
    assert [d for d in top if not (ROOT / d).is_dir()] == []
    assert [d for d in inner if not (ROOT / "stagecraft" / d).is_dir()] == []
    # ... and every folder of the package is there.
    package = {p.name + "/" for p in (ROOT / "stagecraft").iterdir()
               if p.is_dir() and not p.name.startswith(("_", "."))}
    assert package - set(inner) == set()


def test_the_entry_point_groups_it_names_are_the_real_ones() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    groups = set(project["entry-points"])
    named = set(re.findall(r"`(stagecraft\.(?:providers\.)?[a-z]+)`", text)) - {
        "stagecraft.platform", "stagecraft.yml"}
    assert named == groups
    for group in groups:
        for kind in project["entry-points"][group]:
            assert f"`{kind}`" in text, (group, kind)
