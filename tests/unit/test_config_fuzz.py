"""Nothing but ConfigError leaves the loader, whatever the input (spec/core/config.md).

Two generators: arbitrary YAML documents and text, and mutations of the valid shop
example (which reach the deeper layers: overlays, cross-field checks, error positions).
Every reported issue must carry a real position inside the document.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stagecraft.config import load_config_text
from stagecraft.config.loader import LoadedConfig
from stagecraft.config.positions import load_yaml_text
from stagecraft.errors import ConfigError

# The example uses cloud digitalocean and network tailscale, which have no provider
# yet: registered stand-ins make it the valid document the mutations start from.
pytestmark = pytest.mark.usefixtures("stand_in_providers_module")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shop" / "reference" / "stagecraft.yml"
EXAMPLE_TEXT = EXAMPLE.read_text(encoding="utf-8")

_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
FUZZ = settings(max_examples=250, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check_outcome(text: str) -> None:
    """Load ``text``: success, or a ConfigError whose every issue has a position in it."""
    try:
        result = load_config_text(text)
    except ConfigError as error:
        assert error.issues, "a ConfigError from the loader must list its issues"
        # YAML breaks lines at \r\n, \r, \n, NEL, LS and PS; a problem may sit at the end.
        last_line = len(_LINE_BREAK.findall(text)) + 2
        for issue in error.issues:
            assert issue.position is not None, f"no position for {issue}"
            assert issue.position.line >= 1 and issue.position.column >= 1, str(issue)
            assert issue.position.line <= last_line, str(issue)
            assert issue.message
        return
    assert isinstance(result, LoadedConfig)


# --- (a) random documents --------------------------------------------------------------

KEYS = ["version", "project", "name", "registry", "server", "password", "providers",
        "backend", "cloud", "network", "kind", "auth_key", "services", "image", "build",
        "from", "on", "port", "routes", "host", "path", "healthcheck", "volumes", "replicas",
        "stateful", "environments", "hosts", "roles", "address", "domain", "migrations",
        "engine", "pre_deploy", "command", "firewall", "rollout", "x-ext", "[key]", "<key>"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70000), st.floats(allow_nan=False),
    st.text(max_size=10),
    st.sampled_from(["app", "edge", "local", "ssh", "tailscale", "digitalocean", "none",
                     "drizzle", "command", "1s", "10x", "${secret:A}", "${bad}", "${",
                     "{domain}", "{env}.example.com", "pg:/data", "nginx:1", "on", "no"]),
)
DOCS = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), children,
                        max_size=5),
    ),
    max_leaves=40,
)
FRAGMENTS = st.sampled_from([
    "version: 1\n", "project:\n", "  name: shop\n", "services:\n", "  web: {on: [a]}\n",
    "environments:\n", "  prod:\n", "    hosts: [{name: h, roles: [a]}]\n", "- ", "  ", "\t",
    "{", "}", "[", "]", ": ", "---\n", "...\n", "%YAML 1.1\n", "&a ", "*a ", "<<: *a\n",
    "!!int ", "!!binary ", "!!python/object:os.system ", "? ", "'", '"', "#", "\x00", "\x85",
    "\ufeff", "\r\n", "\n",
])
TEXTS = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(FRAGMENTS, st.text(max_size=6)), max_size=20).map("".join),
)


@FUZZ
@given(data=DOCS)
def test_random_yaml_documents_only_raise_config_error(data) -> None:
    check_outcome(yaml.safe_dump(data, allow_unicode=True))


@FUZZ
@given(text=TEXTS)
@example("a: &x [*x]\n")                    # recursive anchor
@example("x: !!int nope\n")                 # bad explicit tag
@example("x: !!timestamp nope\n")
@example("!!int")                           # empty scalar with a tag
@example("x: \x00\n")                       # control character
@example("[key]: 1\n")                      # keys that look like the loader's markers
@example("<key>: 1\n")
@example("version: 1\nenvironments: {prod: 3}\n")
@example("version: 1\nenvironments:\n  prod:\n    services: 7\n")
def test_random_text_only_raises_config_error(text: str) -> None:
    check_outcome(text)


# --- (b) mutations of the valid example ------------------------------------------------

BASE, _SMAP, _ = load_yaml_text(EXAMPLE_TEXT, "stagecraft.yml")  # YAML 1.2 view of it
RANDOM_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 100000), st.floats(allow_nan=False),
    st.text(max_size=12), st.builds(list), st.builds(dict),  # fresh objects: mutations must not leak
    st.sampled_from(["edge", "worker", "local", "ssh", "api", "db", "pgdata", "${secret:X}",
                     "${env:}", "5", "5s", "{domain}", "{zone}", "a:b", "/x:/y:ro"]),
)


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, path + (index,))


def _get(value, path):
    for part in path:
        value = value[part]
    return value


@st.composite
def mutated_examples(draw) -> str:
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _get(doc, path[:-1]), path[-1]
        op = draw(st.sampled_from(["delete", "retype", "rename", "x-key", "duplicate", "scalar"]))
        if op == "delete":
            del parent[last]
        elif op == "retype":  # same content, another container type
            value = parent[last]
            if isinstance(value, dict):
                parent[last] = list(value.values())
            elif isinstance(value, list):
                parent[last] = {f"k{i}": v for i, v in enumerate(value)}
            else:
                parent[last] = [value] if draw(st.booleans()) else {"value": value}
        elif op == "rename" and isinstance(parent, dict):
            new = draw(st.one_of(st.text(min_size=1, max_size=8),
                                 st.sampled_from([str(last) + "s", str(last)[:-1] or "k", "x-" + str(last)])))
            parent[new] = parent.pop(last)
        elif op == "x-key":
            target = _get(doc, path)
            if isinstance(target, dict):
                target["x-" + draw(st.text(max_size=5))] = draw(RANDOM_SCALARS)
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
        else:
            parent[last] = draw(RANDOM_SCALARS)
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


def test_the_unmutated_example_loads() -> None:
    # The mutations start from a valid document, so a failure below is the mutation's.
    check_outcome(yaml.safe_dump(BASE, sort_keys=False))
    load_config_text(yaml.safe_dump(BASE, sort_keys=False))


@FUZZ
@given(text=mutated_examples())
def test_mutations_of_the_example_only_raise_config_error_with_positions(text: str) -> None:
    check_outcome(text)
