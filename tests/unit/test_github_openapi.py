"""The check of the GitHub stand-in against GitHub's OpenAPI description
(tests/github_openapi.py) finds what it should: each test feeds it an exchange that
breaks the description one way."""

from __future__ import annotations

import json

from tests.github_openapi import SLICE, validate_exchange
from tools.github_openapi_slice import OPERATIONS

KEY = {"key_id": "012345678912345678", "key": "2Sg8iYjAxxmI2LvUXpJjkYrMxURPc8r+dB7TJyvv1234"}


def exchange(**kwargs):
    record = {"method": "GET", "path": "/repos/acme/shop/actions/secrets/public-key",
              "query": {}, "request_body": None, "status": 200, "response_body": KEY,
              "response_headers": {}}
    record.update(kwargs)
    return record


def test_the_slice_holds_every_operation_the_client_calls() -> None:
    paths = json.loads(SLICE.read_text())["paths"]
    assert sorted((m, p) for p, item in paths.items() for m in item
                  if m in ("get", "put", "post")) == sorted(OPERATIONS)


def test_a_faithful_exchange_has_no_problem() -> None:
    assert validate_exchange(exchange()) == []


def test_a_missing_required_field_is_a_response_problem() -> None:
    problems = validate_exchange(exchange(response_body={"key": KEY["key"]}))
    assert problems == ["response: GET /repos/{owner}/{repo}/actions/secrets/public-key -> "
                        "200: body #: 'key_id' is a required property"]


def test_an_undeclared_success_status_is_a_problem() -> None:
    assert "status 201 is not declared" in validate_exchange(exchange(status=201))[0]


def test_an_error_status_is_checked_against_the_shared_error_answer() -> None:
    assert validate_exchange(exchange(status=404, response_body={"message": "Not Found"})) == []
    problems = validate_exchange(exchange(status=422, response_body={"message": "x"}))
    assert problems and "'documentation_url' is a required property" in problems[0]


def test_a_204_with_a_body_and_a_put_without_key_id_are_problems() -> None:
    put = exchange(method="PUT", path="/repos/acme/shop/actions/secrets/A",
                   request_body={"encrypted_value": "AAAA"}, status=204, response_body={})
    problems = validate_exchange(put)
    assert any(p.startswith("request:") and "'key_id' is a required" in p for p in problems)
    assert any(p.startswith("response:") and "a body where" in p for p in problems)


def test_undeclared_query_parameters_and_bad_types_are_request_problems() -> None:
    problems = validate_exchange(exchange(
        path="/repos/acme/shop/actions/runs/12/jobs", query={"per_page": ["x"], "since": ["1"]},
        response_body={"total_count": 0, "jobs": []}))
    assert any("per_page" in p and "not of type 'integer'" in p for p in problems), problems
    assert any("since is not declared" in p for p in problems), problems
