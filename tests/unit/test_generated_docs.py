"""Generated files in the repo match the code that generates them."""

from __future__ import annotations

import json
from pathlib import Path

from stagecraft.config.jsonschema import config_json_schema
from stagecraft.config.reference import render

REPO = Path(__file__).resolve().parents[2]


def test_config_reference_is_current() -> None:
    committed = (REPO / "docs" / "config-reference.md").read_text(encoding="utf-8")
    assert committed == render(), (
        "docs/config-reference.md is stale: run "
        "`.venv/bin/python -m stagecraft.config.reference > docs/config-reference.md`"
    )


def test_committed_json_schema_is_current() -> None:
    committed = json.loads((REPO / "docs" / "stagecraft.schema.json").read_text(encoding="utf-8"))
    assert committed == config_json_schema(), (
        "docs/stagecraft.schema.json is stale: run "
        "`stagecraft schema --write docs/stagecraft.schema.json`"
    )


def test_reference_lists_every_field_of_service() -> None:
    from stagecraft.config.schema import Service

    text = render()
    section = text.split("## Service\n", 1)[1].split("\n## ", 1)[0]
    for name, info in Service.model_fields.items():
        assert f"| `{info.alias or name}` |" in section
