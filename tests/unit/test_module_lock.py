"""The deploy lock module (stagecraft.platform.deploy_lock), run the way Ansible
runs it on a host, and its agreement with the CLI's reader and writer
(stagecraft/hosts/lock.py): both sides read what the other wrote. No Docker needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / "collections"
MODULE = COLLECTIONS / "ansible_collections/stagecraft/platform/plugins/modules/deploy_lock.py"
sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.stagecraft.platform.plugins.module_utils import _lock  # noqa: E402

from stagecraft.hosts import lock as cli_lock  # noqa: E402


def run_lock(tmp_path: Path, check: bool = False, **args: Any) -> dict[str, Any]:
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {
        "base_dir": str(tmp_path / "env"), **args, "_ansible_check_mode": check}}))
    proc = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(COLLECTIONS)})
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


ALICE = {"holder": "alice@laptop", "release": "20261121T101500Z-3f9c2ab", "note": "hotfix",
         "pid": 4242}


def test_taking_a_free_lock_writes_its_info(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    result = run_lock(tmp_path, **ALICE)
    assert result["changed"] is True and result["held"] is True
    info = json.loads((tmp_path / "env/lock/info.json").read_text())
    # The module's `note` option is stored as the lock's `message`, as the CLI writes it.
    assert {k: info[k] for k in ("holder", "pid", "release", "message", "command")} == {
        "holder": ALICE["holder"], "pid": ALICE["pid"], "release": ALICE["release"],
        "message": ALICE["note"], "command": "deploy"}
    assert result["info"] == info
    assert os.listdir(tmp_path / "env/lock") == ["info.json"]


def test_the_same_holder_and_release_take_it_again_without_change(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    first = run_lock(tmp_path, **ALICE)
    again = run_lock(tmp_path, **ALICE)
    assert again["changed"] is False
    assert again["info"]["time"] == first["info"]["time"]


def test_the_same_holder_takes_its_lock_over_for_a_rollback(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    run_lock(tmp_path, **ALICE)
    over = run_lock(tmp_path, **{**ALICE, "release": "20261120T090000Z-1a2b3c4"},
                    command="rollback")
    assert over["changed"] is True
    info = json.loads((tmp_path / "env/lock/info.json").read_text())
    assert (info["release"], info["command"]) == ("20261120T090000Z-1a2b3c4", "rollback")


def test_someone_elses_lock_fails_with_their_details(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    run_lock(tmp_path, **ALICE)
    bob = run_lock(tmp_path, holder="bob@desktop", release="20261121T110000Z-aaaaaaa")
    assert bob["failed"] is True
    assert bob["msg"].startswith(
        f"the deploy lock {tmp_path}/env/lock is held by alice@laptop (pid 4242) since ")
    assert "for deploy of 20261121T101500Z-3f9c2ab: hotfix" in bob["msg"]
    assert bob["info"]["holder"] == "alice@laptop"


def test_releasing_leaves_someone_elses_lock_unless_no_holder_is_named(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    run_lock(tmp_path, **ALICE)
    bob = run_lock(tmp_path, state="absent", holder="bob@desktop")
    assert bob["changed"] is False and bob["held"] is True
    assert "not by bob@desktop: left alone" in json.dumps(bob["warnings"])
    stale_release = run_lock(tmp_path, state="absent", holder="alice@laptop", release="other")
    assert stale_release["changed"] is False and stale_release["held"] is True
    broken = run_lock(tmp_path, state="absent")
    assert broken["changed"] is True and broken["held"] is False
    assert not (tmp_path / "env/lock").exists()
    assert run_lock(tmp_path, state="absent")["changed"] is False


def test_query_reads_and_check_mode_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    assert run_lock(tmp_path, state="query") == {
        "changed": False, "lock_dir": f"{tmp_path}/env/lock", "held": False, "info": None,
        "invocation": run_lock(tmp_path, state="query")["invocation"]}
    would = run_lock(tmp_path, check=True, **ALICE)
    assert would["changed"] is True and not (tmp_path / "env/lock").exists()
    run_lock(tmp_path, **ALICE)
    assert run_lock(tmp_path, state="query")["info"]["holder"] == "alice@laptop"
    assert run_lock(tmp_path, check=True, state="absent")["changed"] is True
    assert (tmp_path / "env/lock/info.json").exists()


def test_a_lock_dir_without_info_is_held_by_someone_unknown(tmp_path: Path) -> None:
    (tmp_path / "env/lock").mkdir(parents=True)
    result = run_lock(tmp_path, **ALICE)
    assert result["failed"] is True
    assert "held by unknown" in result["msg"] and "info.json is missing" in result["msg"]


def test_a_missing_base_dir_fails_with_what_to_do(tmp_path: Path) -> None:
    result = run_lock(tmp_path, **ALICE)
    assert result["failed"] is True
    assert result["msg"] == f"{tmp_path}/env does not exist: bootstrap the host first"


# ----------------------------------------------------- agreement with the CLI


def test_the_cli_reads_what_the_module_writes(tmp_path: Path) -> None:
    info = _lock.LockInfo(holder="alice@laptop", pid=7, time="2026-11-21T10:15:00Z",
                          release="r1", message="m", command="rollback")
    assert _lock.try_acquire(str(tmp_path), info)
    assert not _lock.try_acquire(str(tmp_path), info)
    text = (tmp_path / "lock/info.json").read_text()
    assert cli_lock.LockInfo.from_json(text) == cli_lock.LockInfo(
        holder="alice@laptop", pid=7, time="2026-11-21T10:15:00Z", release="r1", message="m",
        command="rollback")
    # The CLI releases only the lock it wrote, comparing the file's text with its own.
    assert text.strip() == cli_lock.LockInfo.from_json(text).to_json()


def test_the_module_reads_what_the_cli_writes(tmp_path: Path) -> None:
    written = cli_lock.LockInfo(holder="ci@runner", pid=99, time="2026-11-21T10:15:00Z",
                                release="r2", message="", command="deploy")
    (tmp_path / "lock").mkdir()
    (tmp_path / "lock/info.json").write_text(written.to_json() + "\n")
    assert _lock.read_lock(str(tmp_path)) == _lock.LockInfo(
        holder="ci@runner", pid=99, time="2026-11-21T10:15:00Z", release="r2", message="",
        command="deploy")
    assert _lock.release_lock(str(tmp_path)) is True
    assert _lock.read_lock(str(tmp_path)) is None
