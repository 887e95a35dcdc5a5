"""The rollout role's Molecule scenario on a real fleet host (systemd, Docker and
Compose 2.26 inside): a dry run on the fresh host, converge (release v1),
idempotence, verify (v2 rolled under a request loop with no failed request and
every old container drained first; v3 failing with the old containers serving; a
rollback; the lock module), destroy (molecule/rollout/).

The host image is the local cloud's `docker` flavour (Docker already installed;
prepare's bootstrap role only configures it). A full run takes ~3-4 min here:
loading the test app, three rollouts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from molecule_run import run_scenario

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

# The env file contents of the scenario's releases (molecule.yml): never in the output.
SCENARIO_SECRETS = ("s3cret-one", "s3cret-two", "s3cret-three")


def test_rollout_scenario_rolls_without_failed_requests_and_is_idempotent(tmp_path: Path) -> None:
    # The scenario tags its test app stagecraft-molecule/<host>:...; removed afterwards.
    run = run_scenario("rollout", tmp_path, timeout=2400, tail_lines=150,
                       cleanup_images="stagecraft-molecule", host_image_flavour="docker")

    # The dry run on the fresh host says it would deploy, and fails nowhere.
    check = run.recap("check")
    assert check["failed"] == 0 and check["changed"] >= 1, check

    # The first converge uploaded the release and created the services: one call of
    # the release module (upload, pull and rollout), which changed the host.
    converge = run.recap("converge")
    assert converge["failed"] == 0 and converge["changed"] == 1, converge

    # The same release again: nothing uploaded, nothing rolled.
    assert run.step_succeeded("idempotence"), run.tail()
    idempotence = run.recap("idempotence")
    assert idempotence["changed"] == 0, idempotence
    assert idempotence["failed"] == 0 and idempotence["ok"] >= 4, idempotence

    assert run.step_succeeded("verify"), run.tail()
    verify = run.recap("verify")
    # One rescued failure: the v3 deploy, which must fail.
    assert verify["failed"] == 0 and verify["rescued"] == 1, verify

    for secret in SCENARIO_SECRETS:
        assert secret not in run.output, f"the env file content {secret!r} appears in the output"
    print(f"molecule test -s rollout: {run.elapsed:.0f} s; converge {converge}, "
          f"idempotence {idempotence}, verify {verify}")
