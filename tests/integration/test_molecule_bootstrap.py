"""The bootstrap role's Molecule scenario on a real fleet host (systemd, sshd, Docker
inside): create, converge, idempotence, verify, destroy (molecule/bootstrap/).

The host image comes from the local cloud's builder
(`python -m stagecraft.providers.cloud.local.image`: ~0.2 s when the image of the
current recipe exists, a build otherwise) and is handed to the scenario by its exact
tag. A full run takes ~1.5-3.5 min here, most of it apt inside the host.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TAIL_LINES = 120
HOST_PREFIX = "molecule-bootstrap"  # the platform's default name in molecule/bootstrap/


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def host_image() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "stagecraft.providers.cloud.local.image"],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
    )
    if result.returncode != 0 or not result.stdout.strip():
        pytest.fail(
            f"building the host image failed (exit {result.returncode}):\n"
            f"{tail(result.stderr, 40)}",
            pytrace=False,
        )
    return result.stdout.strip().splitlines()[-1]


def step_marker(step: str, event: str) -> str:
    """Molecule prints `bootstrap ➜ converge: Executing` on a terminal and
    `[bootstrap > converge] Executing` without one."""
    return rf"\[?bootstrap\s*(?:➜|>)\s*{step}\]?:?\s*{event}"


def step_output(output: str, step: str) -> str:
    """The part of molecule's output between a step's `Executing` and `Executed`."""
    match = re.search(step_marker(step, "Executing") + r"\n(.*?)" + step_marker(step, "Executed"),
                      output, re.S)
    assert match, f"molecule never ran the {step} step:\n{tail(output)}"
    return match.group(1)


def step_succeeded(output: str, step: str) -> bool:
    return re.search(step_marker(step, "Executed: Successful"), output) is not None


def recap_counts(step_text: str, host: str) -> dict[str, int]:
    """ok/changed/failed/... of the host in a step's PLAY RECAP (one host)."""
    recap = step_text.rsplit("PLAY RECAP", 1)[-1]
    # Molecule boxes and wraps long lines: drop the box drawing, join the words.
    flat = " ".join(re.sub(r"[│└┌─]", " ", recap).split())
    match = re.search(rf"{re.escape(host)} : ((?:\w+=\d+ ?)+)", flat)
    assert match, f"no PLAY RECAP for the host in:\n{tail(step_text, 40)}"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def test_bootstrap_scenario_converges_is_idempotent_and_verifies(tmp_path: Path) -> None:
    molecule = BIN / "molecule"
    assert molecule.exists(), f"{molecule} is missing: run `make setup` (test extras)"
    # Molecule names its state directory after the checkout's folder name only, so
    # two checkouts called `main` would share it: this run gets its own, and its own
    # container name.
    host = f"{HOST_PREFIX}-{secrets.token_hex(3)}"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "STAGECRAFT_HOST_IMAGE": host_image(),
        "STAGECRAFT_MOLECULE_HOST": host,
        "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path / "molecule"),
        "NO_COLOR": "1",
        "PY_COLORS": "0",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        # Wide lines: fewer wrapped PLAY RECAPs to piece together.
        "COLUMNS": "240",
    }
    started = time.monotonic()
    # One stream: molecule logs its steps on stderr, ansible-playbook writes on stdout,
    # and the steps' output is found between the step markers.
    try:
        result = subprocess.run([str(molecule), "test", "-s", "bootstrap"], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                timeout=1800)
    finally:
        # molecule destroys the host itself, also after a failed step; this is for a
        # timeout or an interrupt. The name is this run's own.
        subprocess.run(["docker", "rm", "-fv", host], capture_output=True, timeout=120)
    elapsed = time.monotonic() - started
    output = result.stdout
    assert result.returncode == 0, (
        f"molecule test -s bootstrap failed (exit {result.returncode}) after {elapsed:.0f} s; "
        f"last {TAIL_LINES} lines:\n{tail(output)}"
    )

    # A dry run on the fresh host: no failure, and it says the host would change.
    check = recap_counts(step_output(output, "check"), host)
    assert check["failed"] == 0 and check["changed"] > 0, check

    # A fresh host: the first converge changed things (the scenario destroys any
    # leftover host first, so this is not a rerun on an old one).
    converge = recap_counts(step_output(output, "converge"), host)
    assert converge["failed"] == 0 and converge["changed"] > 0, converge

    # The second converge changed nothing.
    assert step_succeeded(output, "idempotence"), tail(output)
    idempotence = recap_counts(step_output(output, "idempotence"), host)
    assert idempotence["changed"] == 0, idempotence
    assert idempotence["failed"] == 0 and idempotence["unreachable"] == 0, idempotence
    assert idempotence["ok"] > 20, idempotence  # the role ran, not an empty play

    assert step_succeeded(output, "verify"), tail(output)
    verify = recap_counts(step_output(output, "verify"), host)
    assert verify["failed"] == 0, verify
    print(f"molecule test -s bootstrap: {elapsed:.0f} s; converge {converge}, "
          f"idempotence {idempotence}")
