"""End to end: deploys that fail, are killed or race, on a two-host local fleet.

One fleet for the module (edge+app local-1, app local-2; rollout.batch 1, so one
batch per host). Kill points are made deterministic with hooks the tests write
into the project's .stagecraft/hooks/: a hook that pauses writes a marker file
and waits for a "go" file; the test acts (kill -9, SIGINT, docker stop) when the
marker appears, then lets the hook go on.

1. every hook runs, in order, with the right STAGECRAFT_* variables;
2. a non-executable hook is a config error; a failing pre-deploy hook stops the
   deploy (exit 9) with nothing changed and the lock free; --skip-hooks deploys;
3. kill -9 of the CLI (a) in pre-build, before the lock; (b) in the second
   rollout batch: stale lock, deploy refused, `lock release`, deploy again;
   (c) in post-deploy, after the release is recorded and the lock released;
4. Ctrl-C (SIGINT) in the second batch: exit 130, lock free, "interrupted";
5. the second host's container stopped mid-deploy: exit 6 naming it, the first
   host listed as switched; `infra up` restarts it, the next deploy succeeds;
6. two deploys at once: one succeeds, the other is refused naming the holder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from shop_fleet import (ENV, STAGECRAFT, WITHOUT_DB, Edge, copy_example, fleet, host_records, project_name,
                        releases, set_env_value, stagecraft)

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

# How long a paused hook waits for its "go" file before it goes on by itself:
# a hook orphaned by a failed test must not sleep for ever.
PAUSE_SECONDS = 180


class Background:
    """A stagecraft command running in the background, its output going to files
    (a pipe nobody reads could fill and block it)."""

    def __init__(self, project: Path, logs: Path, *args: str) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        stamp = uuid.uuid4().hex[:6]
        self.stdout_path = logs / f"{stamp}.stdout"
        self.stderr_path = logs / f"{stamp}.stderr"
        with self.stdout_path.open("w") as out, self.stderr_path.open("w") as err:
            self.proc = subprocess.Popen([STAGECRAFT, *args], cwd=project, stdout=out,
                                         stderr=err, text=True, env=ENV)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float = 900) -> int:
        return self.proc.wait(timeout=timeout)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> None:
        """Kill it if it still runs (cleanup after a failed assertion)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=60)


# ------------------------------------------------------------------- hooks

HOOK_PROGRAM = '''#!{python}
# Written by tests/e2e/test_failures.py: logs its STAGECRAFT_* variables, then
# pauses (marker file, then wait for the go file) or fails if told to.
import json, os, sys, time
from pathlib import Path

CONFIG = {config!r}
name = os.environ.get("STAGECRAFT_HOOK", "?")
log = Path(CONFIG["log"])
calls = 0
if log.exists():
    calls = sum(1 for line in log.read_text().splitlines() if json.loads(line)["hook"] == name)
entry = {{"hook": name, "call": calls + 1, "cwd": os.getcwd(), "pid": os.getpid(),
         "env": {{k: v for k, v in os.environ.items() if k.startswith("STAGECRAFT_")}}}}
with log.open("a") as handle:
    handle.write(json.dumps(entry) + "\\n")
if CONFIG.get("pause_on_call") == calls + 1:
    marker = Path(CONFIG["marker"])
    marker.with_suffix(".tmp").write_text(json.dumps(entry))
    marker.with_suffix(".tmp").rename(marker)
    deadline = time.monotonic() + CONFIG["pause_seconds"]
    while not Path(CONFIG["go"]).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
if CONFIG.get("fail"):
    print(CONFIG["fail"])
    sys.exit(CONFIG.get("exit", 1))
'''


class Hooks:
    """Writes hooks into the project's .stagecraft/hooks/; all log to one file."""

    def __init__(self, project: Path, work: Path) -> None:
        self.dir = project / ".stagecraft" / "hooks"
        self.work = work
        self.log = work / "hooks.jsonl"
        self.marker = work / "paused.json"
        self.go = work / "go"

    def add(self, name: str, *, pause_on_call: int | None = None, fail: str | None = None,
            exit_code: int = 1) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        config = {"log": str(self.log), "marker": str(self.marker), "go": str(self.go),
                  "pause_on_call": pause_on_call, "pause_seconds": PAUSE_SECONDS,
                  "fail": fail, "exit": exit_code}
        path = self.dir / name
        path.write_text(HOOK_PROGRAM.format(python=sys.executable, config=config))
        path.chmod(0o755)
        return path

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def wait_for_pause(self, command: Background, timeout: float = 600) -> dict:
        """The paused hook's entry, once it pauses; fails if the command ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.marker.exists():
                return json.loads(self.marker.read_text())
            if command.proc.poll() is not None:
                raise AssertionError(f"the command ended ({command.proc.returncode}) before "
                                     f"the hook paused:\n{command.stderr[-6000:]}")
            time.sleep(0.1)
        raise AssertionError(f"no hook paused within {timeout} s")

    def release(self) -> None:
        self.go.touch()

    def clear(self) -> None:
        self.release()  # a hook still paused (after a failure) goes on and ends
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def hooks(project: Path, tmp_path: Path):
    writer = Hooks(project, tmp_path)
    yield writer
    writer.clear()


# ----------------------------------------------------------------- the fleet


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    with fleet(copy_example(tmp_path_factory.mktemp("failures"), "f", WITHOUT_DB)) as directory:
        yield directory


@pytest.fixture(scope="module")
def edge(project: Path) -> Edge:
    return Edge.of(project)


def lock_status(project: Path) -> dict:
    status = stagecraft(project, "lock", "status", "--output", "json")
    assert status.returncode == 0, status.stderr
    return json.loads(status.stdout)


def deploy(project: Path, *args: str) -> dict:
    """A deploy that must succeed; returns its release record."""
    result = stagecraft(project, "deploy", "--yes", "--output", "json", *args)
    assert result.returncode == 0, result.stderr[-6000:]
    release = json.loads(result.stdout.splitlines()[-1])["release"]
    assert release["result"] == "succeeded"
    return release


def assert_serves(edge: Edge, version: str) -> None:
    """Every web container answering through the edge (two per host, both hosts
    balanced over) serves ``version``."""
    seen = edge.versions_by_container()
    assert len(seen) >= 2 and all(v == {version} for v in seen.values()), seen


def current_releases(project: Path) -> dict[str, str | None]:
    """The release each host's ``current`` points at, read from the hosts."""
    status = stagecraft(project, "status", "--output", "json")
    assert status.returncode == 0, status.stderr[-4000:]
    return {h["host"]: h["current_release"] for h in json.loads(status.stdout)["hosts"]}


def descendants(pid: int) -> dict[int, str]:
    """The live processes below ``pid``: pid -> command line (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found[child] = command_line(child) or ""
        todo.extend(children.get(child, []))
    return found


def command_line(pid: int) -> str | None:
    """``pid``'s command line, or None when it is gone (or a zombie)."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0]
        if state == "Z":
            return None
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None


def survivors(processes: dict[int, str], timeout: float = 30) -> dict[int, str]:
    """Those of ``processes`` still running (same command line) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        alive = {pid: cmd for pid, cmd in processes.items() if command_line(pid) == cmd}
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.5)


def ansible_playbooks(processes: dict[int, str]) -> dict[int, str]:
    return {pid: cmd for pid, cmd in processes.items() if "ansible-playbook" in cmd}


# ------------------------------------------------------------------ 1. hooks


def test_hooks_run_in_order_with_their_variables(project: Path, edge: Edge, hooks: Hooks) -> None:
    for name in ("pre-build", "pre-deploy", "pre-rollout", "post-rollout", "post-deploy"):
        hooks.add(name)
    set_env_value(project, "APP_VERSION", "v1")
    release = deploy(project, "-m", "hooks test")
    assert_serves(edge, "v1")

    calls = hooks.calls()
    names = [c["hook"] for c in calls]
    assert names == ["pre-build", "pre-deploy", "pre-rollout", "post-rollout",
                     "pre-rollout", "post-rollout", "post-deploy"], names
    batches = [c["env"]["STAGECRAFT_HOSTS"] for c in calls[2:6]]
    # One batch per host, each host's pre- and post-rollout see the same host.
    assert batches[0] == batches[1] and batches[2] == batches[3], batches
    assert sorted([batches[0], batches[2]]) == ["local-1", "local-2"], batches
    name = project_name(project)
    phases = {"pre-build": "build", "pre-deploy": "lock", "pre-rollout": "rollout",
              "post-rollout": "rollout", "post-deploy": "finalize"}
    for call in calls:
        env = call["env"]
        assert env["STAGECRAFT_HOOK"] == call["hook"]
        assert env["STAGECRAFT_RELEASE"] == release["id"], call
        assert env["STAGECRAFT_ACTION"] == "deploy", call
        assert env["STAGECRAFT_PHASE"] == phases[call["hook"]], call
        assert env["STAGECRAFT_PROJECT"] == name, call
        assert env["STAGECRAFT_ENVIRONMENT"] == "local", call
        assert env["STAGECRAFT_MESSAGE"] == "hooks test", call
        assert "@" in env["STAGECRAFT_PERFORMER"], call
        assert Path(call["cwd"]).resolve() == project.resolve(), call
        if call["hook"] in ("pre-build", "pre-deploy", "post-deploy"):
            assert env["STAGECRAFT_HOSTS"] == "local-1,local-2", call


# ---------------------------------------------------------- 2. hook failures


def test_a_hook_that_is_not_executable_is_a_config_error(project: Path, hooks: Hooks) -> None:
    before = releases(project)
    path = hooks.add("pre-deploy")
    path.chmod(0o644)
    result = stagecraft(project, "deploy", "--yes", "--skip-build")
    assert result.returncode == 3, result.stderr[-4000:]
    assert "pre-deploy" in result.stderr and "executable" in result.stderr, result.stderr
    assert hooks.calls() == []
    assert releases(project) == before
    assert lock_status(project)["held"] is False


def test_a_failing_pre_deploy_hook_stops_the_deploy(project: Path, edge: Edge,
                                                    hooks: Hooks) -> None:
    hooks.add("pre-deploy", fail="pre-deploy says no: the change window is closed", exit_code=4)
    hooks.add("pre-build")  # runs only when deploy builds: not with --skip-build
    set_env_value(project, "APP_VERSION", "v2")
    before = releases(project)
    result = stagecraft(project, "deploy", "--yes", "--skip-build")
    assert result.returncode == 9, result.stderr[-4000:]
    assert "hook pre-deploy" in result.stderr, result.stderr[-4000:]
    assert "pre-deploy says no: the change window is closed" in result.stderr
    assert "--skip-hooks" in result.stderr
    assert [c["hook"] for c in hooks.calls()] == ["pre-deploy"]
    assert lock_status(project)["held"] is False
    assert_serves(edge, "v1")
    after = releases(project)
    assert len(after) == len(before) + 1
    assert after[0]["result"] == "failed", after[0]
    assert not any(h["switched"] for h in after[0]["hosts"].values()), after[0]["hosts"]

    release = deploy(project, "--skip-build", "--skip-hooks")
    assert all(h["switched"] for h in release["hosts"].values())
    assert len(hooks.calls()) == 1  # --skip-hooks ran none
    assert_serves(edge, "v2")


def test_a_failing_pre_build_hook_is_recorded_as_failed(project: Path, hooks: Hooks) -> None:
    hooks.add("pre-build", fail="pre-build says no", exit_code=2)
    before = releases(project)
    result = stagecraft(project, "deploy", "--yes")
    assert result.returncode == 9, result.stderr[-4000:]
    assert "hook pre-build" in result.stderr and "pre-build says no" in result.stderr
    assert lock_status(project)["held"] is False
    after = releases(project)
    assert len(after) == len(before) + 1, "no release was recorded"
    assert after[0]["result"] == "failed", after[0]


# -------------------------------------------------------------- 3. kill -9


def kill_when_paused(hooks: Hooks, command: Background) -> tuple[dict, dict[int, str]]:
    """SIGKILL the CLI once a hook pauses; returns the hook's entry and the CLI's
    processes at that moment."""
    paused = hooks.wait_for_pause(command)
    below = descendants(command.pid)
    os.kill(command.pid, signal.SIGKILL)
    assert command.wait(timeout=60) == -signal.SIGKILL
    return paused, below


def test_kill_in_pre_build_leaves_no_lock(project: Path, edge: Edge, hooks: Hooks,
                                          tmp_path: Path) -> None:
    hooks.add("pre-build", pause_on_call=1)
    set_env_value(project, "APP_VERSION", "v3")
    before = releases(project)
    command = Background(project, tmp_path, "deploy", "--yes")
    try:
        kill_when_paused(hooks, command)
    finally:
        command.stop()
    after = releases(project)  # the ledger loads
    assert not [r for r in after if r["result"] == "running"], after[:2]
    new = after[: len(after) - len(before)]
    assert all(r["result"] == "interrupted" for r in new), new
    assert lock_status(project)["held"] is False  # it was never taken
    hooks.clear()
    release = deploy(project, "--skip-build")
    assert all(h["switched"] for h in release["hosts"].values())
    assert_serves(edge, "v3")


def test_kill_in_pre_build_is_recorded_as_interrupted(project: Path, hooks: Hooks,
                                                      tmp_path: Path) -> None:
    hooks.add("pre-build", pause_on_call=1)
    before = releases(project)
    command = Background(project, tmp_path, "deploy", "--yes")
    try:
        kill_when_paused(hooks, command)
    finally:
        command.stop()
    after = releases(project)
    assert len(after) == len(before) + 1, "the killed deploy was not recorded"
    assert after[0]["result"] == "interrupted", after[0]


def test_kill_in_the_second_batch_leaves_a_stale_lock(project: Path, edge: Edge, hooks: Hooks,
                                                      tmp_path: Path) -> None:
    hooks.add("pre-rollout", pause_on_call=2)
    set_env_value(project, "APP_VERSION", "v4")
    command = Background(project, tmp_path, "deploy", "--yes", "--skip-build", "-m", "killed")
    left: dict[int, str] = {}
    try:
        paused, below = kill_when_paused(hooks, command)
        assert ansible_playbooks(below), f"no ansible-playbook ran below the CLI: {below}"
        # ansible-playbook and its workers end with the CLI (stagecraft/ansible/guard.py).
        left = ansible_playbooks(survivors(below, timeout=15))
    finally:
        command.stop()
        hooks.release()
        for pid, cmd in survivors(left, timeout=0).items():
            os.kill(pid, signal.SIGKILL)
    first, second = hooks.calls()[0]["env"]["STAGECRAFT_HOSTS"], paused["env"]["STAGECRAFT_HOSTS"]
    assert sorted([first, second]) == ["local-1", "local-2"]
    killed_release = paused["env"]["STAGECRAFT_RELEASE"]
    current = current_releases(project)
    assert not left, f"ansible-playbook outlived the killed CLI: {left}"
    assert current.get(second) != killed_release, current  # no orphan switched it later
    assert current[first] == killed_release, current

    lock = lock_status(project)
    assert lock["held"] is True and lock["stale"] is True, lock
    assert lock["pid"] == command.pid and lock["release"] == killed_release, lock
    assert lock["message"] == "killed" and "@" in lock["holder"], lock
    newest = releases(project)[0]
    assert newest["id"] == killed_release and newest["result"] == "interrupted", newest
    assert "killed" in newest["error"]["message"], newest["error"]

    refused = stagecraft(project, "deploy", "--yes", "--skip-build")
    assert refused.returncode == 7, refused.stderr[-4000:]
    assert "lock release" in refused.stderr, refused.stderr[-4000:]
    released = stagecraft(project, "lock", "release", "--yes")
    assert released.returncode == 0, released.stderr
    assert lock_status(project)["held"] is False

    hooks.clear()
    release = deploy(project, "--skip-build")
    assert all(h["switched"] for h in release["hosts"].values()), release["hosts"]
    assert releases(project)[0]["id"] == release["id"]
    assert set(current_releases(project).values()) == {release["id"]}
    assert_serves(edge, "v4")


def test_kill_in_post_deploy_after_the_release_is_recorded(project: Path, edge: Edge,
                                                           hooks: Hooks, tmp_path: Path) -> None:
    hooks.add("post-deploy", pause_on_call=1)
    set_env_value(project, "APP_VERSION", "v5")
    command = Background(project, tmp_path, "deploy", "--yes", "--skip-build")
    try:
        paused = hooks.wait_for_pause(command)
        # post-deploy runs after the lock is released: nobody holds it now.
        assert lock_status(project)["held"] is False
        os.kill(command.pid, signal.SIGKILL)
        assert command.wait(timeout=60) == -signal.SIGKILL
    finally:
        command.stop()
    assert lock_status(project)["held"] is False
    newest = releases(project)[0]
    assert newest["id"] == paused["env"]["STAGECRAFT_RELEASE"]
    assert newest["result"] == "succeeded", newest
    assert all(h["switched"] for h in newest["hosts"].values()), newest["hosts"]
    assert_serves(edge, "v5")
    hooks.clear()
    set_env_value(project, "APP_VERSION", "v6")
    deploy(project, "--skip-build")
    assert_serves(edge, "v6")


# ----------------------------------------------------------------- 4. Ctrl-C


def test_ctrl_c_in_the_second_batch_stops_and_unlocks(project: Path, hooks: Hooks,
                                                      tmp_path: Path) -> None:
    hooks.add("pre-rollout", pause_on_call=2)
    set_env_value(project, "APP_VERSION", "v7")
    command = Background(project, tmp_path, "deploy", "--yes", "--skip-build")
    try:
        paused = hooks.wait_for_pause(command)
        below = descendants(command.pid)
        os.kill(command.pid, signal.SIGINT)
        time.sleep(1)
        hooks.release()  # the task in progress ends; no task after it runs
        code = command.wait(timeout=180)
    finally:
        command.stop()
    assert code == 130, command.stderr[-4000:]
    assert not ansible_playbooks(survivors(below))
    assert lock_status(project)["held"] is False
    newest = releases(project)[0]
    assert newest["id"] == paused["env"]["STAGECRAFT_RELEASE"]
    assert newest["result"] == "interrupted", newest
    first, second = hooks.calls()[0]["env"]["STAGECRAFT_HOSTS"], paused["env"]["STAGECRAFT_HOSTS"]
    assert newest["hosts"][first]["switched"] is True, newest["hosts"]
    assert newest["hosts"][second]["switched"] is False, newest["hosts"]
    assert [c["hook"] for c in hooks.calls()] == ["pre-rollout", "pre-rollout"]


# ---------------------------------------------------------- 5. host goes away


def test_a_host_stopped_mid_deploy(project: Path, edge: Edge, hooks: Hooks,
                                   tmp_path: Path) -> None:
    hooks.add("pre-rollout", pause_on_call=2)
    set_env_value(project, "APP_VERSION", "v8")
    command = Background(project, tmp_path, "deploy", "--yes", "--skip-build")
    try:
        paused = hooks.wait_for_pause(command)
        second = paused["env"]["STAGECRAFT_HOSTS"]
        container = host_records(project)[second]["provider_id"]
        stopped = subprocess.run(["docker", "stop", "-t", "1", container],
                                 capture_output=True, text=True, timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        hooks.release()
        code = command.wait(timeout=600)
    finally:
        command.stop()
    release_id = paused["env"]["STAGECRAFT_RELEASE"]
    first = hooks.calls()[0]["env"]["STAGECRAFT_HOSTS"]
    assert code == 6, command.stderr[-6000:]
    assert second in command.stderr, command.stderr[-6000:]
    switched_lines = [line.strip() for line in command.stderr.splitlines()
                      if "already switched" in line or "no host was switched" in line]
    assert switched_lines and switched_lines[-1].endswith(
        f"already switched to {release_id}: {first}"), command.stderr[-6000:]
    assert lock_status(project)["held"] is False
    newest = releases(project)[0]
    assert newest["id"] == release_id and newest["result"] == "failed", newest
    assert {h: r["switched"] for h, r in newest["hosts"].items()} == {first: True, second: False}

    hooks.clear()
    up = stagecraft(project, "infra", "up")
    assert up.returncode == 0, up.stderr[-4000:]
    release = deploy(project, "--skip-build")
    assert all(h["switched"] for h in release["hosts"].values()), release["hosts"]
    assert_serves(edge, "v8")


# ----------------------------------------------------------------- 6. a race


def release_id_in(stderr: str) -> str:
    """The release id a deploy planned, from the plan it prints on stderr."""
    for line in stderr.splitlines():
        if line.startswith("release ") and line.endswith("(deploy)"):
            return line.split()[1]
    raise AssertionError(f"no plan in the output:\n{stderr[-3000:]}")


def test_two_deploys_at_once(project: Path, tmp_path: Path) -> None:
    set_env_value(project, "APP_VERSION", "v9")
    before = releases(project)
    racers = [Background(project, tmp_path, "deploy", "--yes", "--skip-build", "-m", f"racer {i}")
              for i in (1, 2)]
    try:
        codes = [racer.wait(timeout=900) for racer in racers]
    finally:
        for racer in racers:
            racer.stop()
    assert sorted(codes) == [0, 7], [(c, r.stderr[-3000:]) for c, r in zip(codes, racers)]
    winner, loser = racers[codes.index(0)], racers[codes.index(7)]
    winner_message = f"racer {racers.index(winner) + 1}"
    assert "held by" in loser.stderr and winner_message in loser.stderr, loser.stderr[-3000:]
    winner_id, loser_id = release_id_in(winner.stderr), release_id_in(loser.stderr)
    assert set(current_releases(project).values()) == {winner_id}
    after = releases(project)  # the ledger loads
    assert not [r for r in after if r["result"] == "running"], after[:2]
    # Two deploys started in the same second still get two records (Ledger.record_new).
    assert winner_id != loser_id, [r for r in after if r["id"] == winner_id]
    new = {r["id"]: r for r in after[: len(after) - len(before)]}
    assert set(new) == {winner_id, loser_id}, list(new)
    assert new[winner_id]["result"] == "succeeded" and new[winner_id]["error"] is None
    assert new[winner_id]["message"] == winner_message and new[winner_id]["pid"] == winner.pid
    assert new[loser_id]["result"] == "failed" and new[loser_id]["pid"] == loser.pid
    assert new[loser_id]["error"]["phase"] == "lock", new[loser_id]
