"""The GitHub stand-in as a pytest fixture: started per test, and every exchange it saw
checked against GitHub's OpenAPI description (tests/github_openapi.py) afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stagecraft_twins.github import GitHubStandIn, WorkflowSpec
from tests.github_openapi import assert_exchanges_valid

TOKEN = "ghp_standintoken0000000000000000000000"
REPO = "acme/shop"


@pytest.fixture
def github(request: pytest.FixtureRequest) -> Iterator[GitHubStandIn]:
    """A stand-in of GitHub with repository acme/shop: environments local and
    production, workflow stagecraft-deploy.yml, branch main."""
    with GitHubStandIn(token=TOKEN) as stand_in:
        stand_in.state.add_repo(REPO, environments=("local", "production"),
                                workflows=(WorkflowSpec("stagecraft-deploy.yml"),),
                                branches=("main", "release"))
        yield stand_in
    assert_exchanges_valid(stand_in.exchanges, request.node.nodeid)
