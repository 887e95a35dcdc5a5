"""Run one Molecule scenario on a real fleet host and read its output.

Shared by the test_molecule_*.py tests. Each run gets its own host container
name and Molecule state directory (Molecule names its state directory after the
checkout's folder name only, so two checkouts called `main` would share it).
The host image comes from the local cloud's builder
(`python -m stagecraft.providers.cloud.local.host_image`: ~0.2 s when the image of the
current recipe exists, a build otherwise) and is handed over by its exact tag.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tail(text: str, lines: int = 120) -> str:
    return "\n".join(text.splitlines()[-lines:])


def host_image(flavour: str = "debian-13") -> str:
    result = subprocess.run(
        [sys.executable, "-m", "stagecraft.providers.cloud.local.host_image", flavour],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
    )
    if result.returncode != 0 or not result.stdout.strip():
        pytest.fail(f"building the host image failed (exit {result.returncode}):\n"
                    f"{tail(result.stderr, 40)}", pytrace=False)
    return result.stdout.strip().splitlines()[-1]


@dataclass(frozen=True)
class MoleculeRun:
    """The output of `molecule test -s <scenario>` (stdout and stderr in one stream)."""

    scenario: str
    host: str
    output: str
    elapsed: float
    tail_lines: int = 120

    def tail(self) -> str:
        return tail(self.output, self.tail_lines)

    def _marker(self, step: str, event: str) -> str:
        # `bootstrap ➜ converge: Executing` on a terminal, `[bootstrap > converge] Executing` without.
        return rf"\[?{re.escape(self.scenario)}\s*(?:➜|>)\s*{step}\]?:?\s*{event}"

    def step_outputs(self, step: str) -> list[str]:
        """The output of each run of a step (a sequence may name a step several times:
        `verify`, `side_effect other.yml`), in order."""
        return [match.group(1) for match in re.finditer(
            self._marker(step, "Executing") + r"\n(.*?)" + self._marker(step, "Executed"),
            self.output, re.S)]

    def step_output(self, step: str, run: int = 0) -> str:
        """The part of the output between a step's `Executing` and `Executed` (of its
        ``run``-th run, counted from 0)."""
        outputs = self.step_outputs(step)
        assert len(outputs) > run, (f"molecule ran the {step} step {len(outputs)} times, "
                                    f"not {run + 1}:\n{self.tail()}")
        return outputs[run]

    def step_succeeded(self, step: str) -> bool:
        return re.search(self._marker(step, "Executed: Successful"), self.output) is not None

    def recap(self, step: str, run: int = 0) -> dict[str, int]:
        """ok/changed/failed/... of the host in a step's last PLAY RECAP (of its
        ``run``-th run)."""
        text = self.step_output(step, run)
        recap = text.rsplit("PLAY RECAP", 1)[-1]
        # Molecule boxes and wraps long lines: drop the box drawing, join the words.
        flat = " ".join(re.sub(r"[│└┌─]", " ", recap).split())
        match = re.search(rf"{re.escape(self.host)} : ((?:\w+=\d+ ?)+)", flat)
        assert match, f"no PLAY RECAP for the host in:\n{tail(text, 40)}"
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def run_scenario(scenario: str, tmp_path: Path, *, timeout: float = 1800,
                 tail_lines: int = 120, cleanup_images: str | None = None,
                 on_controller: bool = False, host_image_flavour: str = "debian-13") -> MoleculeRun:
    """`molecule test -s scenario` on a host of its own; fails the test when it fails.

    ``cleanup_images``: a repository prefix whose tags (``<prefix>/<host>``) the
    scenario made on the controller and this run removes afterwards.
    ``on_controller``: the scenario runs on this machine (its one host is
    ``localhost``, delegated driver): no host image, no host container.
    ``host_image_flavour``: ``docker`` for scenarios whose prepare only needs Docker
    on the host (the bootstrap role then installs nothing); ``debian-13`` (bare) for
    the bootstrap scenario itself and those that need no Docker.
    """
    molecule = BIN / "molecule"
    assert molecule.exists(), f"{molecule} is missing: run `make setup` (test extras)"
    host = "localhost" if on_controller else f"molecule-{scenario}-{secrets.token_hex(3)}"
    fleet_host = {} if on_controller else {"STAGECRAFT_HOST_IMAGE": host_image(host_image_flavour),
                                           "STAGECRAFT_BARE_HOST_IMAGE": host_image(),
                                           "STAGECRAFT_MOLECULE_HOST": host}
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **fleet_host,
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
        # One stream: molecule logs its steps on stderr, ansible-playbook writes on
        # stdout, and the steps' output is found between the step markers.
        result = subprocess.run([str(molecule), "test", "-s", scenario], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                timeout=timeout)
    finally:
        # Molecule destroys the host itself, also after a failed step; this is for a
        # timeout or an interrupt. The name is this run's own.
        if not on_controller:
            subprocess.run(["docker", "rm", "-fv", host], capture_output=True, timeout=120)
        if cleanup_images:
            tags = subprocess.run(
                ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
                 f"{cleanup_images}/{host}"], capture_output=True, text=True, timeout=60)
            if tags.stdout.split():
                subprocess.run(["docker", "rmi", *tags.stdout.split()], capture_output=True,
                               timeout=120)
    run = MoleculeRun(scenario=scenario, host=host, output=result.stdout,
                      elapsed=time.monotonic() - started, tail_lines=tail_lines)
    assert result.returncode == 0, (
        f"molecule test -s {scenario} failed (exit {result.returncode}) after "
        f"{run.elapsed:.0f} s; last {tail_lines} lines:\n{run.tail()}")
    return run
