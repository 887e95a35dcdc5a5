"""Shared test configuration.

Tests marked ``fleet`` need a Docker Engine. Outside CI they are skipped when no
engine answers; under CI=true a missing engine is a failure, never a skip, so
CI can never go green without running the fleet tier.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(
            ["docker", "info"], capture_output=True, timeout=20
        ).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


_DOCKER: bool | None = None


def docker_available() -> bool:
    global _DOCKER
    if _DOCKER is None:
        _DOCKER = _docker_answers()
    return _DOCKER


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("fleet") is None:
        return
    if docker_available():
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(
            "CI=true but no Docker Engine answers: the fleet tier must run in CI "
            "(run scripts/ensure-docker.sh, or `make test` which calls it)",
            pytrace=False,
        )
    pytest.skip("no Docker Engine answers (run `make docker`)")
