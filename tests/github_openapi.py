"""Checks the GitHub stand-in's exchanges against GitHub's own OpenAPI description.

The description is the slice under tests/fixtures/github-openapi/ (README there: source
repository, file, commit, date; tools/github_openapi_slice.py re-extracts it). The
check follows tests/do_openapi.py: the operation is found by method and path template,
path and query parameters are validated against their schemas, the request body with
openapi-schema-validator's OAS30WriteValidator, the status must be one the operation
declares, and the response body is validated with OAS30ReadValidator (a status
declared without content must have no body).

One leniency, stated by GitHub's documentation rather than per operation: the
operations declare only their successes, while any call can answer 401, 403, 404,
422, 429, 500 or 503. Such an undeclared error status is checked against the
description's shared error response for it (tools/github_openapi_slice.ERROR_RESPONSES:
``basic-error``, ``validation-error-simple``...). Request headers are checked by the
client tests (Accept, X-GitHub-Api-Version), not here.

A second one: ``null`` passes a property marked ``nullable: true`` that also has an
``enum`` without null (the job's ``conclusion`` while it runs). GitHub answers null there
and marks it nullable; the strict reading of OpenAPI 3.0.3 that openapi-schema-validator
applies would want null listed in the enum too.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from openapi_schema_validator import (
    OAS30ReadValidator,
    OAS30Validator,
    OAS30WriteValidator,
    oas30_format_checker,
)
from referencing import Registry, Resource, Specification

from tests.do_openapi import _leaf_errors, _pointer
from tools.github_openapi_slice import ERROR_RESPONSES

SLICE = Path(__file__).resolve().parent / "fixtures" / "github-openapi" / "api.github.com.slice.json"
SUMMARY = Path(__file__).resolve().parent.parent / ".stagecraft-test" / "github-openapi-checked.txt"
_URI = "urn:github-openapi-slice"


@functools.cache
def document() -> dict[str, Any]:
    return json.loads(SLICE.read_text())


@functools.cache
def _registry() -> Registry:
    return Registry().with_resource(
        _URI, Resource(contents=document(), specification=Specification.OPAQUE))


@functools.cache
def _routes() -> list[tuple[str, re.Pattern[str]]]:
    routes = []
    for template in document()["paths"]:
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        routes.append((template, re.compile(f"^{pattern}$")))
    # Concrete segments first (…/secrets/public-key before …/secrets/{secret_name}).
    routes.sort(key=lambda r: r[0].count("{"))
    return routes


def _resolve(node: Any) -> tuple[Any, str | None]:
    pointer = None
    while isinstance(node, dict) and "$ref" in node:
        pointer = node["$ref"]
        node = document()
        for token in pointer[2:].split("/"):
            node = node[token.replace("~1", "/").replace("~0", "~")]
    return node, pointer


def _problems(kind: str, pointer: str, value: Any) -> list[str]:
    cls = {"write": OAS30WriteValidator, "read": OAS30ReadValidator,
           "parameter": OAS30Validator}[kind]
    validator = cls({"$ref": _URI + pointer}, registry=_registry(),
                    format_checker=oas30_format_checker)
    errors = sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.path)))
    return [f"{_pointer(e.absolute_path)}: {e.message[:300]}" for e in _leaf_errors(errors)
            if not (e.validator == "enum" and e.instance is None
                    and isinstance(e.schema, dict) and e.schema.get("nullable") is True)]


def _convert(text: str, schema: dict[str, Any]) -> Any:
    kinds = [schema.get("type")] + [_resolve(s)[0].get("type") for s in schema.get("oneOf", [])]
    for kind in kinds:
        try:
            if kind == "integer":
                return int(text)
            if kind == "boolean":
                return {"true": True, "false": False}[text]
        except (ValueError, KeyError):
            continue
    return text


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def validate_exchange(record: dict[str, Any]) -> list[str]:
    """Problems of one exchange the stand-in recorded (empty: as GitHub describes)."""
    method, path, status = record["method"], record["path"], record["status"]
    label = f"{method} {path} -> {status}"
    problems: list[str] = []
    for template, pattern in _routes():
        found = pattern.match(path)
        if found and method.lower() in document()["paths"][template]:
            break
    else:
        return [f"request: {label}: no operation of the description matches"]
    item = document()["paths"][template]
    operation = item[method.lower()]
    op_pointer = "#/paths/" + _escape(template) + "/" + method.lower()
    label = f"{method} {template} -> {status}"
    params: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
    for owner, base in ((item, "#/paths/" + _escape(template)), (operation, op_pointer)):
        for index, raw in enumerate(owner.get("parameters", [])):
            param, ref = _resolve(raw)
            params[(param["in"], param["name"])] = (param, ref or f"{base}/parameters/{index}")
    for name, text in found.groupdict().items():
        param, pointer = params[("path", name)]
        for problem in _problems("parameter", pointer + "/schema",
                                 _convert(text, _resolve(param["schema"])[0])):
            problems.append(f"request: {label}: path parameter {name} {problem}")
    for name, values in (record.get("query") or {}).items():
        if ("query", name) not in params:
            problems.append(f"request: {label}: query parameter {name} is not declared")
            continue
        param, pointer = params[("query", name)]
        for problem in _problems("parameter", pointer + "/schema",
                                 _convert(values[-1], _resolve(param["schema"])[0])):
            problems.append(f"request: {label}: query parameter {name} {problem}")
    body = record.get("request_body")
    if "requestBody" in operation:
        request_body = operation["requestBody"]
        if body is None and request_body.get("required"):
            problems.append(f"request: {label}: the request body is required, none was sent")
        elif body is not None:
            for problem in _problems("write", op_pointer + "/requestBody/content/"
                                     "application~1json/schema", body):
                problems.append(f"request: {label}: body {problem}")
    elif body is not None:
        problems.append(f"request: {label}: a body was sent to an operation that takes none")

    responses = operation["responses"]
    if str(status) in responses:
        chosen, pointer = responses[str(status)], op_pointer + "/responses/" + str(status)
    elif status in ERROR_RESPONSES:
        pointer = "#/components/responses/" + ERROR_RESPONSES[status]
        chosen = _resolve({"$ref": pointer})[0]
    else:
        return problems + [f"response: {label}: status {status} is not declared "
                           f"({', '.join(sorted(responses))})"]
    content = (chosen.get("content") or {}).get("application/json")
    answer = record.get("response_body")
    if content is None:
        if answer is not None:
            problems.append(f"response: {label}: a body where the description declares none")
        return problems
    if answer is None:
        return problems + [f"response: {label}: no body where the description declares one"]
    for problem in _problems("read", pointer + "/content/application~1json/schema", answer):
        problems.append(f"response: {label}: body {problem}")
    headers = record.get("response_headers") or {}
    for name in (chosen.get("headers") or {}):
        if name.lower() in headers and not isinstance(headers[name.lower()], str):
            problems.append(f"response: {label}: header {name} is not a string")
    return problems


def assert_exchanges_valid(exchanges: list[dict[str, Any]], name: str) -> int:
    """Fails unless every exchange is as GitHub's description says; returns the count and
    appends it to the summary file (the count is reported from there)."""
    problems = [p for record in exchanges for p in validate_exchange(record)]
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    with SUMMARY.open("a") as summary:
        summary.write(f"{name}\t{len(exchanges)} exchanges checked\t{len(problems)} problems\n")
    assert not problems, (f"{len(problems)} problems in {len(exchanges)} exchanges against "
                          "GitHub's OpenAPI description:\n" + "\n".join(problems[:20]))
    return len(exchanges)
