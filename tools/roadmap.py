"""`python -m tools.roadmap [--features] [--output json]`: completion of the feature
catalog (spec/features.yaml) by phase.

The catalog is this project's own roadmap, so it lives with the project's tooling
rather than in the shipped CLI: a user's deploy tool has no use for it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stagecraft.errors import StateError

ROOT = Path(__file__).resolve().parents[1]
FEATURES_FILE = ROOT / "spec" / "features.yaml"

Status = Literal["planned", "in-progress", "done", "v2"]


class Feature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Z][A-Z0-9_]+$", description="Feature id, e.g. CORE_CONFIG.")
    title: str = Field(description="What the feature is.")
    phase: int | str = Field(description="Roadmap phase (number), 'governance' or 'v2'.")
    status: Status = Field(description="planned, in-progress, done, or v2.")
    spec: str | None = Field(None, description="Path of the feature's spec under spec/.")
    tests: list[str] = Field(default_factory=list, description="Test files that prove it.")


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = Field(description="Catalog format version.")
    phases: dict[str, str] = Field(description="Phase key -> label.")
    features: list[Feature] = Field(description="Every feature.")


def load_catalog(path: Path = FEATURES_FILE) -> Catalog:
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


def text_lines(summary: dict, features: list[Feature]) -> list[str]:
    """The table by phase, the total without v2, then the features given (if any)."""
    lines = [f"{'phase':<28} {'done':>9}  progress"]
    for row in summary["phases"]:
        # From the counts, not the JSON's 1-decimal percent: 20.51% shows as 21%, not 20%.
        percent = row["percent"] and 100 * row["done"] / row["total"]
        bar = "#" * round(percent / 5)
        lines.append(f"{row['label']:<28} {row['done']:>3}/{row['total']:<4} "
                     f"[{bar:<20}] {percent:>3.0f}%  {row['in_progress']} in progress")
    total = summary["total"]
    percent = total["percent"] and 100 * total["done"] / total["total"]
    lines.append(f"{'all (without v2)':<28} {total['done']:>3}/{total['total']:<4} "
                 f"{percent:.0f}%")
    lines += [f"  {f.status:<12} {f.id:<32} {f.title}" for f in features]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.roadmap",
        description="Completion of the feature catalog (spec/features.yaml) by phase.")
    parser.add_argument("--features", action="store_true", help="List every feature too.")
    parser.add_argument("--output", choices=("text", "json"), default="text",
                        help="text for people, json for machines.")
    parser.add_argument("--catalog", type=Path, default=FEATURES_FILE, metavar="PATH",
                        help="The catalog to read (default: spec/features.yaml).")
    args = parser.parse_args(argv)

    try:
        catalog = load_catalog(args.catalog)
    except StateError as error:
        # Reported the way the stagecraft CLI reports errors, with its exit code.
        print(f"error: {error.message}", file=sys.stderr)
        if error.hint:
            print(f"hint: {error.hint}", file=sys.stderr)
        if args.output == "json":
            print(json.dumps(error.to_dict()))
        return int(error.exit_code)

    summary = summarize(catalog)
    if args.output == "json":
        if args.features:
            summary["features"] = [f.model_dump() for f in catalog.features]
        print(json.dumps(summary))
    else:
        print("\n".join(text_lines(summary, catalog.features if args.features else [])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
