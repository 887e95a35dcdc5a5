"""The volumes role's Molecule scenario against real block devices (molecule/volumes/).

Two sparse files on this machine are attached to loop devices and passed into the
host at DigitalOcean's /dev/disk/by-id paths, as the local cloud does. The scenario
runs: create, prepare (ext4 with a file on alpha), check (a dry run), converge,
idempotence, verify (the file's checksum, the refusal to format alpha as xfs, both
filesystems grown after truncate + losetup -c, mounts back after a restart),
destroy. The loop devices are detached and the files removed even when it fails.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from molecule_run import run_scenario

from stagecraft.providers.cloud.local import loopdev

pytestmark = [pytest.mark.fleet, pytest.mark.slow]


@pytest.fixture
def loop_volumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """alpha (128 MiB) and beta (512 MiB: xfs wants 300 MiB at least) on loop devices."""
    state = tmp_path / "state"
    try:
        for name, size_mib in (("alpha", 128), ("beta", 512)):
            file = loopdev.volume_file(state, "molecule", name)
            file.parent.mkdir(parents=True, exist_ok=True)
            with open(file, "wb") as handle:
                handle.truncate(size_mib * 1024 * 1024)
            # Whole GiB only through attach(): the file exists, so it keeps this size.
            attached = loopdev.attach(state, "molecule", name, 0)
            monkeypatch.setenv(f"STAGECRAFT_VOLUMES_{name.upper()}_FILE", str(attached.file))
            monkeypatch.setenv(f"STAGECRAFT_VOLUMES_{name.upper()}_LINK", str(attached.link))
        yield state
    finally:
        loopdev.detach_all(state)


def test_volumes_scenario_keeps_data_refuses_to_reformat_and_grows(
        tmp_path: Path, loop_volumes: Path) -> None:
    files = sorted(loop_volumes.glob("volumes/molecule/*.img"))
    loops = [loopdev.loops_of(f) for f in files]
    assert all(len(found) == 1 for found in loops), loops

    run = run_scenario("volumes", tmp_path)

    # The dry run: alpha (formatted in prepare) would be mounted; nothing failed.
    check = run.recap("check")
    assert check["failed"] == 0 and check["changed"] > 0, check

    converge = run.recap("converge")
    assert converge["failed"] == 0 and converge["changed"] > 0, converge

    assert run.step_succeeded("idempotence"), run.tail()
    idempotence = run.recap("idempotence")
    assert idempotence["changed"] == 0 and idempotence["failed"] == 0, idempotence

    assert run.step_succeeded("verify"), run.tail()
    verify = run.recap("verify")
    assert verify["failed"] == 0, verify
    # beta was formatted once, in converge, never again; alpha never.
    assert _mkfs_outcome(run.step_output("converge"), "beta") == "changed"
    assert _mkfs_outcome(run.step_output("idempotence"), "beta") == "skipping"
    assert _mkfs_outcome(run.step_output("converge"), "alpha") == "skipping"

    # The backing files grew on this machine (verify grew them) and are still attached.
    sizes = {f.stem: f.stat().st_size // (1024 * 1024) for f in files}
    assert sizes == {"alpha": 256, "beta": 768}, sizes
    print(f"molecule test -s volumes: {run.elapsed:.0f} s; converge {converge}, "
          f"idempotence {idempotence}, verify {verify}")


def _mkfs_outcome(output: str, volume: str) -> str:
    """What the role's mkfs task did to ``volume`` in one step: changed, skipping, ..."""
    match = re.search(rf"TASK \[stagecraft\.platform\.volumes : Create a filesystem on the blank volume {volume}\][^\n]*\n"
                      r"(\w+):", output)
    assert match, f"no mkfs task for {volume} in:\n{output[-3000:]}"
    return match.group(1)


def test_loop_volumes_are_gone_after_detach(tmp_path: Path) -> None:
    """attach then detach_all leaves no loop device and no file behind."""
    attached = loopdev.attach(tmp_path, "h", "v", 1)
    try:
        assert loopdev.loops_of(attached.file) == [attached.loop]
        assert Path(attached.link).resolve() == Path(attached.loop)
        again = loopdev.attach(tmp_path, "h", "v", 1)
        assert again == attached  # idempotent: same device, same size
    finally:
        removed = loopdev.detach_all(tmp_path)
    assert f"loop device {attached.loop}" in removed
    assert not attached.file.exists() and not attached.link.is_symlink()
    listing = subprocess.run(["losetup", "-j", str(attached.file)], capture_output=True,
                             text=True, check=False)
    assert listing.stdout.strip() == ""
