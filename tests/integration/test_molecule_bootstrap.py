"""The bootstrap role's Molecule scenario on a real fleet host (systemd, sshd, Docker
inside): create, converge, idempotence, verify, destroy (molecule/bootstrap/).

The host image comes from the local cloud's builder
(`python -m stagecraft.providers.cloud.local.host_image`: ~0.2 s when the image of the
current recipe exists, a build otherwise) and is handed to the scenario by its exact
tag. A full run takes ~1.5-3.5 min here, most of it apt inside the host.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from molecule_run import run_scenario

pytestmark = [pytest.mark.fleet, pytest.mark.slow]


def test_bootstrap_scenario_converges_is_idempotent_and_verifies(tmp_path: Path) -> None:
    run = run_scenario("bootstrap", tmp_path)

    # A dry run on the fresh host: no failure, and it says the host would change.
    check = run.recap("check")
    assert check["failed"] == 0 and check["changed"] > 0, check

    # A fresh host: the first converge changed things (the scenario destroys any
    # leftover host first, so this is not a rerun on an old one).
    converge = run.recap("converge")
    assert converge["failed"] == 0 and converge["changed"] > 0, converge

    # The second converge changed nothing.
    assert run.step_succeeded("idempotence"), run.tail()
    idempotence = run.recap("idempotence")
    assert idempotence["changed"] == 0, idempotence
    assert idempotence["failed"] == 0 and idempotence["unreachable"] == 0, idempotence
    assert idempotence["ok"] > 20, idempotence  # the role ran, not an empty play

    assert run.step_succeeded("verify"), run.tail()
    verify = run.recap("verify")
    assert verify["failed"] == 0, verify
    print(f"molecule test -s bootstrap: {run.elapsed:.0f} s; converge {converge}, "
          f"idempotence {idempotence}")
