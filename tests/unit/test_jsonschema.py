"""The exported JSON Schema, checked with a real consumer (the `jsonschema` library).

Editors validate stagecraft.yml with this schema, so it must accept every config the
loader accepts and reject what is structurally wrong. It cannot express cross-field
rules (roles on hosts, routes need an edge, ...): those are `stagecraft validate`'s,
so the invalid cases here are structural ones.

Documents are read with stagecraft's own YAML reader (YAML 1.2: `on:` is the string
"on"), as a YAML 1.2 language server reads them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from stagecraft.config import load_config_text
from stagecraft.config.jsonschema import config_json_schema
from stagecraft.config.positions import load_yaml_text
from stagecraft.errors import ConfigError
from stagecraft.scaffold import TEMPLATE_CHOICES, InitOptions, ServiceChoice, init_project, render_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "shop" / "reference" / "stagecraft.yml"
VALID = sorted((ROOT / "tests" / "data" / "configs" / "valid").glob("*.yml"))

SCHEMA = config_json_schema()
VALIDATOR = Draft202012Validator(SCHEMA)


def read(text: str):
    data, _smap, issues = load_yaml_text(text, "stagecraft.yml")
    assert issues == []
    return data


def errors(data) -> list[str]:
    """Every error as 'json/path: keyword', including those inside anyOf/oneOf branches."""
    found: set[str] = set()

    def collect(error) -> None:
        found.add(f"{'/'.join(map(str, error.absolute_path))}: {error.validator}")
        for sub in error.context or ():
            collect(sub)

    for error in VALIDATOR.iter_errors(data):
        collect(error)
    return sorted(found)


def test_the_schema_is_a_valid_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(SCHEMA["required"]) == {"version", "project", "services", "environments"}


def test_every_field_has_a_description() -> None:
    missing = []

    def walk(node, where):
        if isinstance(node, dict):
            for name, prop in (node.get("properties") or {}).items():
                target = prop
                if "$ref" in prop and "description" not in prop:  # described by its model
                    target = SCHEMA["$defs"][prop["$ref"].rsplit("/", 1)[1]]
                if "description" not in target:
                    missing.append(f"{where}.{name}")
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}[{index}]")

    walk(SCHEMA, "#")
    assert missing == []


@pytest.mark.usefixtures("stand_in_providers")  # the example uses kinds with no provider yet
@pytest.mark.parametrize("path", [EXAMPLE, *VALID], ids=lambda p: p.name)
def test_valid_configs_pass(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    load_config_text(text)  # valid for the loader ...
    assert errors(read(text)) == []  # ... and for the schema


def _init_options():
    yield InitOptions(name="app")
    for option, choices in TEMPLATE_CHOICES.items():  # also kinds init does not offer yet
        for choice in choices:
            yield InitOptions(name="app", **{option: choice})
    yield InitOptions(name="everything", environments=("local", "staging", "production"),
                      services=(ServiceChoice("web", 3000), ServiceChoice("api", 8080)),
                      backend="encore-ts", frontend="generic", network="headscale",
                      cloud="digitalocean", secrets="encore", ci="github")


@pytest.mark.parametrize("options", list(_init_options()),
                         ids=lambda o: f"{o.backend}-{o.frontend}-{o.network}-{o.cloud}-{o.secrets}-{o.ci}")
def test_configs_written_by_init_pass(options: InitOptions) -> None:
    assert errors(read(render_config(options))) == []


def test_schema_written_by_init_is_the_exported_one(tmp_path: Path) -> None:
    init_project(tmp_path, InitOptions(name="app"))
    written = json.loads((tmp_path / ".stagecraft" / "schema.json").read_text())
    assert written == SCHEMA
    assert errors(read((tmp_path / "stagecraft.yml").read_text())) == []


# Structurally invalid variations of a valid base: (description, mutation, expected error).
BASE = read("""\
version: 1
project: { name: shop }
services:
  web:
    image: nginx:1.27
    port: 80
    healthcheck: { path: /up, interval: 2s }
    on: [app]
    routes: [{ host: example.com }]
volumes:
  data: { size_gb: 1 }
environments:
  prod:
    services: { web: { replicas: 2 } }
    hosts: [{ name: h1, roles: [edge, app] }]
""")


def _set(path, value):
    def mutate(doc):
        node = doc
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return mutate


def _delete(path):
    def mutate(doc):
        node = doc
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]
    return mutate


INVALID = [
    ("unknown top-level key", _set(("servics",), {}), ": additionalProperties"),
    ("unknown service key", _set(("services", "web", "prot"), 80), "services/web: additionalProperties"),
    ("unknown host key", _set(("environments", "prod", "hosts", 0, "rolse"), ["a"]),
     "environments/prod/hosts/0: additionalProperties"),
    ("unknown override key", _set(("environments", "prod", "services", "web", "replicsa"), 1),
     "environments/prod/services/web: additionalProperties"),
    ("port is text", _set(("services", "web", "port"), "eighty"), "services/web/port: anyOf"),
    ("replicas is a list", _set(("services", "web", "replicas"), [1]), "services/web/replicas: type"),
    ("on is a string", _set(("services", "web", "on"), "app"), "services/web/on: type"),
    ("hosts is a mapping", _set(("environments", "prod", "hosts"), {"h1": {}}),
     "environments/prod/hosts: type"),
    ("bad provider kind", _set(("providers",), {"cloud": {"kind": "aws"}}), "providers/cloud: oneOf"),
    ("provider without kind", _set(("providers",), {"cloud": {"region": "fra1"}}),
     "providers/cloud: oneOf"),
    ("provider missing its field", _set(("providers",), {"network": {"kind": "tailscale"}}),
     "providers/network: oneOf"),
    ("bad enum", _set(("firewall",), {"ssh": "maybe"}), "firewall/ssh: enum"),
    ("bad volume filesystem", _set(("volumes", "data", "filesystem"), "ntfs"),
     "volumes/data/filesystem: enum"),
    ("version 2", _set(("version",), 2), "version: const"),
    ("missing version", _delete(("version",)), ": required"),
    ("missing project name", _delete(("project", "name")), "project: required"),
    ("missing service on", _delete(("services", "web", "on")), "services/web: required"),
    ("missing host roles", _delete(("environments", "prod", "hosts", 0, "roles")),
     "environments/prod/hosts/0: required"),
    ("project name not a DNS label", _set(("project", "name"), "Shop_1"), "project/name: pattern"),
    ("service name not a DNS label", _set(("services", "Web_1"), {"image": "a", "on": ["app"]}),
     "services: additionalProperties"),
    ("duration without unit", _set(("services", "web", "healthcheck", "interval"), "10"),
     "services/web/healthcheck/interval: pattern"),
    ("literal secret", _set(("project", "registry"), {"server": "r.io", "password": "hunter2"}),
     "project/registry/password: anyOf"),
    ("empty services", _set(("services",), {}), "services: minProperties"),
    ("empty on", _set(("services", "web", "on"), []), "services/web/on: minItems"),
]


@pytest.mark.parametrize(("mutate", "expected"), [(m, e) for _, m, e in INVALID],
                         ids=[d for d, _, _ in INVALID])
def test_structurally_invalid_configs_are_rejected(mutate, expected: str) -> None:
    doc = copy.deepcopy(BASE)
    mutate(doc)
    assert expected in errors(doc)
    # The loader agrees (the schema is not stricter than stagecraft itself).
    with pytest.raises(ConfigError):
        load_config_text(yaml.safe_dump(doc))


def test_x_keys_are_accepted_at_every_level() -> None:
    # Including maps keyed by name (services, volumes, environments, overrides), where
    # an x- entry is an anchor holder, not a service: the loader ignores it.
    text = """\
version: 1
x-top: { anything: [1, 2] }
project: { name: shop, x-owner: me }
providers: { x-note: 1, cloud: { kind: local, x-c: 1 } }
services:
  x-base: &base { image: nginx, x-partial: true }
  web:
    <<: *base
    port: 80
    on: [app]
    x-s: 1
    healthcheck: { path: /, x-h: 1 }
    routes: [{ host: a.example.com, x-r: 1 }]
volumes: { x-v: 1 }
firewall: { x-f: 1 }
environments:
  x-template: { not: a host list }
  prod:
    x-e: 1
    services: { x-so: 1, web: { replicas: 2, x-w: 1 } }
    providers: { network: { kind: none, x-n: 1 } }
    rollout: { x-r: 1 }
    hosts: [{ name: edge-1, roles: [edge, app], x-h: 1 }]
"""
    loaded = load_config_text(text)
    assert list(loaded.environments) == ["prod"]
    assert errors(read(text)) == []


def test_keys_like_x_but_not_x_are_not_extensions() -> None:
    doc = copy.deepcopy(BASE)
    doc["X-top"] = 1
    doc["services"]["web"]["xx-note"] = 1
    assert [e for e in errors(doc) if "additionalProperties" in e] == [
        ": additionalProperties", "services/web: additionalProperties"]
