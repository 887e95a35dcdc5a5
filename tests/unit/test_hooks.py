"""Deploy hooks run from .stagecraft/hooks/ with the STAGECRAFT_* variables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stagecraft.errors import ConfigError, ExitCode, HookFailed
from stagecraft.deploy.hooks import HookContext, Hooks, find_hooks

CONTEXT = HookContext(project="shop", environment="local", release="20261121T101500Z-3f9c2ab",
                      action="deploy", performer="dev@laptop", hosts=("local-1", "local-2"),
                      message="ship it")


def write_hook(project: Path, name: str, body: str, mode: int = 0o755) -> Path:
    path = project / ".stagecraft" / "hooks" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return path


def test_a_hook_gets_the_release_variables_and_runs_in_the_project(tmp_path: Path) -> None:
    write_hook(tmp_path, "pre-deploy",
               'python3 -c \'import json, os; print(json.dumps({k: v for k, v in os.environ.items()'
               ' if k.startswith("STAGECRAFT_")}))\' > seen.json\n')
    lines: list[str] = []
    hooks = Hooks.load(tmp_path, CONTEXT)
    assert hooks.run("pre-deploy", on_line=lines.append) is True
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen == {
        "STAGECRAFT_HOOK": "pre-deploy", "STAGECRAFT_PROJECT": "shop",
        "STAGECRAFT_ENVIRONMENT": "local", "STAGECRAFT_RELEASE": "20261121T101500Z-3f9c2ab",
        "STAGECRAFT_ACTION": "deploy", "STAGECRAFT_PERFORMER": "dev@laptop",
        "STAGECRAFT_PHASE": "lock", "STAGECRAFT_HOSTS": "local-1,local-2",
        "STAGECRAFT_MESSAGE": "ship it"}
    assert hooks.run("post-deploy") is False  # absent: nothing runs


def test_a_failing_hook_stops_with_its_output(tmp_path: Path) -> None:
    write_hook(tmp_path, "pre-build", "echo 'tests are red'\nexit 3\n")
    lines: list[str] = []
    with pytest.raises(HookFailed) as caught:
        Hooks.load(tmp_path, CONTEXT).run("pre-build", on_line=lines.append)
    error = caught.value
    assert error.exit_code == ExitCode.COMMAND
    assert "hook pre-build" in error.message and "exited with 3" in error.message
    assert "tests are red" in error.message
    assert "--skip-hooks" in error.hint
    assert lines == ["hook pre-build: tests are red"]


def test_skip_hooks_runs_nothing(tmp_path: Path) -> None:
    write_hook(tmp_path, "pre-build", "exit 1\n")
    assert Hooks.load(tmp_path, CONTEXT, skip=True).run("pre-build") is False


def test_a_hook_that_cannot_run_is_reported_before_the_release(tmp_path: Path) -> None:
    path = write_hook(tmp_path, "post-deploy", "true\n", mode=0o644)
    with pytest.raises(ConfigError) as caught:
        find_hooks(tmp_path)
    assert str(path) in caught.value.message and "chmod +x" in caught.value.hint


def test_batch_hooks_go_to_the_rollout_play_with_their_variables(tmp_path: Path) -> None:
    pre = write_hook(tmp_path, "pre-rollout", "true\n")
    write_hook(tmp_path, "pre-deploy", "true\n")
    hooks = Hooks.load(tmp_path, CONTEXT)
    assert hooks.batch_hooks() == {"pre-rollout": str(pre.resolve())}
    variables = hooks.context.batch_variables()
    assert variables["STAGECRAFT_PHASE"] == "rollout"
    assert "STAGECRAFT_HOOK" not in variables and "STAGECRAFT_HOSTS" not in variables
