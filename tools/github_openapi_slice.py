"""`python -m tools.github_openapi_slice DOCUMENT [--check]`: cut the slice of GitHub's
REST API description that stagecraft uses into tests/fixtures/github-openapi/.

DOCUMENT is ``descriptions/api.github.com/api.github.com.json`` of the public repository
github/rest-api-description (or ``generated/api.github.com.json`` of the npm package
@octokit/openapi, which republishes it with ``x-octokit`` keys; those are dropped). The
slice keeps the operations in OPERATIONS and every component they reference, without
examples (they are documentation, not contract), so the stand-in of GitHub's API can be
checked against it in tests without the 13 MB document. ``--check`` exits 1 when the
slice on disk differs from what DOCUMENT gives.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SLICE = ROOT / "tests" / "fixtures" / "github-openapi" / "api.github.com.slice.json"

# (method, path): what stagecraft's GitHub client calls (stagecraft/providers/ci/github_api.py).
OPERATIONS: list[tuple[str, str]] = [
    ("get", "/repos/{owner}/{repo}/actions/secrets"),
    ("get", "/repos/{owner}/{repo}/actions/secrets/public-key"),
    ("put", "/repos/{owner}/{repo}/actions/secrets/{secret_name}"),
    ("get", "/repos/{owner}/{repo}/environments/{environment_name}/secrets"),
    ("get", "/repos/{owner}/{repo}/environments/{environment_name}/secrets/public-key"),
    ("put", "/repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}"),
    ("post", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches"),
    ("get", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs"),
    ("get", "/repos/{owner}/{repo}/actions/runs/{run_id}"),
    ("get", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs"),
]

# The error answers GitHub documents once for all endpoints (the operations above declare
# only their successes): the checker uses them for an undeclared 4xx/5xx status.
ERROR_RESPONSES: dict[int, str] = {
    401: "requires_authentication",
    403: "forbidden",
    404: "not_found",
    422: "validation_failed_simple",
    429: "forbidden",  # a rate limit answers the same basic-error body
    500: "internal_error",
    503: "service_unavailable",
}

_DROP = {"examples", "example", "x-octokit"}


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _clean(v) for k, v in node.items() if k not in _DROP}
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node


def _refs(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_refs(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_refs(value))
    return found


def cut(document: dict[str, Any]) -> dict[str, Any]:
    """The slice: OPERATIONS, their path-level parameters, and referenced components."""
    paths: dict[str, Any] = {}
    for method, path in OPERATIONS:
        item = document["paths"][path]
        kept = paths.setdefault(path, {k: v for k, v in item.items()
                                       if k in ("parameters", "summary", "description")})
        kept[method] = item[method]
    paths = _clean(paths)
    components: dict[str, dict[str, Any]] = {}
    pending = _refs(paths) + [f"#/components/responses/{name}"
                              for name in sorted(set(ERROR_RESPONSES.values()))]
    while pending:
        ref = pending.pop()
        _hash, _components, kind, name = ref.split("/", 3)
        if name in components.get(kind, {}):
            continue
        value = _clean(document["components"][kind][name])
        components.setdefault(kind, {})[name] = value
        pending.extend(_refs(value))
    return {
        "openapi": document["openapi"],
        "info": {"title": "GitHub v3 REST API (slice used by stagecraft)",
                 "version": document["info"].get("version", ""),
                 "x-source": "github/rest-api-description descriptions/api.github.com/"
                             "api.github.com.json"},
        "servers": [{"url": "https://api.github.com"}],
        "paths": dict(sorted(paths.items())),
        "components": {kind: dict(sorted(items.items()))
                       for kind, items in sorted(components.items())},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("document", type=Path, help="api.github.com.json of GitHub's description")
    parser.add_argument("--check", action="store_true", help="compare with the slice on disk")
    args = parser.parse_args(argv)
    text = json.dumps(cut(json.loads(args.document.read_text())), indent=2, sort_keys=True) + "\n"
    if args.check:
        same = SLICE.exists() and SLICE.read_text() == text
        print("slice is up to date" if same else f"{SLICE} differs from {args.document}")
        return 0 if same else 1
    SLICE.write_text(text)
    print(f"wrote {SLICE.relative_to(ROOT)} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
