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


# Minutes each fleet module took in a clean-clone `make test` (2026-12-07, 3 workers
# on 2 cores), to hand the longest modules to the workers first: with --dist loadfile
# a long module that starts last runs alone while the other workers idle (that cost
# the run ~6 min). The Makefile passes --no-loadscope-reorder, or xdist would order
# the modules by their count of tests instead. Modules not listed run after these, in
# collection order, and the quick tests fill the workers' gaps at the end.
MODULE_MINUTES = {
    "tests/e2e/test_deploy.py": 18, "tests/e2e/test_tailnet.py": 15,
    "tests/e2e/test_ssh_servers.py": 14.5, "tests/e2e/test_digitalocean_twin.py": 11.4,
    "tests/e2e/test_ops_playbooks.py": 11, "tests/e2e/test_failures.py": 10,
    "tests/integration/test_cli_fleet.py": 9.7, "tests/integration/test_ops_fleet.py": 7,
    "tests/integration/test_molecule_traefik.py": 6.8, "tests/e2e/test_ci_headless.py": 6,
    "tests/integration/test_molecule_bootstrap.py": 5.7,
    "tests/integration/test_molecule_tailscale.py": 5, "tests/e2e/test_firewall_scan.py": 5,
    "tests/e2e/test_secrets_sync_hosts.py": 5,
    "tests/integration/test_molecule_volumes.py": 4.8,
    "tests/integration/test_ssh_reuse.py": 4.5,
    "tests/integration/test_molecule_rollout.py": 4.3,
    "tests/integration/test_molecule_firewall.py": 4,
    "tests/integration/test_molecule_migrations.py": 3,
    "tests/integration/test_molecule_digitalocean.py": 2.3,
    "tests/integration/test_local_registry.py": 2,
    "tests/integration/test_migrations_prisma_db.py": 1.8,
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest modules first (a stable sort: a module's tests keep their order)."""
    root = Path(str(config.rootpath))

    def minutes(item: pytest.Item) -> float:
        try:
            module = Path(str(item.path)).resolve().relative_to(root).as_posix()
        except ValueError:
            return 0.0
        return MODULE_MINUTES.get(module, 0.0)

    items.sort(key=lambda item: -minutes(item))


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
