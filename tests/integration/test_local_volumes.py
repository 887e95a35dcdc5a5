"""Block volumes on the local cloud, through the CLI: a loop device per volume, the
volumes play of `stagecraft bootstrap`, data that outlives restarts, re-created hosts
and a lost loop device, and nothing left after `infra down`.

One host carrying one volume, and only bootstrap's volumes play, keep it short.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from stagecraft.ansible.runner import RunResult
from stagecraft.infra.bootstrap import bootstrap_request, run_bootstrap
from stagecraft.config import load_config
from stagecraft.paths import playbooks_dir
from stagecraft.hosts.fleet import Fleet as EnvironmentFleet
from stagecraft.providers.cloud.local import addressing, loopdev

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

STAGECRAFT = str(Path(sys.executable).with_name("stagecraft"))
DEVICE = "/dev/disk/by-id/scsi-0DO_Volume_pgdata"
REPO = Path(__file__).resolve().parents[2]


def stagecraft(project: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([STAGECRAFT, *args], cwd=project, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "STAGECRAFT_ENV": "local"})


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
    return result


def on_host(container: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
    return docker("exec", container, "sh", "-c", script, check=check)


def wait_until_mounted(container: str, path: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while on_host(container, f"mountpoint -q {path}", check=False).returncode != 0:
        assert time.monotonic() < deadline, (
            f"{path} not mounted after {seconds:g} s: "
            + on_host(container, "systemctl status stagecraft-volumes.service --no-pager",
                      check=False).stdout)
        time.sleep(1)


class Fleet:
    def __init__(self, directory: Path, name: str) -> None:
        self.dir = directory
        self.name = name
        self.container = addressing.container_name(name, "local", "db-1")
        self.state_dir = directory / ".stagecraft" / "local"
        self.file = loopdev.volume_file(self.state_dir, "db-1", "pgdata")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    name = f"tv{uuid.uuid4().hex[:8]}"
    directory = tmp_path_factory.mktemp("volumes")
    (directory / "stagecraft.yml").write_text(textwrap.dedent(f"""\
        version: 1
        project: {{ name: {name} }}
        services:
          db:
            image: postgres:17
            on: [db]
            stateful: true
            healthcheck: {{ command: [pg_isready] }}
            volumes: ["pgdata:/var/lib/postgresql/data"]
        volumes:
          pgdata: {{ size_gb: 2 }}
        environments:
          local:
            providers: {{ cloud: {{ kind: local }} }}
            hosts:
              - {{ name: db-1, roles: [db], volumes: [pgdata] }}
        """))
    made = Fleet(directory, name)
    try:
        yield made
    finally:
        result = stagecraft(directory, "infra", "down", "--yes")
        # Whatever down left (a failed down, a test that stopped half way): remove it here.
        docker("rm", "-fv", made.container, check=False)
        for loop in loopdev.loops_of(made.file) if made.file.exists() else []:
            subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)
        assert result.returncode == 0, result.stderr


def test_up_attaches_a_loop_device_at_the_digitalocean_path(fleet: Fleet) -> None:
    result = stagecraft(fleet.dir, "infra", "up")
    assert result.returncode == 0, result.stderr
    loops = loopdev.loops_of(fleet.file)
    assert len(loops) == 1, loops
    on_host(fleet.container, f"test -b {DEVICE}")
    record = loopdev.read_record(fleet.state_dir)["db-1"]["pgdata"]
    assert record["loop"] == loops[0] and record["device"] == DEVICE

    again = stagecraft(fleet.dir, "infra", "up")
    assert again.returncode == 0, again.stderr
    assert loopdev.loops_of(fleet.file) == loops


def thaw(value: Any) -> Any:
    """A RunRequest's read-only mappings as plain data (replace() checks them again)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


def volumes_play(tmp_path: Path) -> Path:
    """stagecraft.platform.bootstrap's volumes play alone, as a playbook of its own.

    The rest of bootstrap (Docker, sshd, upgrades: minutes) has its own tests; this
    runs the very play and variables `stagecraft bootstrap` runs for volumes.
    """
    plays = yaml.safe_load((playbooks_dir() / "bootstrap.yml").read_text())
    chosen = [p for p in plays if any(
        (r.get("role") if isinstance(r, dict) else r) == "stagecraft.platform.volumes"
        for r in p.get("roles", []))]
    assert len(chosen) == 1, "stagecraft.platform.bootstrap has no single play with the volumes role"
    path = tmp_path / "volumes.yml"
    path.write_text(yaml.safe_dump(chosen))
    return path


def run_volumes_play(fleet: Fleet, tmp_path: Path) -> RunResult:
    env = load_config(fleet.dir / "stagecraft.yml").environment("local")
    request = bootstrap_request(EnvironmentFleet.load(env, fleet.dir, require=False))
    assert request.extravars["volumes_by_host"] == {"db-1": [
        {"name": "pgdata", "filesystem": "ext4", "directories": [{"path": "db"}]}]}
    plain = {f.name: thaw(getattr(request, f.name)) for f in fields(request)
             if isinstance(getattr(request, f.name), Mapping)}
    only_volumes = replace(request, playbook=volumes_play(tmp_path), **plain)
    result = run_bootstrap(only_volumes, tmp_path / "runs")
    assert result.ok, result.summary()
    return result


def test_bootstrap_formats_mounts_and_makes_the_service_directory(
        fleet: Fleet, tmp_path: Path) -> None:
    first = run_volumes_play(fleet, tmp_path)
    assert first.hosts[0].changed > 0
    found = on_host(fleet.container, "findmnt -n -o FSTYPE /mnt/pgdata; stat -c %U /mnt/pgdata/db")
    assert found.stdout.split() == ["ext4", "root"]
    fstab = on_host(fleet.container, "cat /etc/fstab").stdout
    assert any(line.startswith("UUID=") and " /mnt/pgdata ext4 " in line and "nofail" in line
               for line in fstab.splitlines()), fstab
    second = run_volumes_play(fleet, tmp_path)
    assert [(h.name, h.changed, h.failed) for h in second.hosts] == [("db-1", 0, 0)]


def test_data_survives_a_restart_a_lost_loop_device_and_a_recreated_host(fleet: Fleet) -> None:
    token = secrets.token_hex(16)
    on_host(fleet.container, f"echo {token} > /mnt/pgdata/db/keep.txt && sync")

    # The controller "reboots": the host stops and its loop device goes away.
    docker("stop", fleet.container)
    (old_loop,) = loopdev.loops_of(fleet.file)
    subprocess.run(["losetup", "-d", old_loop], check=True, capture_output=True)
    assert loopdev.loops_of(fleet.file) == []
    up = stagecraft(fleet.dir, "infra", "up", "--output", "json")
    assert up.returncode == 0, up.stderr
    assert len(loopdev.loops_of(fleet.file)) == 1
    # Mounted again at boot by the role's unit, before Docker; the data is there.
    wait_until_mounted(fleet.container, "/mnt/pgdata")
    assert on_host(fleet.container, "cat /mnt/pgdata/db/keep.txt").stdout.strip() == token

    # A re-created host gets the same file: the filesystem (not a new one) with the data.
    docker("rm", "-fv", fleet.container)
    up = stagecraft(fleet.dir, "infra", "up")
    assert up.returncode == 0, up.stderr
    read = on_host(fleet.container, f"mkdir -p /tmp/check && mount {DEVICE} /tmp/check "
                   "&& cat /tmp/check/db/keep.txt; umount /tmp/check")
    assert read.stdout.strip() == token


def test_down_detaches_the_loop_device_and_removes_the_file(fleet: Fleet) -> None:
    loops = loopdev.loops_of(fleet.file)
    assert len(loops) == 1
    result = stagecraft(fleet.dir, "infra", "down", "--yes", "--output", "json")
    assert result.returncode == 0, result.stderr
    assert not fleet.file.exists()
    listing = subprocess.run(["losetup", "-l", "-n", "-O", "BACK-FILE"], capture_output=True,
                             text=True, check=True).stdout
    assert str(fleet.file) not in listing
    assert docker("inspect", fleet.container, check=False).returncode != 0
    assert not (fleet.state_dir / "volumes").exists()
