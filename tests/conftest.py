"""Shared test configuration.

Tests marked ``fleet`` need a Docker Engine. Outside CI they are skipped when no
engine answers; under CI=true a missing engine is a failure, never a skip, so
CI can never go green without running the fleet tier.

The ``stand_in_providers`` fixture registers the provider kinds stagecraft has no
provider for yet (tests/fixtures/stand_in_providers/README.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

@pytest.fixture(autouse=True, scope="module")
def _secrets_of_a_module_stay_in_it() -> Iterator[None]:
    """Values a test registers for masking (stagecraft.log.add_secrets) are forgotten
    after its module: a test's secret such as "true" must not mask the JSON that a
    later test in the same worker parses."""
    yield from _restoring_registered_secrets()


@pytest.fixture(autouse=True)
def _secrets_of_a_test_stay_in_it() -> Iterator[None]:
    yield from _restoring_registered_secrets()


def _restoring_registered_secrets() -> Iterator[None]:
    from stagecraft import log

    known = list(log._known_secrets)
    masker = log._redactor
    yield
    log._known_secrets[:] = known
    log._redactor = masker


#: Put on sys.path (or PYTHONPATH) to register the kinds without a provider by name.
STAND_IN_PROVIDERS = Path(__file__).resolve().parent / "fixtures" / "stand_in_providers"


@pytest.fixture
def stand_in_providers() -> Iterator[None]:
    """Cloud digitalocean, network tailscale and headscale registered as if
    their providers were installed, so configs that use them validate: for tests of
    the config format and of what those kinds change elsewhere."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(STAND_IN_PROVIDERS))
        yield


@pytest.fixture(scope="module")
def stand_in_providers_module() -> Iterator[None]:
    """``stand_in_providers`` for every test of a module (hypothesis tests included)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(STAND_IN_PROVIDERS))
        yield


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


@pytest.fixture
def do_openapi_recording(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A path to give the DigitalOcean twin as ``--record``; after the test, every
    exchange recorded there is checked against DigitalOcean's OpenAPI document
    (tests/do_openapi.py ``assert_recording_valid``, which also adds the count to
    .stagecraft-test/openapi-checked.txt). A test that records nothing checks nothing."""
    path = tmp_path / "digitalocean-exchanges.jsonl"
    yield path
    if path.exists():
        from tests.do_openapi import assert_recording_valid

        assert_recording_valid(path, request.node.nodeid)
