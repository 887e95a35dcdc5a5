"""The feature catalog (spec/features.yaml) against the design's FEATURES.md, the
roadmap arithmetic, and `python -m tools.roadmap` (spec/gov/status-roadmap.md)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stagecraft.errors import ExitCode, StateError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tools/ is project tooling, not part of the package

from tools.roadmap import FEATURES_FILE, Catalog, load_catalog, summarize

FEATURES_MD = Path("/work/shared/design/FEATURES.md")


def roadmap(*args: str) -> subprocess.CompletedProcess:
    """`python -m tools.roadmap ARGS` from the repository root, as `make roadmap` runs it."""
    return subprocess.run([sys.executable, "-m", "tools.roadmap", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def design_ids() -> list[str]:
    """Every feature id the design lists before its v2 section."""
    if not FEATURES_MD.is_file():
        pytest.skip(f"the design's catalog is not here: {FEATURES_MD}")
    text = FEATURES_MD.read_text(encoding="utf-8").split("\n## v2", 1)[0]
    return re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", text)


def test_the_real_catalog_is_the_one_the_tool_reads(catalog: Catalog) -> None:
    assert FEATURES_FILE.resolve() == ROOT / "spec" / "features.yaml"
    assert len(catalog.features) > 0


def test_every_design_feature_is_in_the_catalog(catalog: Catalog) -> None:
    ids = design_ids()
    assert len(ids) >= 70  # the regex still finds the catalog (78 ids when written)
    assert "CORE_CONFIG" in ids and "CLI_COMMIT_SUGGEST" in ids
    missing = sorted(set(ids) - {f.id for f in catalog.features})
    assert missing == []


def test_catalog_ids_are_unique(catalog: Catalog) -> None:
    ids = [f.id for f in catalog.features]
    assert len(ids) == len(set(ids))


def test_every_feature_is_in_a_known_phase(catalog: Catalog) -> None:
    assert {str(f.phase) for f in catalog.features} <= set(catalog.phases)
    assert all((f.status == "v2") == (str(f.phase) == "v2") for f in catalog.features)


def test_done_features_have_a_spec_and_tests_that_exist(catalog: Catalog) -> None:
    problems = []
    for feature in catalog.features:
        if feature.status != "done":
            continue
        if not feature.spec or not (ROOT / feature.spec).is_file():
            problems.append(f"{feature.id}: spec {feature.spec!r} does not exist")
        if not feature.tests:
            problems.append(f"{feature.id}: no tests")
        problems += [f"{feature.id}: test {t} does not exist"
                     for t in feature.tests if not (ROOT / t).is_file()]
    assert problems == []


SYNTHETIC = {
    "version": 1,
    "phases": {"0": "Foundation", "1": "Interfaces", "2": "Empty", "governance": "Governance",
               "v2": "Later"},
    "features": [
        {"id": "A_ONE", "title": "a", "phase": 0, "status": "done"},
        {"id": "A_TWO", "title": "b", "phase": 0, "status": "done"},
        {"id": "A_THREE", "title": "c", "phase": 0, "status": "in-progress"},
        {"id": "B_ONE", "title": "d", "phase": 1, "status": "planned"},
        {"id": "B_TWO", "title": "e", "phase": 1, "status": "done"},
        {"id": "B_THREE", "title": "f", "phase": 1, "status": "planned"},
        {"id": "G_ONE", "title": "g", "phase": "governance", "status": "in-progress"},
        {"id": "V_ONE", "title": "h", "phase": "v2", "status": "v2"},
        {"id": "V_TWO", "title": "i", "phase": "v2", "status": "v2"},
    ],
}


def test_summarize_math() -> None:
    summary = summarize(Catalog.model_validate(SYNTHETIC))
    assert summary == {
        "phases": [  # phase "2" has no features: no row
            {"phase": "0", "label": "0. Foundation", "done": 2, "in_progress": 1, "total": 3,
             "percent": 66.7},
            {"phase": "1", "label": "1. Interfaces", "done": 1, "in_progress": 0, "total": 3,
             "percent": 33.3},
            {"phase": "governance", "label": "Governance", "done": 0, "in_progress": 1,
             "total": 1, "percent": 0.0},
            {"phase": "v2", "label": "Later", "done": 0, "in_progress": 0, "total": 2,
             "percent": 0.0},
        ],
        # v2 features are left out of the total: 3 done of 7.
        "total": {"done": 3, "total": 7, "percent": 42.9},
    }


def test_summarize_empty_catalog() -> None:
    summary = summarize(Catalog.model_validate({"version": 1, "phases": {"0": "x"}, "features": []}))
    assert summary == {"phases": [], "total": {"done": 0, "total": 0, "percent": 0.0}}


def test_duplicate_ids_are_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "features.yaml"
    path.write_text("version: 1\nphases: {'0': a}\nfeatures:\n"
                    "  - {id: X_ONE, title: a, phase: 0, status: done}\n"
                    "  - {id: X_ONE, title: b, phase: 0, status: planned}\n")
    with pytest.raises(StateError) as caught:
        load_catalog(path)
    assert caught.value.message == f"feature ids listed twice in {path}: X_ONE"
    assert caught.value.exit_code == 4


@pytest.mark.parametrize("text", [
    "version: 1\nphases: {}\nfeatures: [{id: lower_case, title: a, phase: 0, status: done}]\n",
    "version: 1\nphases: {}\nfeatures: [{id: X_ONE, title: a, phase: 0, status: finished}]\n",
    "version: 2\nphases: {}\nfeatures: []\n",
    "features: [\n",
])
def test_malformed_catalog_is_a_state_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "features.yaml"
    path.write_text(text)
    with pytest.raises(StateError) as caught:
        load_catalog(path)
    assert caught.value.message.startswith(f"cannot read the feature catalog {path}: ")
    assert caught.value.hint == "restore spec/features.yaml from git"


def test_missing_catalog_is_a_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="cannot read the feature catalog"):
        load_catalog(tmp_path / "absent.yaml")


def test_the_package_does_not_import_the_tool() -> None:
    importers = [str(p.relative_to(ROOT)) for p in (ROOT / "stagecraft").rglob("*.py")
                 if re.search(r"^\s*(from|import) tools\b", p.read_text(encoding="utf-8"),
                               re.MULTILINE)]
    assert importers == []


# --- python -m tools.roadmap -----------------------------------------------------------


def _catalog_counts() -> tuple[dict[str, dict], dict]:
    """Counted straight from spec/features.yaml, independently of tools.roadmap."""
    catalog = yaml.safe_load((ROOT / "spec" / "features.yaml").read_text(encoding="utf-8"))
    phases = {}
    for key in catalog["phases"]:
        members = [f for f in catalog["features"] if str(f["phase"]) == key]
        if members:
            phases[key] = {"done": sum(f["status"] == "done" for f in members),
                           "in_progress": sum(f["status"] == "in-progress" for f in members),
                           "total": len(members)}
    counted = [f for f in catalog["features"] if f["status"] != "v2"]
    return phases, {"done": sum(f["status"] == "done" for f in counted), "total": len(counted)}


def test_roadmap_json_counts_match_the_catalog() -> None:
    result = roadmap("--output", "json")
    assert (result.returncode, result.stderr) == (0, "")
    data = json.loads(result.stdout)
    phases, total = _catalog_counts()
    assert {row["phase"]: {k: row[k] for k in ("done", "in_progress", "total")}
            for row in data["phases"]} == phases
    assert {k: data["total"][k] for k in ("done", "total")} == total
    assert sum(p["total"] for k, p in phases.items() if k != "v2") == total["total"]


def test_roadmap_text() -> None:
    result = roadmap()
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    phases, total = _catalog_counts()
    assert lines[0].split() == ["phase", "done", "progress"]
    assert len(lines) == 1 + len(phases) + 1
    labels = yaml.safe_load((ROOT / "spec" / "features.yaml").read_text())["phases"]
    for line, (key, counts) in zip(lines[1:-1], phases.items()):
        label = f"{key}. {labels[key]}" if key.isdigit() else labels[key]
        assert line.startswith(label)
        assert f"{counts['done']}/{counts['total']}" in line
        assert line.endswith(f"{counts['in_progress']} in progress")
    percent = round(100 * total["done"] / total["total"])
    assert lines[-1].split() == ["all", "(without", "v2)", f"{total['done']}/{total['total']}",
                                 f"{percent}%"]


def test_roadmap_features_lists_every_feature() -> None:
    catalog = yaml.safe_load((ROOT / "spec" / "features.yaml").read_text())
    ids = [f["id"] for f in catalog["features"]]
    text = roadmap("--features").stdout
    listed = [line.split()[1] for line in text.splitlines() if line.startswith("  ")]
    assert listed == ids
    data = json.loads(roadmap("--features", "--output", "json").stdout)
    assert [f["id"] for f in data["features"]] == ids


def test_roadmap_broken_catalog_is_a_state_error(tmp_path: Path) -> None:
    broken = tmp_path / "features.yaml"
    broken.write_text("version: 1\nphases: {'0': Foundation}\nfeatures:\n"
                      "  - {id: CORE_CONFIG, title: a, phase: 0, status: planned}\n"
                      "  - {id: CORE_CONFIG, title: b, phase: 0, status: done}\n")
    result = roadmap("--catalog", str(broken))
    assert (result.returncode, result.stdout) == (ExitCode.STATE, "")
    assert result.stderr == f"error: feature ids listed twice in {broken}: CORE_CONFIG\n"


def test_roadmap_unreadable_catalog_names_the_file_without_a_traceback(tmp_path: Path) -> None:
    broken = tmp_path / "features.yaml"
    broken.write_text("features: [\n")
    result = roadmap("--catalog", str(broken), "--output", "json")
    assert result.returncode == ExitCode.STATE
    assert result.stderr.startswith(f"error: cannot read the feature catalog {broken}: ")
    assert result.stderr.endswith("hint: restore spec/features.yaml from git\n")
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout)["error"] == "StateError"
