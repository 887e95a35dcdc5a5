"""Ops teams without the CLI: the stagecraft.platform collection, built into a tarball and
installed with ansible-galaxy into a plain venv where `pip install stagecraft` provides
the plugins' Python side, bootstraps, deploys and rolls back the example app on a local
fleet with `ansible-playbook` alone (docs/ops.md, spec/deploy/standalone.md).

The stagecraft CLI only makes the fleet and builds the images (what CI does: `stagecraft
build --release <id>`), and reads the ledger afterwards: every bootstrap, deploy and
rollback below is a plain ansible-playbook run from the project directory, with the
ansible.cfg docs/ops.md shows.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shop_fleet import (
    Edge,
    copy_example,
    releases,
    set_env_value,
    stagecraft,
)

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "collections" / "ansible_collections" / "stagecraft" / "platform"
CACHE = Path(os.environ.get("STAGECRAFT_CACHE_DIR", "/var/tmp/stagecraft"))
INVENTORY = "inventories/local.stagecraft.yml"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

ANSIBLE_CFG = """\
[defaults]
collections_path = {collections}
callbacks_enabled = stagecraft.platform.ledger
interpreter_python = auto_silent
host_key_checking = True

[inventory]
enable_plugins = stagecraft.platform.stagecraft, yaml, ini
any_unparsed_is_failed = true

[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s
"""


def plain_venv() -> Path:
    """A venv with `pip install stagecraft` of this checkout (no test extras). Its
    dependencies install once per machine (keyed on pyproject.toml); stagecraft itself
    is installed afresh from this checkout every time."""
    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    venv = CACHE / f"ops-venv-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"ops-venv-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        python = venv / "bin" / "python"
        if not (venv / ".complete").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", str(REPO)],
                           check=True, timeout=900)
            (venv / ".complete").touch()
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps",
                        "--force-reinstall", str(REPO)], check=True, timeout=600)
    return venv


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory):
    """The project (fleet created, not bootstrapped), the venv and the installed
    collection; the fleet is removed afterwards."""
    work = tmp_path_factory.mktemp("ops")
    venv = plain_venv()
    galaxy = str(venv / "bin" / "ansible-galaxy")
    # From the work directory: no ansible.cfg there (the repository's would point
    # ansible-galaxy at the checkout's collection, which it would take as installed).
    shell = plain_env({"venv": venv})
    built = subprocess.run([galaxy, "collection", "build", str(COLLECTION), "--output-path",
                            str(work)], cwd=work, env=shell, capture_output=True, text=True,
                           check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    (tarball,) = work.glob("stagecraft-platform-*.tar.gz")
    installed = subprocess.run([galaxy, "collection", "install", str(tarball), "-p",
                                str(work / "collections")], cwd=work, env=shell,
                               capture_output=True, text=True, check=False)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (work / "collections" / "ansible_collections" / "stagecraft" / "platform" /
            "playbooks" / "deploy.yml").is_file(), installed.stdout
    project = copy_example(work, "ops")
    (project / "inventories").mkdir()
    (project / INVENTORY).write_text(
        "plugin: stagecraft.platform.stagecraft\nconfig: ../stagecraft.yml\nenvironment: local\n")
    (project / "ansible.cfg").write_text(ANSIBLE_CFG.format(collections=work / "collections"))
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(["git", "commit", "-qm", "inventory"], cwd=project, check=True)
    ops = {"project": project, "venv": venv, "collections": work / "collections"}
    config = subprocess.run([str(venv / "bin" / "ansible-config"), "dump", "--only-changed"],
                            cwd=project, env=plain_env(ops), capture_output=True, text=True,
                            check=False)
    assert str(project / "ansible.cfg") in config.stdout, config.stdout + config.stderr
    up = stagecraft(project, "infra", "up")
    try:
        assert up.returncode == 0, up.stderr[-4000:]
        yield ops
    finally:
        down = stagecraft(project, "infra", "down", "--yes")
        assert down.returncode == 0, down.stderr[-4000:]


def plain_env(ops: dict, **extra: str) -> dict[str, str]:
    """The environment of an ops team's shell: the plain venv first on PATH, no
    Ansible settings but the project's ansible.cfg."""
    venv_bin = ops["venv"] / "bin"
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("ANSIBLE_", "VIRTUAL_ENV", "PYTHONPATH"))}
    environment["PATH"] = f"{venv_bin}{os.pathsep}{environment.get('PATH', '')}"
    environment.update(extra)
    return environment


def playbook(ops: dict, name: str, *args: str, env: dict | None = None
             ) -> subprocess.CompletedProcess:
    """`ansible-playbook stagecraft.platform.<name>` from the plain venv, in the project."""
    return subprocess.run([str(ops["venv"] / "bin" / "ansible-playbook"), "-i", INVENTORY,
                           f"stagecraft.platform.{name}", *args], cwd=ops["project"],
                          capture_output=True, text=True, check=False, timeout=1800,
                          stdin=subprocess.DEVNULL, env=plain_env(ops, **(env or {})))


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counts per host."""
    found = {}
    for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.M):
        found[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return found


def build(project: Path, release: str) -> None:
    built = stagecraft(project, "build", "--release", release)
    assert built.returncode == 0, built.stderr[-4000:]


def new_release_id(project: Path) -> str:
    sha = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=project,
                         capture_output=True, text=True, check=True).stdout.strip()
    time.sleep(1.1)  # one release per second at most
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{sha}"


def secret_values(project: Path) -> list[str]:
    values = []
    for line in (project / ".env.local").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            value = line.split("=", 1)[1].strip().strip("'\"")
            if len(value) >= 8:
                values.append(value)
    assert values
    return values


def assert_no_secret(project: Path, *outputs: str) -> None:
    for value in secret_values(project):
        for output in outputs:
            assert value not in output


def test_bootstrap_deploy_and_rollback_with_ansible_playbook_alone(ops: dict) -> None:
    project = ops["project"]

    # The same playbook and variables as `stagecraft bootstrap`, whose second run
    # changing nothing tests/integration/test_cli_fleet.py shows.
    first = playbook(ops, "bootstrap")
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    assert set(recap(first.stdout)) == {"local-1", "local-2"}, first.stdout[-3000:]
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in recap(first.stdout).values())

    v1 = new_release_id(project)
    build(project, v1)
    deployed = playbook(ops, "deploy", "-e", f"stagecraft_release={v1}")
    assert deployed.returncode == 0, deployed.stdout[-6000:] + deployed.stderr[-3000:]
    edge = Edge.of(project)
    assert edge.version() == "1.0.0"
    listed = {r["id"]: r for r in releases(project)}
    assert listed[v1]["action"] == "deploy" and listed[v1]["result"] == "succeeded", listed
    record = json.loads(stagecraft(project, "releases", "show", v1, "--output", "json").stdout)
    assert sorted(h for h, r in record["hosts"].items() if r["switched"]) == ["local-1",
                                                                               "local-2"]
    audit = stagecraft(project, "audit", "--output", "json")
    assert audit.returncode == 0, audit.stderr
    lines = json.loads(audit.stdout)
    assert any(line.get("release") == v1 and "ansible-playbook" in line.get("performer", "")
               for line in lines), lines

    set_env_value(project, "APP_VERSION", "2.0.0")
    v2 = new_release_id(project)
    build(project, v2)
    second = playbook(ops, "deploy", "-e", f"stagecraft_release={v2}")
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-3000:]
    assert edge.version() == "2.0.0"

    back = playbook(ops, "rollback", "-e", f"stagecraft_release={v1}")
    assert back.returncode == 0, back.stdout[-6000:] + back.stderr[-3000:]
    assert edge.version() == "1.0.0"
    history = releases(project)
    rollbacks = [r for r in history if r["action"] == "rollback"]
    assert rollbacks and rollbacks[-1]["result"] == "succeeded", history
    assert {r["id"] for r in history} >= {v1, v2}

    for run in (first, deployed, second, back):
        assert not ANSI.search(run.stdout + run.stderr)
    assert_no_secret(project, first.stdout, deployed.stdout, deployed.stderr, second.stdout,
                     back.stdout, back.stderr)


def test_a_deploy_without_the_ledger_callback_is_refused(ops: dict) -> None:
    refused = playbook(ops, "deploy", "-e", "stagecraft_release=20261206T000000Z-0000000",
                       env={"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.timer"})
    assert refused.returncode != 0
    assert "stagecraft.platform.ledger" in refused.stdout, refused.stdout[-3000:]


def test_the_inventory_never_holds_a_secret(ops: dict) -> None:
    project = ops["project"]
    last = next(r["id"] for r in reversed(releases(project)) if r["action"] == "deploy")
    listed = subprocess.run([str(ops["venv"] / "bin" / "ansible-inventory"), "-i", INVENTORY,
                             "--list", "-e", f"stagecraft_release={last}"], cwd=project,
                            capture_output=True, text=True, check=False, env=plain_env(ops))
    assert listed.returncode == 0, listed.stderr[-3000:]
    data = json.loads(listed.stdout)
    host_vars = data["_meta"]["hostvars"]["local-1"]
    assert host_vars["stagecraft_release_files"], host_vars.keys()
    assert_no_secret(project, listed.stdout)
