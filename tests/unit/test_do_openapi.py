"""tests/do_openapi.py catches real departures from DigitalOcean's OpenAPI document and
accepts exchanges that follow it. The right samples are the document's own examples
where it has them (so they are faithful by construction); each is then broken in one
way that the real API's contract forbids."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests import do_openapi
from tests.do_openapi import (
    assert_recording_valid,
    load_document,
    validate_exchange,
    validate_recording,
)

pytestmark = pytest.mark.skipif(
    not do_openapi.document_path().is_file(),
    reason="DigitalOcean's OpenAPI document (shared/data) is not beside the repository",
)

RATE = {"ratelimit-limit": "5000", "ratelimit-remaining": "4999", "ratelimit-reset": "1444931833"}


def doc() -> dict[str, Any]:
    return load_document()


def example(name: str) -> Any:
    """``components/examples/<name>``'s value, a fresh copy."""
    return copy.deepcopy(doc()["components"]["examples"][name]["value"])


def media(kind: str, name: str) -> dict[str, Any]:
    """The ``application/json`` media of ``components/<kind>/<name>``."""
    return doc()["components"][kind][name]["content"]["application/json"]


def media_example(kind: str, name: str, key: str | None = None) -> Any:
    m = media(kind, name)
    if key is None:
        return copy.deepcopy(m["example"])
    return named_example(m, key)


def named_example(media_object: dict[str, Any], key: str) -> Any:
    """The value of ``examples[key]`` of a media object (following a ``$ref``)."""
    value, _ = do_openapi._spec().resolve(media_object["examples"][key], "")
    return copy.deepcopy(value["value"])


def exchange(method: str, path: str, status: int, *, request: Any = None, response: Any = None,
             query: dict[str, list[str]] | None = None,
             headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "method": method,
        "path": path,
        "query": query or {},
        "request_body": request,
        "status": status,
        "response_headers": dict(RATE) if headers is None else headers,
        "response_body": response,
    }


# --- the right exchanges, from the document's examples ------------------------------------


def account_ok() -> dict[str, Any]:
    schema = doc()["components"]["schemas"]["account"]
    account = {name: prop["example"] for name, prop in schema["properties"].items()
               if "example" in prop}
    return exchange("GET", "/v2/account", 200, response={"account": account})


def droplet_create_ok() -> dict[str, Any]:
    body = doc()["paths"]["/v2/droplets"]["post"]["requestBody"]["content"]["application/json"]
    request = named_example(body, "Single Droplet Create Request")
    response = media_example("responses", "droplet_create", "Single Droplet Create Response")
    return exchange("POST", "/v2/droplets", 202, request=request, response=response)


def droplets_page_two_ok() -> dict[str, Any]:
    listing = example("droplets_all")
    base = "https://api.digitalocean.com/v2/droplets?per_page=20"
    listing["links"] = {"pages": {"first": f"{base}&page=1", "prev": f"{base}&page=1",
                                  "next": f"{base}&page=3", "last": f"{base}&page=3"}}
    listing["meta"] = {"total": 60}
    return exchange("GET", "/v2/droplets", 200, query={"page": ["2"], "per_page": ["20"]},
                    response=listing)


def droplet_delete_ok() -> dict[str, Any]:
    return exchange("DELETE", "/v2/droplets/3164444", 204)


def volume_attach_ok() -> dict[str, Any]:
    body = doc()["paths"]["/v2/volumes/actions"]["post"]["requestBody"]["content"]
    request = named_example(body["application/json"], "VolumeActionAttach")
    response = media_example("responses", "volumeAction", "volume_action_attach_response")
    return exchange("POST", "/v2/volumes/actions", 202, request=request, response=response)


def firewall_create_ok() -> dict[str, Any]:
    body = doc()["paths"]["/v2/firewalls"]["post"]["requestBody"]["content"]
    request = copy.deepcopy(body["application/json"]["example"])
    response = media_example("responses", "create_firewall_response")
    return exchange("POST", "/v2/firewalls", 202, request=request, response=response)


def droplet_not_found() -> dict[str, Any]:
    return exchange("GET", "/v2/droplets/999999", 404,
                    response=media_example("responses", "not_found"))


RIGHT = {
    "GET /v2/account": account_ok,
    "POST /v2/droplets 202": droplet_create_ok,
    "GET /v2/droplets?page=2&per_page=20": droplets_page_two_ok,
    "DELETE /v2/droplets/{id} 204": droplet_delete_ok,
    "POST /v2/volumes/actions": volume_attach_ok,
    "POST /v2/firewalls": firewall_create_ok,
    "GET /v2/droplets/{id} 404": droplet_not_found,
}


@pytest.mark.parametrize("name", RIGHT)
def test_the_documents_own_examples_are_valid_exchanges(name: str) -> None:
    assert validate_exchange(RIGHT[name]()) == []


def test_an_error_status_the_operation_does_not_list_falls_to_its_default_response() -> None:
    # POST /v2/droplets lists 202, 401, 429, 500 and default: a 422 (droplet limit) is an
    # error, so `default` (the error body) describes it.
    record = exchange("POST", "/v2/droplets", 422, request=droplet_create_ok()["request_body"],
                      response={"id": "unprocessable_entity",
                                "message": "creating this/these droplet(s) will exceed your "
                                           "droplet limit", "request_id": "4d9d8375"})
    assert validate_exchange(record) == []


def test_a_nullable_field_may_be_null_in_a_response() -> None:
    record = firewall_create_ok()
    record["response_body"]["firewall"]["droplet_ids"] = None  # nullable: true
    assert validate_exchange(record) == []


# --- mistakes that must be caught -------------------------------------------------------


def problems(record: dict[str, Any], side: str | None = None) -> list[str]:
    found = validate_exchange(record)
    return [p for p in found if side is None or p.startswith(side + ":")]


def test_a_missing_required_field_of_a_response_is_named_with_its_place() -> None:
    record = account_ok()
    del record["response_body"]["account"]["email"]
    (problem,) = problems(record)
    assert problem.startswith("response: GET /v2/account (/v2/account) -> 200: #/account: ")
    assert "'email' is a required property" in problem


def test_a_wrong_type_in_a_response_is_caught() -> None:
    record = account_ok()
    record["response_body"]["account"]["droplet_limit"] = "25"
    (problem,) = problems(record)
    assert "#/account/droplet_limit" in problem and "'integer'" in problem


def test_a_value_outside_the_enum_is_caught() -> None:
    record = volume_attach_ok()
    record["response_body"]["action"]["status"] = "done"
    (problem,) = problems(record)
    assert problem.startswith("response: POST /v2/volumes/actions")
    assert "#/action/status" in problem and "is not one of" in problem


def test_a_malformed_timestamp_is_caught() -> None:
    record = droplets_page_two_ok()
    record["response_body"]["droplets"][1]["created_at"] = "yesterday"
    (problem,) = problems(record)
    assert "#/droplets/1/created_at" in problem and "date-time" in problem


def test_null_where_the_document_does_not_allow_it_is_caught_in_a_response() -> None:
    record = droplet_create_ok()
    record["response_body"]["droplet"]["name"] = None
    (problem,) = problems(record)
    assert "#/droplet/name: null is not of type 'string' (not nullable)" in problem


def test_a_status_the_operation_does_not_declare_is_caught() -> None:
    record = droplet_create_ok()
    record["status"] = 201  # DigitalOcean answers 202 Accepted
    (problem,) = problems(record)
    assert problem.startswith("response: POST /v2/droplets (/v2/droplets) -> 201: status:")


def test_default_does_not_stand_for_a_success_status() -> None:
    record = droplet_delete_ok()
    record["status"] = 200
    record["response_body"] = {}
    assert any("200 is not a status the operation declares" in p for p in problems(record))


def test_a_body_on_a_204_is_caught() -> None:
    record = droplet_delete_ok()
    record["response_body"] = {"droplet": {"id": 3164444}}
    (problem,) = problems(record)
    assert "declares no body for 204" in problem


def test_a_missing_body_where_one_is_declared_is_caught() -> None:
    record = account_ok()
    record["response_body"] = None
    (problem,) = problems(record)
    assert "declares a JSON body for 200, none was answered" in problem


def test_an_error_body_without_a_message_is_caught() -> None:
    record = droplet_not_found()
    del record["response_body"]["message"]
    (problem,) = problems(record)
    assert "'message' is a required property" in problem


def test_a_documented_header_of_the_wrong_type_is_caught() -> None:
    record = account_ok()
    record["response_headers"]["ratelimit-remaining"] = "plenty"
    (problem,) = problems(record)
    assert "header ratelimit-remaining" in problem


def test_the_ratelimit_headers_are_not_required_by_the_document() -> None:
    record = account_ok()
    record["response_headers"] = {}
    assert problems(record) == []


def test_an_unknown_path_is_caught() -> None:
    record = exchange("GET", "/v2/droplet", 200, response={})
    (problem,) = problems(record)
    assert problem == ("request: GET /v2/droplet -> 200: path: no path template of the "
                       "document matches this path")


def test_a_method_the_path_does_not_have_is_caught() -> None:
    record = exchange("PATCH", "/v2/account", 200, request={"name": "x"}, response={})
    (problem,) = problems(record)
    assert "no PATCH operation on /v2/account" in problem


def test_a_literal_path_wins_over_a_templated_one() -> None:
    # /v2/volumes/actions, not /v2/volumes/{volume_id} with volume_id "actions".
    assert "(/v2/volumes/actions)" in problems(exchange("POST", "/v2/volumes/actions", 418))[0]


def test_an_unknown_query_parameter_is_caught() -> None:
    record = droplets_page_two_ok()
    record["query"]["colour"] = ["red"]
    (problem,) = problems(record)
    assert problem.startswith("request: GET /v2/droplets")
    assert "query parameter colour: not declared by the operation" in problem


def test_a_query_value_outside_its_schema_is_caught() -> None:
    record = droplets_page_two_ok()
    record["query"]["per_page"] = ["500"]  # at most 200
    (problem,) = problems(record)
    assert "query parameter per_page" in problem
    record["query"]["per_page"] = ["many"]
    assert "'integer'" in problems(record)[0]


def test_a_path_parameter_of_the_wrong_type_is_caught() -> None:
    record = droplet_not_found()
    record["path"] = "/v2/droplets/web-1"
    (problem,) = problems(record)
    assert problem.startswith("request:") and "path parameter droplet_id" in problem


def test_an_ssh_key_is_addressed_by_its_fingerprint_or_its_id() -> None:
    # The document marks ssh_key_fingerprint read-only (a property of the key), and
    # offers it as {ssh_key_identifier}: read-only speaks of bodies, not parameters.
    for identifier in ("3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa", "512189"):
        assert problems(exchange("DELETE", f"/v2/account/keys/{identifier}", 204)) == []
    # Parameters still meet their schemas: an action id is a positive integer.
    (problem,) = problems(exchange("GET", "/v2/actions/0", 404,
                                   response=media_example("responses", "not_found")))
    assert problem.startswith("request: ") and "path parameter action_id" in problem


def test_a_links_object_of_the_wrong_shape_is_caught() -> None:
    record = droplets_page_two_ok()
    record["response_body"]["links"] = ["https://api.digitalocean.com/v2/droplets?page=3"]
    record["response_body"]["meta"] = {"total": "60"}
    found = problems(record)
    assert any("#/links" in p for p in found) and any("#/meta/total" in p for p in found)


def test_a_request_missing_a_required_field_is_the_clients_problem() -> None:
    record = droplet_create_ok()
    del record["request_body"]["size"]
    (problem,) = problems(record)
    assert problem.startswith("request: POST /v2/droplets (/v2/droplets) -> 202: #: ")
    assert "'size' is a required property" in problem


def test_a_request_body_is_checked_for_the_branch_the_discriminator_names() -> None:
    record = volume_attach_ok()
    record["request_body"]["droplet_id"] = "11612190"
    (problem,) = problems(record)
    assert "request:" in problem and "#/droplet_id" in problem and "'integer'" in problem
    record = volume_attach_ok()
    record["request_body"]["type"] = "explode"
    assert problems(record, "request")


def test_a_wrong_enum_in_a_firewall_rule_is_caught() -> None:
    record = firewall_create_ok()
    record["request_body"]["inbound_rules"][0]["protocol"] = "sctp"
    (problem,) = problems(record)
    assert "#/inbound_rules/0/protocol" in problem


def test_a_read_only_property_must_not_be_sent() -> None:
    record = firewall_create_ok()
    record["request_body"]["status"] = "succeeded"
    (problem,) = problems(record)
    assert problem.startswith("request:") and "read-only" in problem


def test_a_body_sent_to_an_operation_that_takes_none_is_caught() -> None:
    record = droplet_delete_ok()
    record["request_body"] = {"force": True}
    (problem,) = problems(record)
    assert problem.startswith("request:") and "takes none" in problem


# --- the leniencies of the module docstring ----------------------------------------------


def test_the_extra_keys_the_ansible_droplet_module_sends_are_accepted() -> None:
    # community.digitalocean's digital_ocean_droplet posts its whole argument set,
    # unset options as null (the real API ignores unknown keys; null is "not set").
    record = droplet_create_ok()
    record["request_body"].update({
        "oauth_token": "secret", "validate_certs": True, "timeout": 30,
        "baseurl": "https://api.digitalocean.com/v2", "resize_disk": False,
        "project_name": None, "firewall": None, "unique_name": True, "wait": True,
        "wait_timeout": 120, "state": "present", "user_data": None, "vpc_uuid": None,
        "volumes": None, "private_networking": False, "sleep_interval": 10,
    })
    assert problems(record) == []


def test_a_required_field_sent_as_null_counts_as_missing() -> None:
    record = droplet_create_ok()
    record["request_body"]["image"] = None
    (problem,) = problems(record)
    assert "'image' is a required property" in problem


def test_null_array_items_in_a_request_are_still_caught() -> None:
    record = droplet_create_ok()
    record["request_body"]["tags"] = ["web", None]
    (problem,) = problems(record)
    assert "#/tags/1" in problem


def test_the_firewall_modules_string_droplet_ids_are_reported_as_the_clients() -> None:
    # digital_ocean_firewall's argument spec turns droplet ids into strings; the
    # document says integers. That is the client's departure, not the twin's.
    record = firewall_create_ok()
    record["request_body"]["droplet_ids"] = ["8043964"]
    record["request_body"]["inbound_rules"][0]["sources"].update(
        {"addresses": None, "droplet_ids": None, "tags": None})
    found = problems(record)
    assert found and all(p.startswith("request:") for p in found)
    assert any("#/droplet_ids/0" in p for p in found)


# --- recordings, the summary, the cache --------------------------------------------------


def write_recording(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_recording_is_checked_exchange_by_exchange(tmp_path: Path) -> None:
    bad = droplet_delete_ok()
    bad["response_body"] = {"oops": 1}
    recording = write_recording(tmp_path / "r.jsonl", [f() for f in RIGHT.values()] + [bad])
    count, found = validate_recording(recording)
    assert count == len(RIGHT) + 1
    assert len(found) == 1 and "DELETE /v2/droplets/3164444" in found[0]


def test_assert_recording_valid_lists_at_most_20_problems_and_the_total(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary" / "openapi-checked.txt"
    monkeypatch.setattr(do_openapi, "SUMMARY", summary)
    records = []
    for n in range(25):
        record = droplet_delete_ok()
        record["path"] = f"/v2/droplets/{n + 1}"
        record["response_body"] = {"n": n}
        records.append(record)
    recording = write_recording(tmp_path / "r.jsonl", records + [account_ok()])
    with pytest.raises(AssertionError) as failure:
        assert_recording_valid(recording, "tests/x.py::test_y")
    message = str(failure.value)
    assert message.startswith("25 problems in 26 exchanges")
    assert message.count("response: DELETE") == 20 and "... and 5 more" in message
    assert summary.read_text() == ("tests/x.py::test_y\t26 exchanges checked\t"
                                   "25 response problems\t0 request problems\n")


def test_requests_false_fails_on_the_twins_problems_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(do_openapi, "SUMMARY", tmp_path / "s.txt")
    client_mistake = droplets_page_two_ok()
    client_mistake["query"]["colour"] = ["red"]
    recording = write_recording(tmp_path / "r.jsonl", [client_mistake, account_ok()])
    with pytest.raises(AssertionError):
        assert_recording_valid(recording)
    assert assert_recording_valid(recording, requests=False) == 2
    lines = (tmp_path / "s.txt").read_text().splitlines()
    assert lines == ["r.jsonl\t2 exchanges checked\t0 response problems\t1 request problems"] * 2
    assert do_openapi.summary_totals(tmp_path / "s.txt") == (2, 4, 0, 2)


def test_the_fixture_checks_what_the_test_recorded(do_openapi_recording: Path) -> None:
    # The fixture's own check runs at teardown (and adds its line to the real summary);
    # here the recording is right, so it passes.
    write_recording(do_openapi_recording, [account_ok(), droplet_delete_ok()])


def test_the_parsed_document_is_cached_by_its_sha256(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGECRAFT_CACHE_DIR", str(tmp_path))
    first = load_document.__wrapped__()
    digest = hashlib.sha256(do_openapi.document_path().read_bytes()).hexdigest()
    (cached,) = tmp_path.glob("*.pickle")
    assert digest in cached.name

    def no_parse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("parsed the YAML again")

    monkeypatch.setattr(do_openapi.yaml, "load", no_parse)
    assert load_document.__wrapped__() == first
    assert first["servers"][0]["url"] == "https://api.digitalocean.com"
