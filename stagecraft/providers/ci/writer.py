"""Writing rendered workflow files into a repository: never over a file that differs
unless forced, each file temp + rename, nothing at all in preview (dry run)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stagecraft.errors import UsageError
from stagecraft.providers.ci.base import WorkflowFile


@dataclass(frozen=True)
class WrittenFile:
    """What happened to one file: created, updated, unchanged (would-... in a dry run)."""

    path: str
    action: str
    purpose: str

    def to_dict(self) -> dict:
        return {"path": self.path, "action": self.action, "purpose": self.purpose}


def write_workflows(root: Path, files: Sequence[WorkflowFile], *, force: bool = False,
                    dry_run: bool = False) -> list[WrittenFile]:
    """Write ``files`` under ``root``. A file that exists with other text is refused
    (UsageError naming every such file) unless ``force``; checked for all files before
    any is written, so a refusal writes nothing."""
    actions: list[tuple[WorkflowFile, str]] = []
    for file in files:
        target = root / file.path
        if not target.exists():
            actions.append((file, "created"))
        elif target.read_text(encoding="utf-8") == file.text:
            actions.append((file, "unchanged"))
        else:
            actions.append((file, "updated"))
    differ = [f.path for f, action in actions if action == "updated"]
    if differ and not force:
        raise UsageError(
            f"{', '.join(differ)} already exist{'s' if len(differ) == 1 else ''} with other "
            "content",
            hint="compare them with `stagecraft ci init --dry-run --output json`, then run "
                 "again with --force to replace them (edits made by hand are lost)")
    written = []
    for file, action in actions:
        if action != "unchanged" and not dry_run:
            target = root / file.path
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f".{target.name}.tmp")
            temporary.write_text(file.text, encoding="utf-8")
            temporary.replace(target)
        shown = f"would be {action}" if dry_run and action != "unchanged" else action
        written.append(WrittenFile(file.path, shown, file.purpose))
    return written
