"""A stand-in of GitHub's REST API for tests: the secrets and Actions endpoints
stagecraft calls, answered the way GitHub documents them (shapes and statuses checked
against GitHub's OpenAPI description in tests/github_openapi.py).

``GitHubStandIn`` (server.py) serves it on 127.0.0.1 from a thread; ``StandInState``
(state.py) holds the repositories, sealed-box key pairs, secrets and workflow runs.
"""

from stagecraft_twins.github.server import GitHubStandIn
from stagecraft_twins.github.state import StandInState, WorkflowSpec

__all__ = ["GitHubStandIn", "StandInState", "WorkflowSpec"]
