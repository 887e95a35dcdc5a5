"""Checks recorded DigitalOcean API exchanges against DigitalOcean's own OpenAPI document.

Source of the document: ``shared/data/digitalocean-openapi.v2.yaml`` beside the
repository (``STAGECRAFT_DO_OPENAPI`` names another copy): DigitalOcean's public API v2
OpenAPI 3.0 description, bundled into one file from the ``specification/`` folder of the
public repository digitalocean/openapi at commit
7c1300c479fed9c353cda9fc21cd968619552304, licensed Apache-2.0 (``info.license`` inside).
It is read, never copied into this repository.

The twin of the DigitalOcean API (spec/providers/digitalocean-twin.md) records every
exchange with ``--record FILE`` as JSON lines; ``validate_exchange`` checks one of them
and ``assert_recording_valid`` a whole recording (tests call it after a run).

How it checks
-------------
- The operation is found by method and path template (``/v2/droplets/{droplet_id}``);
  literal segments win over templated ones (``/v2/droplets/actions`` before
  ``/v2/droplets/{droplet_id}``), as OpenAPI requires. Path parameters are checked
  against their schemas.
- Schemas are validated by ``openapi-schema-validator``'s OpenAPI 3.0 validators (the
  ones openapi-core uses): ``OAS30WriteValidator`` for request bodies (``readOnly``
  properties must not be sent and are not required), ``OAS30ReadValidator`` for
  responses (``writeOnly`` ones must not be answered and are not required),
  ``OAS30Validator`` for path and query parameters: ``readOnly`` and ``writeOnly`` speak
  of an object's properties in a body, not of a parameter (the document marks
  ``ssh_key_fingerprint`` read-only, yet offers it as ``{ssh_key_identifier}``); ``nullable``,
  ``allOf``/``oneOf``/``anyOf``, ``discriminator`` mappings and ``$ref`` (resolved in the
  document by ``referencing``) are theirs; formats are checked (``date-time``, ``uuid``,
  ``ipv4``, ``int32``...).
- Query parameters: each one sent must be declared by the operation (or its path), its
  values are converted from text by the parameter's schema type and validated; a
  required one missing is a problem.
- Status: it must be one the operation declares; ``default`` stands for an undeclared
  status only when that status is 4xx or 5xx (an undeclared 2xx/3xx is a problem, the
  document's ``default`` is its *error* response).
- Response body: validated against the chosen response's ``application/json`` schema; a
  response that declares no content must have no body (so a 204 has none); a body where
  one is declared must be there.
- Response headers: the headers the chosen response documents are validated against
  their schemas when present, and must be present when declared ``required`` (the
  document declares none required today: ``ratelimit-*`` are documented, optional).

Every problem starts with ``request:`` (the client's side: what stagecraft or the
``community.digitalocean`` modules sent) or ``response:`` (the twin's side), then names
method, path, status and the JSON pointer of the failing part (``#`` is the whole body).

Why openapi-core itself is not used
-----------------------------------
openapi-core refuses the document at load: its spec validator rejects it
(``default: null`` on a non-nullable ``oneOf`` in a GenAI schema, far from the endpoints
the twin serves). With spec validation turned off it works, but it lets ``default``
stand for any status, does not flag undeclared query parameters and reports schema
errors without a usable JSON pointer. So routing, parameters and statuses are looked up
here in the document, and every schema check is done by openapi-core's own schema layer
(openapi-schema-validator) as above.

Deliberate leniencies (each one what the real API does)
-------------------------------------------------------
1. Unknown keys in request bodies are accepted. The document declares
   ``additionalProperties: false`` on no request body of the endpoints the twin serves
   (only on ``embeddings_request`` and a dedicated-inference schema), so OpenAPI itself
   accepts them; the real API ignores them too (the ``community.digitalocean`` modules
   send their whole argument set to ``POST /v2/droplets``: ``oauth_token``,
   ``validate_certs``, ``timeout``, ``baseurl``, ``resize_disk``, ``project_name``,
   ``firewall``, ``unique_name``, ``wait``... and that call works against
   api.digitalocean.com). Nothing is done for this: no schema is loosened.
2. In request bodies an object property sent as JSON ``null`` counts as absent (it is
   dropped before validation), because the API decodes bodies with Go's encoding/json,
   where ``null`` leaves a field unset. The modules send ``null`` for every option the
   user left out (``user_data``, ``vpc_uuid``, ``volumes``, the unset ones of a firewall
   rule's ``sources``...). A *required* property sent as ``null`` is then reported
   missing, as the API would refuse it. Responses get no such leniency: the twin must
   answer ``null`` only where the document says ``nullable``.
3. Request headers are not checked: the recording does not keep them (Authorization is
   never recorded).

Everything else the modules send that the document does not allow is reported as a
``request:`` problem, not excused: e.g. ``digital_ocean_firewall`` sends ``droplet_ids``
as strings (its argument spec says ``elements="str"``) where the document says integers.
``assert_recording_valid(..., requests=False)`` leaves such client problems out of the
failure (they are still counted and written to the summary).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import (
    OAS30ReadValidator,
    OAS30Validator,
    OAS30WriteValidator,
    oas30_format_checker,
)
from referencing import Registry, Resource, Specification

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = REPO_ROOT.parent / "shared" / "data" / "digitalocean-openapi.v2.yaml"
#: Where ``assert_recording_valid`` appends one line per recording checked.
SUMMARY = REPO_ROOT / ".stagecraft-test" / "openapi-checked.txt"

_DOC_URI = "urn:digitalocean-openapi-v2"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_CACHE_VERSION = 1


def document_path() -> Path:
    return Path(os.environ.get("STAGECRAFT_DO_OPENAPI") or DOCUMENT)


def cache_dir() -> Path:
    """Per-machine cache: ``$STAGECRAFT_CACHE_DIR`` or ``$XDG_CACHE_HOME/stagecraft``
    (``~/.cache/stagecraft``)."""
    if os.environ.get("STAGECRAFT_CACHE_DIR"):
        return Path(os.environ["STAGECRAFT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stagecraft"


@functools.cache
def load_document() -> dict[str, Any]:
    """The parsed document, once per process; parsed YAML is kept as a pickle keyed by
    the file's sha256 under ``cache_dir()``, so other processes (xdist workers, later
    runs) only unpickle it (tens of milliseconds instead of about a second)."""
    source = document_path()
    raw = source.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    cached = cache_dir() / f"digitalocean-openapi-{digest}.v{_CACHE_VERSION}.pickle"
    try:
        with cached.open("rb") as f:
            document = pickle.load(f)
        if isinstance(document, dict) and "paths" in document:
            return document
    except (OSError, pickle.PickleError, EOFError, AttributeError, ValueError):
        pass
    document = yaml.load(raw, Loader=yaml.CSafeLoader)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".do-openapi-", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(document, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cached)  # atomic: concurrent workers never read half a file
    except OSError:
        pass  # an unwritable cache only costs time
    return document


# --- the document, indexed ---------------------------------------------------------------


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _pointer(parts: Iterable[Any]) -> str:
    return "#" + "".join("/" + _escape(str(p)) for p in parts)


@dataclass
class _Route:
    template: str
    regex: re.Pattern[str]
    names: list[str]
    literal_segments: int


@dataclass
class _Spec:
    document: dict[str, Any]
    routes: list[_Route]
    registry: Registry = field(repr=False)

    def resolve(self, node: Any, where: str) -> tuple[Any, str]:
        """Follows a ``$ref`` chain in the document: (object, its pointer)."""
        seen = 0
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"unsupported $ref {ref!r} at {where}")
            where = ref
            node = self.document
            for token in ref[2:].split("/"):
                node = node[token.replace("~1", "/").replace("~0", "~")]
            seen += 1
            if seen > 50:
                raise ValueError(f"$ref loop at {where}")
        return node, where


@functools.cache
def _spec() -> _Spec:
    document = load_document()
    routes = []
    for template in document["paths"]:
        segments = template.strip("/").split("/")
        names: list[str] = []
        pattern = ""
        literal = 0
        for segment in segments:
            found = re.fullmatch(r"\{([^}]+)\}", segment)
            if found:
                names.append(found.group(1))
                pattern += "/([^/]+)"
            else:
                literal += 1
                pattern += "/" + re.escape(segment)
        routes.append(_Route(template, re.compile(pattern + "/?"), names, literal))
    # Concrete paths before templated ones (OpenAPI: "When matching URLs, concrete
    # (non-templated) paths would be matched before their templated counterparts").
    routes.sort(key=lambda r: (-r.literal_segments, len(r.names)))
    resource = Resource(contents=document, specification=Specification.OPAQUE)
    registry = Registry().with_resource(_DOC_URI, resource)
    return _Spec(document, routes, registry)


def _validator(kind: str, pointer: str) -> Any:
    """A validator of the schema at ``pointer`` (``#/...``) in the document."""
    return _validator_cached(kind, pointer)


@functools.lru_cache(maxsize=4096)
def _validator_cached(kind: str, pointer: str) -> Any:
    cls = {"write": OAS30WriteValidator, "read": OAS30ReadValidator,
           "parameter": OAS30Validator}[kind]
    return cls(
        {"$ref": _DOC_URI + pointer},
        registry=_spec().registry,
        format_checker=oas30_format_checker,
    )


def _leaf_errors(errors: Iterable[ValidationError]) -> Iterator[ValidationError]:
    """The most specific errors: for a failed oneOf/anyOf, the errors of the branch that
    came closest (fewest failing places, then the deepest), so a problem names the field
    that is wrong rather than 'is not valid under any of the given schemas'."""
    for error in errors:
        if error.context:
            branches: dict[Any, list[ValidationError]] = {}
            for sub in error.context:
                branches.setdefault(sub.relative_schema_path[0], []).append(sub)

            def closeness(subs: list[ValidationError]) -> tuple[int, int]:
                places = {tuple(map(str, e.absolute_path)) for e in subs}
                return (len(places), -max(len(e.absolute_path) for e in subs))

            best = min(branches.values(), key=closeness)
            yield from _leaf_errors(best)
            continue
        if error.message == "None for not nullable":
            continue  # the same keyword also says "None is not of type ..."
        yield error


def _schema_problems(kind: str, pointer: str, instance: Any) -> list[tuple[str, str]]:
    """(JSON pointer in the instance, message) for each violation."""
    validator = _validator(kind, pointer)
    out = []
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path)))
    for error in _leaf_errors(errors):
        message = error.message
        if error.instance is None and error.validator == "type":
            message = f"null is not of type {error.validator_value!r} (not nullable)"
        if len(message) > 300:
            message = message[:300] + "..."
        problem = (_pointer(error.absolute_path), message)
        if problem not in out:
            out.append(problem)
    return out


# --- request side helpers ----------------------------------------------------------------


def _drop_nulls(value: Any) -> Any:
    """Leniency 2: object properties that are null count as absent (Go encoding/json)."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _convert(text: str, schema: dict[str, Any]) -> Any:
    """A query or path value (text) as the type its schema declares; text that does not
    convert stays text, so the schema check reports it."""
    kind = schema.get("type")
    if kind is None:
        for key in ("allOf", "oneOf", "anyOf"):
            for sub in schema.get(key, []):
                sub, _ = _spec().resolve(sub, "")
                if sub.get("type"):
                    kind = sub["type"]
                    break
            if kind:
                break
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text) if not re.fullmatch(r"-?\d+", text) else int(text)
        if kind == "boolean":
            return {"true": True, "false": False}[text]
    except (ValueError, KeyError):
        return text
    return text


def _parameters(spec: _Spec, path_item: dict[str, Any], operation: dict[str, Any],
                where: str) -> dict[tuple[str, str], tuple[dict[str, Any], str]]:
    found: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
    for level, owner in (("", path_item), ("/" + where.rsplit("/", 1)[-1], operation)):
        for i, param in enumerate(owner.get("parameters", [])):
            base = where.rsplit("/", 1)[0] + level
            resolved, pointer = spec.resolve(param, f"{base}/parameters/{i}")
            if pointer == f"{base}/parameters/{i}" or not pointer.startswith("#"):
                pointer = f"{base}/parameters/{i}"
            found[(resolved["in"], resolved["name"])] = (resolved, pointer)
    return found


def _find_route(spec: _Spec, path: str) -> tuple[_Route, dict[str, str]] | None:
    for route in spec.routes:
        match = route.regex.fullmatch(path)
        if match:
            return route, dict(zip(route.names, match.groups()))
    return None


# --- the checks --------------------------------------------------------------------------


def validate_exchange(record: dict[str, Any]) -> list[str]:
    """Problems of one recorded exchange (empty: it is as the document says)."""
    spec = _spec()
    method = str(record.get("method", "")).upper()
    path = str(record.get("path", ""))
    status = record.get("status")
    label = f"{method} {path} -> {status}"
    problems: list[str] = []

    def request(where: str, message: str) -> None:
        problems.append(f"request: {label}: {where}: {message}")

    def response(where: str, message: str) -> None:
        problems.append(f"response: {label}: {where}: {message}")

    found = _find_route(spec, path)
    if found is None:
        request("path", "no path template of the document matches this path")
        return problems
    route, path_values = found
    path_item = spec.document["paths"][route.template]
    label = f"{method} {path} ({route.template}) -> {status}"
    operation = path_item.get(method.lower()) if method.lower() in _METHODS else None
    if not isinstance(operation, dict):
        request("method", f"the document has no {method} operation on {route.template}")
        return problems
    op_pointer = _pointer(["paths", route.template, method.lower()])
    params = _parameters(spec, path_item, operation, op_pointer)

    # Path parameters.
    for name, text in path_values.items():
        declared = params.get(("path", name))
        if declared is None:
            request(f"path parameter {name}", "not declared by the operation")
            continue
        param, pointer = declared
        if "schema" in param:
            value = _convert(text, spec.resolve(param["schema"], "")[0])
            for where, message in _schema_problems("parameter", pointer + "/schema", value):
                request(f"path parameter {name} {where}", message)

    # Query parameters.
    query = record.get("query") or {}
    for name, values in query.items():
        declared = params.get(("query", name))
        if declared is None:
            request(f"query parameter {name}", "not declared by the operation")
            continue
        param, pointer = declared
        schema = spec.resolve(param.get("schema", {}), "")[0]
        values = values if isinstance(values, list) else [values]
        if schema.get("type") == "array":
            items = spec.resolve(schema.get("items", {}), "")[0]
            texts = [part for v in values for part in (str(v).split(",")
                     if param.get("explode") is False else [str(v)])]
            value: Any = [_convert(t, items) for t in texts]
        else:
            if len(values) != 1:
                request(f"query parameter {name}", f"sent {len(values)} times, declared once")
                continue
            value = _convert(str(values[0]), schema)
        for where, message in _schema_problems("parameter", pointer + "/schema", value):
            request(f"query parameter {name} {where}", message)
    for (location, name), (param, _) in params.items():
        if location == "query" and param.get("required") and name not in query:
            request(f"query parameter {name}", "required by the operation, not sent")

    # Request body.
    body = record.get("request_body")
    if "requestBody" in operation:
        request_body, rb_pointer = spec.resolve(operation["requestBody"],
                                                op_pointer + "/requestBody")
        content = request_body.get("content", {})
        if body is None:
            if request_body.get("required"):
                request("#", "the operation requires a request body, none was sent")
        elif "application/json" not in content:
            request("#", f"the operation takes {sorted(content)}, not JSON")
        elif "schema" in content["application/json"]:
            schema_pointer = rb_pointer + "/content/application~1json/schema"
            for where, message in _schema_problems("write", schema_pointer, _drop_nulls(body)):
                request(where, message)
    elif body not in (None, {}, ""):
        request("#", "a body was sent to an operation that takes none")

    # Status.
    responses = operation.get("responses", {})
    key = str(status)
    if key not in responses:
        wildcard = key[:1] + "XX"
        if wildcard in responses:
            key = wildcard
        elif "default" in responses and isinstance(status, int) and 400 <= status <= 599:
            key = "default"
        else:
            response("status", f"{status} is not a status the operation declares "
                     f"({', '.join(sorted(responses))})")
            return problems
    chosen, resp_pointer = spec.resolve(responses[key], op_pointer + f"/responses/{_escape(key)}")

    # Response headers.
    headers = {str(k).lower(): v for k, v in (record.get("response_headers") or {}).items()}
    for name, header in (chosen.get("headers") or {}).items():
        header_obj, header_pointer = spec.resolve(
            header, resp_pointer + f"/headers/{_escape(name)}")
        if name.lower() not in headers:
            if header_obj.get("required"):
                response(f"header {name}", "declared required, missing")
            continue
        if "schema" in header_obj:
            value = _convert(str(headers[name.lower()]),
                             spec.resolve(header_obj["schema"], "")[0])
            for where, message in _schema_problems("read", header_pointer + "/schema", value):
                response(f"header {name} {where}", message)

    # Response body.
    answer = record.get("response_body")
    content = chosen.get("content") or {}
    if not content:
        if answer not in (None, ""):
            response("#", f"the document declares no body for {key}, one was answered")
        return problems
    if "application/json" not in content:
        return problems  # not JSON: the recording keeps JSON only; nothing to compare
    if answer is None:
        response("#", f"the document declares a JSON body for {key}, none was answered")
        return problems
    media = content["application/json"]
    if "schema" in media:
        schema_pointer = resp_pointer + "/content/application~1json/schema"
        for where, message in _schema_problems("read", schema_pointer, answer):
            response(where, message)
    return problems


def read_recording(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not a JSON line ({exc})") from exc
    return records


def validate_recording(path: str | os.PathLike[str]) -> tuple[int, list[str]]:
    """(exchanges checked, every problem of the recording)."""
    records = read_recording(path)
    problems: list[str] = []
    for record in records:
        problems.extend(validate_exchange(record))
    return len(records), problems


def assert_recording_valid(path: str | os.PathLike[str], node_id: str | None = None, *,
                           requests: bool = True) -> int:
    """Fails (listing at most 20 problems and the total) unless every exchange of the
    recording is as the document says; ``requests=False`` fails on the twin's
    (``response:``) problems only. Appends a line to ``SUMMARY`` either way. Returns the
    count of exchanges checked."""
    count, problems = validate_recording(path)
    request_problems = [p for p in problems if p.startswith("request:")]
    response_problems = [p for p in problems if p.startswith("response:")]
    failing = problems if requests else response_problems
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    line = (f"{node_id or Path(path).name}\t{count} exchanges checked\t"
            f"{len(response_problems)} response problems\t"
            f"{len(request_problems)} request problems\n")
    with SUMMARY.open("a") as f:
        f.write(line)
    if failing:
        shown = "\n".join(f"  {p}" for p in failing[:20])
        more = f"\n  ... and {len(failing) - 20} more" if len(failing) > 20 else ""
        raise AssertionError(
            f"{len(failing)} problems in {count} exchanges of {path} against "
            f"DigitalOcean's OpenAPI document:\n{shown}{more}")
    return count


def summary_totals(summary: Path | None = None) -> tuple[int, int, int, int]:
    """(recordings, exchanges checked, response problems, request problems) summed over
    the summary file (all zero when there is none)."""
    summary = summary or SUMMARY
    totals = [0, 0, 0, 0]
    if not summary.exists():
        return (0, 0, 0, 0)
    for line in summary.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) != 4:
            continue
        totals[0] += 1
        for i, text in enumerate(fields[1:], 1):
            totals[i] += int(text.split()[0])
    return (totals[0], totals[1], totals[2], totals[3])
