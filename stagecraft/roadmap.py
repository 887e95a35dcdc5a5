"""The feature catalog (spec/features.yaml) and its completion by phase."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stagecraft import paths
from stagecraft.errors import StateError

Status = Literal["planned", "in-progress", "done", "v2"]


class Feature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Z][A-Z0-9_]+$", description="Feature id, e.g. CORE_CONFIG.")
    title: str = Field(description="What the feature is.")
    phase: Union[int, str] = Field(description="Roadmap phase (number), 'governance' or 'v2'.")
    status: Status = Field(description="planned, in-progress, done, or v2.")
    spec: Optional[str] = Field(None, description="Path of the feature's spec under spec/.")
    tests: list[str] = Field(default_factory=list, description="Test files that prove it.")


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = Field(description="Catalog format version.")
    phases: dict[str, str] = Field(description="Phase key -> label.")
    features: list[Feature] = Field(description="Every feature.")


def load_catalog(path: Path | None = None) -> Catalog:
    path = path or paths.features_file()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        catalog = Catalog.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise StateError(f"cannot read the feature catalog {path}: {exc}",
                         hint="restore spec/features.yaml from git") from None
    ids = [f.id for f in catalog.features]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise StateError(f"feature ids listed twice in {path}: {', '.join(duplicates)}")
    return catalog


def summarize(catalog: Catalog) -> dict:
    """Per phase: done, in progress, total, percent; v2 features are counted apart."""
    rows = []
    for key, label in catalog.phases.items():
        members = [f for f in catalog.features if str(f.phase) == key]
        if not members:
            continue
        done = sum(f.status == "done" for f in members)
        total = len(members)
        rows.append({
            "phase": key, "label": f"{key}. {label}" if key.isdigit() else label,
            "done": done, "in_progress": sum(f.status == "in-progress" for f in members),
            "total": total, "percent": round(100 * done / total, 1) if key != "v2" else 0.0,
        })
    counted = [f for f in catalog.features if f.status != "v2"]
    done = sum(f.status == "done" for f in counted)
    return {
        "phases": rows,
        "total": {"done": done, "total": len(counted),
                  "percent": round(100 * done / len(counted), 1) if counted else 0.0},
    }
