"""The local cloud's check of the kernel's inotify limit, on a fake /proc."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stagecraft.providers.cloud.local import inotify


def fake_proc(root: Path, processes: dict[str, list[str]]) -> Path:
    """/proc with each pid's fd links pointing at the given targets."""
    for pid, targets in processes.items():
        fd = root / pid / "fd"
        fd.mkdir(parents=True)
        for number, target in enumerate(targets):
            os.symlink(target, fd / str(number))
    (root / "self").mkdir()
    return root


def test_instances_are_counted_from_every_process_descriptor(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {
        "1": ["anon_inode:inotify", "anon_inode:inotify", "/dev/null"],
        "42": ["socket:[123]", "anon_inode:inotify"],
        "43": [],
    })
    assert inotify.instances_in_use(proc) == 3


def test_no_readable_process_means_an_unknown_count(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()  # no fd directory: as a process of another user looks
    assert inotify.instances_in_use(tmp_path) is None


def test_room_is_refused_with_the_figures() -> None:
    problem = inotify.room_problem(20, in_use=60, limit=128)
    assert problem is not None
    assert "128 inotify instances" in problem and "60 are in use" in problem
    assert "20 new host(s) need about 160 more" in problem


@pytest.mark.parametrize(("new", "in_use", "limit"), [
    (1, 100, 128), (0, 500, 128), (20, 60, None), (100, 40, 1024)])
def test_hosts_that_fit_pass(new: int, in_use: int, limit: int | None) -> None:
    assert inotify.room_problem(new, in_use, limit) is None


def test_raising_writes_the_kernel_value_and_the_boot_file(tmp_path: Path) -> None:
    limits = tmp_path / "inotify"
    limits.mkdir()
    (limits / "max_user_instances").write_text("128\n")
    (limits / "max_user_watches").write_text("1048576\n")  # higher already: left alone
    conf = tmp_path / "sysctl.d" / "90-stagecraft-local-cloud.conf"

    changed = inotify.raise_limits(limits, conf)

    assert changed == ["fs.inotify.max_user_instances 128 -> 1024"]
    assert inotify.read_limit("max_user_instances", limits) == 1024
    assert inotify.read_limit("max_user_watches", limits) == 1048576
    text = conf.read_text()
    assert "fs.inotify.max_user_instances = 1024" in text
    assert "max_user_watches" not in text.split("\n", 2)[2]
    assert inotify.raise_limits(limits, conf) == []


def test_the_fix_names_the_command_and_the_setting() -> None:
    hint = inotify.fix_hint()
    assert "stagecraft doctor --fix" in hint and "fs.inotify.max_user_instances=1024" in hint
