"""The rollout role's Molecule scenario on a real fleet host (systemd, Docker and
Compose 2.26 inside): a dry run on the fresh host, converge (release v1),
idempotence, verify (v2 rolled under a request loop with no failed request and
every old container drained first; v3 failing with the old containers serving; a
rollback; the lock module), destroy (molecule/rollout/).

The host image comes from the local cloud's builder, as in
test_molecule_bootstrap.py. A full run takes ~3-5 min here: apt in prepare (the
bootstrap role installs Docker), loading the test app, three rollouts.
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
TAIL_LINES = 150
HOST_PREFIX = "molecule-rollout"  # the platform's default name in molecule/rollout/
# The env file contents of the scenario's releases (molecule.yml): never in the output.
SCENARIO_SECRETS = ("s3cret-one", "s3cret-two", "s3cret-three")


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def host_image() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "stagecraft.providers.cloud.local.image"],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
    )
    if result.returncode != 0 or not result.stdout.strip():
        pytest.fail(f"building the host image failed (exit {result.returncode}):\n"
                    f"{tail(result.stderr, 40)}", pytrace=False)
    return result.stdout.strip().splitlines()[-1]


def step_marker(step: str, event: str) -> str:
    """`rollout ➜ converge: Executing` on a terminal, `[rollout > converge] Executing` without."""
    return rf"\[?rollout\s*(?:➜|>)\s*{step}\]?:?\s*{event}"


def step_output(output: str, step: str) -> str:
    match = re.search(step_marker(step, "Executing") + r"\n(.*?)" + step_marker(step, "Executed"),
                      output, re.S)
    assert match, f"molecule never ran the {step} step:\n{tail(output)}"
    return match.group(1)


def step_succeeded(output: str, step: str) -> bool:
    return re.search(step_marker(step, "Executed: Successful"), output) is not None


def recap_counts(step_text: str, host: str) -> dict[str, int]:
    """ok/changed/failed/... of the host in a step's last PLAY RECAP."""
    recap = step_text.rsplit("PLAY RECAP", 1)[-1]
    flat = " ".join(re.sub(r"[│└┌─]", " ", recap).split())
    match = re.search(rf"{re.escape(host)} : ((?:\w+=\d+ ?)+)", flat)
    assert match, f"no PLAY RECAP for the host in:\n{tail(step_text, 40)}"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def test_rollout_scenario_rolls_without_failed_requests_and_is_idempotent(tmp_path: Path) -> None:
    molecule = BIN / "molecule"
    assert molecule.exists(), f"{molecule} is missing: run `make setup` (test extras)"
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
        "COLUMNS": "240",
    }
    started = time.monotonic()
    try:
        result = subprocess.run([str(molecule), "test", "-s", "rollout"], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                timeout=2400)
    finally:
        # Molecule destroys the host itself, also after a failed step; this is for a
        # timeout or an interrupt. The host and the image tags are this run's own.
        subprocess.run(["docker", "rm", "-fv", host], capture_output=True, timeout=120)
        tags = subprocess.run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
             f"stagecraft-molecule/{host}"], capture_output=True, text=True, timeout=60)
        if tags.stdout.split():
            subprocess.run(["docker", "rmi", *tags.stdout.split()], capture_output=True,
                           timeout=120)
    elapsed = time.monotonic() - started
    output = result.stdout
    assert result.returncode == 0, (
        f"molecule test -s rollout failed (exit {result.returncode}) after {elapsed:.0f} s; "
        f"last {TAIL_LINES} lines:\n{tail(output)}"
    )

    # The dry run on the fresh host says it would deploy, and fails nowhere.
    check = recap_counts(step_output(output, "check"), host)
    assert check["failed"] == 0 and check["changed"] >= 3, check

    # The first converge uploaded the release and created the services.
    converge = recap_counts(step_output(output, "converge"), host)
    assert converge["failed"] == 0 and converge["changed"] == 2, converge

    # The same release again: nothing uploaded, nothing rolled.
    assert step_succeeded(output, "idempotence"), tail(output)
    idempotence = recap_counts(step_output(output, "idempotence"), host)
    assert idempotence["changed"] == 0, idempotence
    assert idempotence["failed"] == 0 and idempotence["ok"] >= 4, idempotence

    assert step_succeeded(output, "verify"), tail(output)
    verify = recap_counts(step_output(output, "verify"), host)
    # One rescued failure: the v3 deploy, which must fail.
    assert verify["failed"] == 0 and verify["rescued"] == 1, verify

    for secret in SCENARIO_SECRETS:
        assert secret not in output, f"the env file content {secret!r} appears in the output"
    print(f"molecule test -s rollout: {elapsed:.0f} s; converge {converge}, "
          f"idempotence {idempotence}, verify {verify}")
