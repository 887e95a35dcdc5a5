"""CLI checks of migrations that need no fleet."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STAGECRAFT = str(Path(sys.executable).with_name("stagecraft"))


def shop(tmp_path: Path) -> Path:
    project = tmp_path / "shop"
    shutil.copytree(REPO / "examples" / "shop", project)
    (project / ".env.local").write_text("POSTGRES_PASSWORD=pw\nDATABASE_URL=postgresql://x\n")
    return project


def test_rollback_migrate_is_refused_for_an_engine_that_cannot_go_back(tmp_path: Path) -> None:
    done = subprocess.run([STAGECRAFT, "rollback", "-e", "local", "--migrate", "--yes"],
                          cwd=shop(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 5, done.stderr
    assert "raw engine cannot run migrations backwards" in done.stderr
    assert "Traceback" not in done.stderr


def test_migrate_run_needs_a_phase(tmp_path: Path) -> None:
    done = subprocess.run([STAGECRAFT, "migrate", "run", "-e", "local"], cwd=shop(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--phase" in done.stderr, done.stderr


def test_plan_names_the_migration_phases(tmp_path: Path) -> None:
    from stagecraft.config.loader import load_config
    from stagecraft.deploy.migrate import migration_hints

    env = load_config(shop(tmp_path) / "stagecraft.yml").environments["local"]
    hints = migration_hints(env)
    assert hints == {
        "migrate-pre": ["raw migrations (migrations/pre) from web's new image on local-1"],
        "migrate-post": ["raw migrations (migrations/post) from web's new image on local-1"]}
