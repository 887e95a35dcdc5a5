"""``python -m stagecraft_twins.github``: serve the GitHub stand-in until Ctrl-C, to try
`stagecraft secrets sync --to github` and `stagecraft ci run` by hand (nothing reaches
GitHub). Prints the variables to export."""

from __future__ import annotations

import argparse
import secrets
import time

from stagecraft_twins.github import GitHubStandIn, WorkflowSpec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default="acme/shop", help="OWNER/NAME (default acme/shop)")
    parser.add_argument("--environment", action="append", default=[],
                        help="a GitHub environment of the repository (repeatable)")
    parser.add_argument("--workflow", default="stagecraft-deploy.yml")
    parser.add_argument("--conclusion", default="success",
                        choices=["success", "failure", "cancelled"])
    parser.add_argument("--branch", action="append", default=[], help="(default: main)")
    args = parser.parse_args(argv)
    token = "ghs_" + secrets.token_hex(16)
    with GitHubStandIn(token=token) as stand_in:
        stand_in.state.add_repo(args.repo, environments=tuple(args.environment),
                                workflows=(WorkflowSpec(args.workflow,
                                                        conclusion=args.conclusion),),
                                branches=tuple(args.branch or ["main"]))
        print(f"export GITHUB_API_URL={stand_in.url} GITHUB_TOKEN={token}", flush=True)
        print(f"# a stand-in of GitHub's API with {args.repo}; Ctrl-C stops it", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
