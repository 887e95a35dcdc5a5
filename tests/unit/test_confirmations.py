"""Questions before a change (deploy, rollback, lock release): only --yes/-y skips them.

--quiet prints less; on a terminal it still asks. A terminal is simulated by
patching AppContext.can_ask (CliRunner's stdin is never a TTY). The release engine,
the host probe and the lock are replaced by recorders: what is checked is the
command's decision to ask, not the rollout.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from stagecraft.cli.context import AppContext
from stagecraft.cli.main import cli
from stagecraft.errors import Interrupted, UsageError
from stagecraft.hosts.lock import LockInfo

CONFIG = """\
version: 1
project: { name: shop }
services:
  web: { image: "nginx:1", on: [app] }
environments:
  local: { hosts: [{ name: local-1, roles: [app] }] }
"""
PLAN = "plan: web on local-1: 1 change"
QUESTION = "apply this plan?"


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("STAGECRAFT_"):
            monkeypatch.delenv(name)
    (tmp_path / "stagecraft.yml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def terminal(monkeypatch: pytest.MonkeyPatch, present: bool) -> None:
    monkeypatch.setattr(AppContext, "can_ask", lambda self: present)


@pytest.fixture
def releases(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """deploy and rollback with a recording action: the engine's confirm step only."""
    from stagecraft.deploy import release
    from stagecraft.hosts.fleet import Fleet

    applied: list[str] = []

    def action(name):
        def run(fleet, options, say, on_event, **kwargs):
            # What the engine does once the plan is made (stagecraft.deploy.engine.execute).
            if options.confirm is not None and not options.confirm(PLAN) and not options.check:
                raise Interrupted("stopped before any change: the plan was not confirmed")
            applied.append(name)
            return SimpleNamespace(to_dict=lambda: {"release": None, "executed": False})
        return run

    monkeypatch.setattr(Fleet, "load", staticmethod(lambda env, project_dir: None))
    monkeypatch.setattr(release, "deploy", action("deploy"))
    monkeypatch.setattr(release, "rollback", action("rollback"))
    monkeypatch.setattr("stagecraft.ui.plan.plan_text", lambda plan: plan)
    return applied


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input, prog_name="stagecraft",
                              catch_exceptions=False)


@pytest.mark.parametrize("command", ["deploy", "rollback"])
@pytest.mark.parametrize("quiet", [("-q", "{command}"), ("{command}", "--quiet")],
                         ids=["before", "after"])
def test_quiet_on_a_terminal_still_asks_and_no_stops(monkeypatch, releases, command, quiet):
    terminal(monkeypatch, True)
    args = [part.format(command=command) for part in quiet]
    with pytest.raises(Interrupted):
        invoke(*args, input="n\n")
    assert releases == []


@pytest.mark.parametrize("command", ["deploy", "rollback"])
def test_quiet_on_a_terminal_shows_the_plan_it_asks_about(monkeypatch, releases, command):
    terminal(monkeypatch, True)
    result = invoke("-q", command, input="y\n")
    assert result.exit_code == 0
    assert PLAN in result.stderr and QUESTION in result.stderr
    assert releases == [command]


@pytest.mark.parametrize("yes", ["--yes", "-y"])
@pytest.mark.parametrize("command", ["deploy", "rollback"])
def test_only_yes_skips_the_question(monkeypatch, releases, command, yes):
    terminal(monkeypatch, True)
    result = invoke("-q", command, yes)
    assert result.exit_code == 0
    assert QUESTION not in result.stderr and PLAN not in result.stderr
    assert releases == [command]


def test_without_a_terminal_nobody_is_asked(monkeypatch, releases):
    # Unchanged: with no terminal the plan is printed and applied (--yes is implied).
    terminal(monkeypatch, False)
    result = invoke("deploy")
    assert result.exit_code == 0
    assert PLAN in result.stderr and QUESTION not in result.stderr
    quiet = invoke("-q", "deploy")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert releases == ["deploy", "deploy"]


@pytest.fixture
def held_lock(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A lock held by a killed deploy; records what lock release removes."""
    from stagecraft.cli import lock as lock_cli

    released: list[str] = []
    info = LockInfo(holder="ci@elsewhere", pid=42, time="2026-01-01T00:00:00Z",
                    release="20260101T000000Z-ab12")
    env = SimpleNamespace(name="local", project=SimpleNamespace(name="shop"))
    monkeypatch.setattr(lock_cli, "_primary", lambda app: (env, SimpleNamespace(name="local-1")))
    monkeypatch.setattr("stagecraft.hosts.lock.read", lambda host, project, environment: info)

    def release(host, project, environment, expected):
        released.append(environment)
        return True

    monkeypatch.setattr("stagecraft.hosts.lock.release", release)
    return released


@pytest.mark.parametrize("quiet", [("-q", "lock", "release"), ("lock", "release", "--quiet")],
                         ids=["before", "after"])
def test_quiet_does_not_release_the_lock_without_asking(monkeypatch, held_lock, quiet):
    terminal(monkeypatch, True)
    declined = invoke(*quiet, input="n\n")
    assert "release it?" in declined.stderr
    assert declined.exit_code != 0 and held_lock == []
    accepted = invoke(*quiet, input="y\n")
    assert accepted.exit_code == 0 and held_lock == ["local"]


def test_lock_release_with_yes_does_not_ask(monkeypatch, held_lock):
    terminal(monkeypatch, True)
    result = invoke("-q", "lock", "release", "--yes")
    assert result.exit_code == 0 and "release it?" not in result.stderr
    assert held_lock == ["local"]


def test_lock_release_without_a_terminal_needs_yes_even_quiet(monkeypatch, held_lock):
    terminal(monkeypatch, False)
    with pytest.raises(UsageError, match="no terminal to ask on"):
        invoke("-q", "lock", "release")
    assert held_lock == []


# --------------------------------------------- infra up: trusting a new host key

class AskingCloud:
    """A cloud whose `up` asks about one host key, as cloud `ssh` does."""

    capabilities = SimpleNamespace(disposable_hosts=False)

    def __init__(self) -> None:
        self.answers: list[bool | None] = []

    def up(self, spec, state, *, log, confirm, prune=False, provisioner=None):
        self.answers.append(None if confirm is None else confirm(
            "host web-1 (192.0.2.7:22) offers ED25519 key SHA256:abc; trust it?"))
        return []


@pytest.fixture
def asking_cloud(monkeypatch: pytest.MonkeyPatch) -> AskingCloud:
    cloud = AskingCloud()
    monkeypatch.setattr("stagecraft.cli.infra._context",
                        lambda app: (SimpleNamespace(name="local"), cloud, None, None))
    return cloud


@pytest.mark.parametrize(("answer", "trusted"), [("y\n", True), ("n\n", False), ("\n", False)])
def test_infra_up_asks_on_a_terminal_before_trusting_a_host_key(
        monkeypatch: pytest.MonkeyPatch, asking_cloud: AskingCloud, answer: str,
        trusted: bool) -> None:
    terminal(monkeypatch, True)
    result = invoke("infra", "up", input=answer)
    assert result.exit_code == 0, result.output
    assert asking_cloud.answers == [trusted]
    assert ("host web-1 (192.0.2.7:22) offers ED25519 key SHA256:abc; trust it? [y/N]"
            in result.stderr)


def test_infra_up_without_a_terminal_gives_the_cloud_nobody_to_ask(
        monkeypatch: pytest.MonkeyPatch, asking_cloud: AskingCloud) -> None:
    terminal(monkeypatch, False)
    assert invoke("infra", "up").exit_code == 0
    assert asking_cloud.answers == [None]


@pytest.mark.parametrize("present", [True, False])
def test_accept_new_host_keys_says_yes_without_asking(
        monkeypatch: pytest.MonkeyPatch, asking_cloud: AskingCloud, present: bool) -> None:
    terminal(monkeypatch, present)
    result = invoke("infra", "up", "--accept-new-host-keys")
    assert result.exit_code == 0 and "trust it?" not in result.output
    assert asking_cloud.answers == [True]
