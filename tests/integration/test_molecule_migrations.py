"""The migrations role's Molecule scenario on a real fleet host (systemd, Docker
inside): PostgreSQL and a test app with raw SQL migrations loaded into the host's
Docker (`docker save | docker exec -i HOST docker load`: hosts cannot pull), converge
applies the migrations with the raw engine's applier, idempotence applies nothing,
verify reads the tables and the stagecraft_migrations rows and checks a failing and a
timed-out command (molecule/migrations/).

The host image is the local cloud's `docker` flavour (Docker already installed).
A full run takes ~2 min here, mostly loading the images.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from molecule_run import run_scenario

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

# The scenario's database password (molecule.yml): never in the output.
SCENARIO_SECRET = "s3cret-pg-pw"


def test_migrations_scenario_applies_once_and_is_idempotent(tmp_path: Path) -> None:
    # The scenario tags its test app stagecraft-molecule/<host>:migrations; removed afterwards.
    run = run_scenario("migrations", tmp_path, timeout=1800, tail_lines=150,
                       cleanup_images="stagecraft-molecule", host_image_flavour="docker")

    # The first converge applied the migrations: one changed task (the command).
    converge = run.recap("converge")
    assert converge["failed"] == 0 and converge["changed"] == 1, converge

    # The same migrations again: nothing applied, nothing changed.
    assert run.step_succeeded("idempotence"), run.tail()
    idempotence = run.recap("idempotence")
    assert idempotence["changed"] == 0 and idempotence["failed"] == 0, idempotence

    assert run.step_succeeded("verify"), run.tail()
    verify = run.recap("verify")
    # Two rescued failures: the failing command and the timeout, which must fail.
    assert verify["failed"] == 0 and verify["rescued"] == 2, verify

    assert SCENARIO_SECRET not in run.output, "the database password appears in the output"
    print(f"molecule test -s migrations: {run.elapsed:.0f} s; converge {converge}, "
          f"idempotence {idempotence}, verify {verify}")
