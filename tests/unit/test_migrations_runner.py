"""LocalDockerRunner's command line and the role helpers, without Docker: secrets are
named, never valued, in argv; the role's fact becomes a Completed. The runner itself
runs against real Docker in tests/integration/test_migrations_raw_db.py."""

from __future__ import annotations

import pytest

from stagecraft.errors import MigrationFailed
from stagecraft.migrations.base import Completed, ContainerCommand, ContainerRunner
from stagecraft.migrations.runner import LocalDockerRunner, completed_from_result, role_vars

URL = "postgresql://app:hunter2-secret@db:5432/shop"


def test_argv_names_secrets_and_keeps_their_values_out():
    runner = LocalDockerRunner("shop-api:1", network="net1", secret_env={"DATABASE_URL": URL},
                               env={"LOG": "debug", "DATABASE_URL": "plain-shadow"},
                               docker=("ssh", "app-1", "docker"))
    assert isinstance(runner, ContainerRunner)
    argv = runner.argv(ContainerCommand(argv=("python3", "-"), env={"A": "1"}), "mig-1")
    assert argv[:9] == ["ssh", "app-1", "docker", "run", "--rm", "-i", "--name", "mig-1",
                        "--label"]
    assert argv[-3:] == ["shop-api:1", "python3", "-"]
    assert ["--network", "net1"] == argv[argv.index("--network"):argv.index("--network") + 2]
    assert "DATABASE_URL" in argv and "A=1" in argv and "LOG=debug" in argv
    assert not any("hunter2" in a or "plain-shadow" in a for a in argv)
    assert "hunter2" not in repr(runner)


def test_role_vars_carry_the_command():
    command = ContainerCommand(argv=("python3", "-", "apply", "m", "pre"), stdin="print(1)",
                               env={"B": "2"})
    got = role_vars("img:1", command, timeout=90.4, secret_env={"DATABASE_URL": URL},
                    network="n", changed_when_applied=True)
    assert got["migrations_argv"] == ["python3", "-", "apply", "m", "pre"]
    assert got["migrations_stdin"] == "print(1)" and got["migrations_env"] == {"B": "2"}
    assert got["migrations_timeout"] == 90 and got["migrations_secret_env"] == {"DATABASE_URL": URL}
    assert got["migrations_changed_when_applied"] is True


def test_the_roles_fact_becomes_a_completed():
    assert completed_from_result({"rc": 3, "stdout": "x", "stderr": "y", "timed_out": False,
                                  "skipped": False}) == Completed(3, "x", "y")
    with pytest.raises(MigrationFailed, match="did not finish in time"):
        completed_from_result({"rc": 124, "stdout": "", "stderr": "", "timed_out": True,
                               "name": "m1"})
    with pytest.raises(MigrationFailed, match="check mode"):
        completed_from_result({"skipped": True})
