"""The firewall role's Molecule scenario on a real fleet host (systemd, Docker inside,
bootstrapped by the bootstrap role in prepare): create, prepare, converge, idempotence,
verify, destroy (molecule/firewall/).

Prepare publishes busybox containers on the host's Docker (80, 8000, 8099), runs a
plain listener on 8081, and checks that the controller reaches all of them and SSH.
Verify scans the host from the controller with real connections: as the public side
of an edge host (only 80 answers), then as the private side of a non-edge host (SSH
and 8000 answer), again after a dockerd restart and after a reboot of the host.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from molecule_run import run_scenario

pytestmark = [pytest.mark.fleet, pytest.mark.slow]


def test_firewall_scenario_converges_is_idempotent_and_closes_docker_ports(
        tmp_path: Path) -> None:
    run = run_scenario("firewall", tmp_path, host_image_flavour="docker")

    # Prepare saw every listener answer before the firewall existed.
    assert run.step_succeeded("prepare"), run.tail()

    converge = run.recap("converge")
    assert converge["failed"] == 0 and converge["changed"] > 0, converge

    assert run.step_succeeded("idempotence"), run.tail()
    idempotence = run.recap("idempotence")
    assert idempotence["changed"] == 0, idempotence
    assert idempotence["failed"] == 0 and idempotence["unreachable"] == 0, idempotence
    assert idempotence["ok"] > 8, idempotence

    assert run.step_succeeded("verify"), run.tail()
    verify = run.recap("verify")
    assert verify["failed"] == 0, verify
    # The re-application as a non-edge host, the dockerd restart and the reboot.
    assert verify["changed"] >= 3, verify
    output = run.step_output("verify")
    for check in ("Check the public view", "Check the private view", "Scan again after the reboot"):
        assert check in output, f"verify did not run `{check}`:\n{run.tail()}"
    print(f"molecule test -s firewall: {run.elapsed:.0f} s; converge {converge}, "
          f"idempotence {idempotence}, verify {verify}")
