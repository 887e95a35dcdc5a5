"""The feature catalog (spec/features.yaml) against the design's FEATURES.md, and the
roadmap arithmetic (spec/gov/status-roadmap.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stagecraft import paths
from stagecraft.errors import StateError
from stagecraft.roadmap import Catalog, load_catalog, summarize

ROOT = Path(__file__).resolve().parents[2]
FEATURES_MD = Path("/work/shared/design/FEATURES.md")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def design_ids() -> list[str]:
    """Every feature id the design lists before its v2 section."""
    if not FEATURES_MD.is_file():
        pytest.skip(f"the design's catalog is not here: {FEATURES_MD}")
    text = FEATURES_MD.read_text(encoding="utf-8").split("\n## v2", 1)[0]
    return re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", text)


def test_the_real_catalog_is_the_one_stagecraft_reads(catalog: Catalog) -> None:
    assert paths.features_file().resolve() == ROOT / "spec" / "features.yaml"
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
