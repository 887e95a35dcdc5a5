"""Run bundles: what prepare() writes, what it refuses, and how runs rotate."""

from __future__ import annotations

import json
import os
import shlex
import stat
import sys
from pathlib import Path

import pytest

from stagecraft import paths
from stagecraft.ansible.bundle import (
    SECRETS_FILE,
    RunLock,
    prepare,
    rotate_runs,
)
from stagecraft.ansible.request import RunRequest, SshSettings
from stagecraft.errors import EnvironmentMissing, StateError
from stagecraft.hosts.ssh import CONTROL_PATH_DIR

PLAYBOOKS = Path(__file__).resolve().parent.parent / "fixtures" / "playbooks"
PLAYBOOK = PLAYBOOKS / "events_mixed.yml"
INVENTORY = {
    "all": {
        "hosts": {"web-1": {"ansible_host": "10.0.0.1"}},
        "children": {"edge": {"hosts": {"edge-1": None}, "vars": {"tier": "edge"}}},
    }
}
SECRET = "pg-pass-4f9a2c71"


def request(run_id: str = "r1", **changes) -> RunRequest:
    values = {"run_id": run_id, "playbook": PLAYBOOK, "inventory": INVENTORY}
    values.update(changes)
    return RunRequest(**values)


def envvars(bundle) -> dict[str, str]:
    return json.loads((bundle.root / "env" / "envvars").read_text())


def test_layout_is_ansible_runners_private_data_dir(tmp_path: Path) -> None:
    bundle = prepare(request(extravars={"release": "20261121T101500Z-3f9c2ab"}), tmp_path)
    root = tmp_path / "r1"
    assert bundle.root == root
    assert json.loads((root / "inventory" / "hosts.json").read_text()) == INVENTORY
    assert json.loads((root / "env" / "extravars").read_text()) == {
        "release": "20261121T101500Z-3f9c2ab"
    }
    assert (root / "project").is_symlink()
    assert (root / "project" / bundle.playbook).resolve() == PLAYBOOK.resolve()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert bundle.hosts == ("web-1", "edge-1")
    assert bundle.artifacts_dir == root / "artifacts" / "r1"
    manifest = json.loads((root / "run.json").read_text())
    assert manifest["playbook"] == str(PLAYBOOK) and manifest["run_id"] == "r1"
    # No staging directory is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r1"]


def test_bundled_playbook_names_resolve_in_the_playbooks_dir(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentMissing, match="playbook not found: .*no-such-verb.yml"):
        prepare(request(playbook="no-such-verb.yml"), tmp_path)
    assert not (tmp_path / "r1").exists()
    assert str(paths.playbooks_dir()) in str(
        pytest.raises(EnvironmentMissing, prepare, request(playbook="x.yml"), tmp_path).value
    )


def test_ansible_settings(tmp_path: Path) -> None:
    key, known_hosts = tmp_path / "id_ed25519", tmp_path / "known_hosts"
    bundle = prepare(
        request(ssh=SshSettings(private_key_file=key, known_hosts_file=known_hosts, user="deploy")),
        tmp_path / "runs",
    )
    env = envvars(bundle)
    assert env == dict(bundle.envvars)
    assert env["ANSIBLE_PIPELINING"] == "True"
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert env["ANSIBLE_RETRY_FILES_ENABLED"] == "False"
    assert env["ANSIBLE_PRIVATE_KEY_FILE"] == str(key)
    assert env["ANSIBLE_REMOTE_USER"] == "deploy"
    assert "ANSIBLE_ROLES_PATH" not in env  # the playbooks name roles by FQCN
    assert env["ANSIBLE_COLLECTIONS_PATH"] == str(paths.collections_dir())
    assert env["ANSIBLE_CONFIG"] == str(bundle.root / "ansible.cfg")
    assert (bundle.root / "ansible.cfg").is_file()
    assert env["ANSIBLE_DISPLAY_ARGS_TO_STDOUT"] == "False"
    # The stop-between-tasks callback is on and knows where to look.
    assert env["ANSIBLE_CALLBACKS_ENABLED"] == "stagecraft_stop"
    assert (Path(env["ANSIBLE_CALLBACK_PLUGINS"]) / "stagecraft_stop.py").is_file()
    assert env["STAGECRAFT_STOP_FILE"] == str(bundle.stop_file)
    ssh_args = shlex.split(env["ANSIBLE_SSH_ARGS"])
    options = [ssh_args[i + 1] for i, a in enumerate(ssh_args) if a == "-o"]
    assert "ControlMaster=auto" in options
    assert "ControlPersist=60s" in options
    assert "StrictHostKeyChecking=yes" in options
    assert f"UserKnownHostsFile={known_hosts}" in options
    assert "GlobalKnownHostsFile=/dev/null" in options
    # Socket path = dir + "/" + ansible's 10-char hash + ssh's temporary
    # suffix (".XXXXXXXXXXXXXXXX"); it must stay under the 104-byte limit.
    assert env["ANSIBLE_SSH_CONTROL_PATH_DIR"] == str(CONTROL_PATH_DIR)
    assert len(str(CONTROL_PATH_DIR)) + 1 + 10 + 17 < 104
    assert stat.S_IMODE(CONTROL_PATH_DIR.stat().st_mode) == 0o700


def test_without_known_hosts_key_checking_stays_strict(tmp_path: Path) -> None:
    env = envvars(prepare(request(), tmp_path))
    assert "StrictHostKeyChecking=yes" in env["ANSIBLE_SSH_ARGS"]
    assert "KnownHostsFile" not in env["ANSIBLE_SSH_ARGS"]
    assert "ANSIBLE_PRIVATE_KEY_FILE" not in env


def test_cmdline_carries_limit_tags_check_forks_and_verbosity(tmp_path: Path) -> None:
    bundle = prepare(
        request(limit="web-1", tags=("deploy", "traefik"), skip_tags=("slow",), check=True,
                forks=7, verbosity=2),
        tmp_path,
    )
    args = shlex.split((bundle.root / "env" / "cmdline").read_text())
    assert args == [
        "--limit", "web-1", "--tags", "deploy,traefik", "--skip-tags", "slow",
        "--check", "--forks", "7", "-vv",
    ]
    assert bundle.check is True
    assert bundle.hosts == ()  # a limited run shows hosts as they appear


def test_settings_for_ansible_runner(tmp_path: Path) -> None:
    bundle = prepare(request(timeout=90), tmp_path)
    settings = json.loads((bundle.root / "env" / "settings").read_text())
    assert settings["suppress_output_file"] is True
    assert settings["job_timeout"] == 90


def test_env_allowlist_excludes_unlisted_variables(tmp_path: Path) -> None:
    bundle = prepare(
        request(env_allowlist=("SSH_AUTH_SOCK",), envvars={"STAGECRAFT_RUN": "yes"}), tmp_path
    )
    base = {
        "PATH": "/usr/bin",
        "HOME": "/home/me",
        "SSH_AUTH_SOCK": "/tmp/agent.sock",
        "AWS_SECRET_ACCESS_KEY": "not-for-ansible",
        "ANSIBLE_CONFIG": "/home/me/evil.cfg",
        "ANSIBLE_STDOUT_CALLBACK": "yaml",
    }
    env = bundle.environment(base)
    assert env["SSH_AUTH_SOCK"] == "/tmp/agent.sock"
    assert env["HOME"] == "/home/me"
    assert env["STAGECRAFT_RUN"] == "yes"
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "ANSIBLE_STDOUT_CALLBACK" not in env
    assert env["ANSIBLE_CONFIG"] == str(bundle.root / "ansible.cfg")
    # The ansible-playbook next to this Python comes first.
    assert env["PATH"] == f"{Path(sys.executable).parent}{os.pathsep}/usr/bin"
    # Pass-through values are read at run time, never stored in the bundle.
    assert "/tmp/agent.sock" not in (bundle.root / "env" / "envvars").read_text()


def test_secrets_are_0600_and_in_no_other_file(tmp_path: Path) -> None:
    bundle = prepare(
        request(extravars={"db_user": "app"}, secret_extravars={"db_password": SECRET}), tmp_path
    )
    secrets = bundle.root / SECRETS_FILE
    assert bundle.secrets_file == secrets
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert json.loads(secrets.read_text()) == {"db_password": SECRET}
    args = shlex.split((bundle.root / "env" / "cmdline").read_text())
    assert args[-2:] == ["-e", f"@{secrets}"]
    holders = [
        p.relative_to(bundle.root)
        for p in bundle.root.rglob("*")
        if p.is_file() and not p.is_symlink() and SECRET in p.read_text()
    ]
    assert holders == [Path(SECRETS_FILE)]
    assert json.loads((bundle.root / "run.json").read_text())["secret_extravars"] == ["db_password"]
    assert SECRET not in repr(bundle)
    bundle.discard_secrets()
    assert not secrets.exists()


@pytest.mark.parametrize(
    "changes",
    [
        {"extravars": {"dsn": f"postgres://app:{SECRET}@db/app"}},
        {"inventory": {"all": {"hosts": {"h": {"token": SECRET}}}}},
        {"envvars": {"PGPASSWORD": SECRET}},
    ],
)
def test_a_secret_outside_secret_extravars_is_refused(tmp_path: Path, changes: dict) -> None:
    with pytest.raises(ValueError, match="a secret value appears in"):
        prepare(request(secret_extravars={"db_password": SECRET}, **changes), tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-written stays


def test_envvars_may_not_override_managed_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ANSIBLE_HOST_KEY_CHECKING"):
        prepare(request(envvars={"ANSIBLE_HOST_KEY_CHECKING": "False"}), tmp_path)


def test_an_existing_run_directory_is_an_error(tmp_path: Path) -> None:
    prepare(request(), tmp_path).release()
    with pytest.raises(StateError, match="already exists"):
        prepare(request(), tmp_path)


def test_rotation_keeps_the_newest_and_never_a_run_in_progress(tmp_path: Path) -> None:
    in_progress = prepare(request("run-00", secret_extravars={"k": SECRET}), tmp_path)
    crashed = prepare(request("run-01", secret_extravars={"k": SECRET}), tmp_path)
    crashed.release()  # as if its process died: unlocked, secrets left behind
    for number in range(2, 6):
        prepare(request(f"run-{number:02d}"), tmp_path, keep=3).release()
    left = sorted(p.name for p in tmp_path.iterdir())
    # Newest three kept, plus the run still holding its lock.
    assert left == ["run-00", "run-03", "run-04", "run-05"]
    assert (in_progress.root / SECRETS_FILE).exists()
    in_progress.release()
    removed = rotate_runs(tmp_path, keep=3)
    assert [p.name for p in removed] == ["run-00"]
    del crashed


def test_rotation_removes_secrets_left_by_dead_runs(tmp_path: Path) -> None:
    dead = prepare(request("run-a", secret_extravars={"k": SECRET}), tmp_path)
    dead.release()
    live = prepare(request("run-b", secret_extravars={"k": SECRET}), tmp_path)
    assert not (dead.root / SECRETS_FILE).exists()
    assert (live.root / SECRETS_FILE).exists()


def test_run_lock_is_exclusive_within_one_process(tmp_path: Path) -> None:
    first, second = RunLock(tmp_path / "run.lock"), RunLock(tmp_path / "run.lock")
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"run_id": "../escape"}, "run id"),
        ({"run_id": ""}, "run id"),
        ({"playbook": "../deploy.yml"}, "playbook"),
        ({"playbook": "sub/deploy.yml"}, "playbook"),
        ({"inventory": {"_meta": {"hostvars": {}}, "all": {"hosts": ["a"]}}}, "script shape"),
        ({"inventory": {"all": {"hosts": ["a", "b"]}}}, "hosts must map"),
        ({"inventory": {"all": {"host": {}}}}, "unknown keys"),
        ({"extravars": {"when": object()}}, "JSON-serialisable"),
        ({"secret_extravars": {"n": object()}}, "JSON-serialisable"),
        ({"extravars": {"a": 1}, "secret_extravars": {"a": "x"}}, "both secret and not"),
        ({"env_allowlist": ("NOT-A-NAME",)}, "not a variable name"),
        ({"forks": 0}, "forks"),
        ({"verbosity": 5}, "verbosity"),
    ],
)
def test_invalid_requests_are_refused(changes: dict, message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        request(**changes)


def test_request_is_a_deep_copy(tmp_path: Path) -> None:
    inventory = {"all": {"hosts": {"a": {"x": 1}}}}
    req = RunRequest(run_id="r", playbook=PLAYBOOK, inventory=inventory)
    inventory["all"]["hosts"]["b"] = {}
    assert req.hosts == ("a",)


def test_nested_secret_extravars_mask_their_content_but_not_their_structure(tmp_path: Path) -> None:
    files = {"h1": [{"path": "env/web.env", "mode": "0600", "content": "TOKEN=nested-secret-77"}]}
    bundle = prepare(request(secret_extravars={"stagecraft_secret_files": files}), tmp_path)
    assert bundle.redactor.text("TOKEN=nested-secret-77 in env/web.env") == "******** in env/web.env"
    stored = json.loads((bundle.root / "env" / "secret_extravars").read_text())
    assert stored == {"stagecraft_secret_files": files}
    assert oct((bundle.root / "env" / "secret_extravars").stat().st_mode & 0o777) == "0o600"
