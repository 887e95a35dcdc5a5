"""Loading stagecraft.yml: every kind of problem, with its exact message and position.

Positions are what a user sees first (`file:line:column`), so each test pins the line
and the column, not only the words. Tests of kinds that have no provider yet (cloud
digitalocean and ssh, network tailscale and headscale) register stand-ins for them
(tests/conftest.py); test_provider_kinds.py checks that they are refused otherwise. Configs are small and inline; longer ones live in
tests/data/configs/{valid,invalid}/ (invalid ones list their expected problems in
`# expect:` comments at the end).
"""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from stagecraft.config import find_config, load_config, load_config_text
from stagecraft.config.schema import (
    CloudDigitalOcean,
    CloudLocal,
    NetworkNone,
    NetworkTailscale,
)
from stagecraft.errors import ConfigError, ExitCode

DATA = Path(__file__).resolve().parents[1] / "data" / "configs"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shop" / "reference" / "stagecraft.yml"


def fmt(issue) -> str:
    """An issue as 'line:column: path: message' (path left out for whole-file problems)."""
    where = f"{issue.position.line}:{issue.position.column}"
    return f"{where}: {issue.dotted}: {issue.message}" if issue.path else f"{where}: {issue.message}"


def problems(text: str) -> list[str]:
    """Every problem of an invalid config, in the order they are reported."""
    with pytest.raises(ConfigError) as caught:
        load_config_text(dedent(text))
    assert caught.value.issues, "a ConfigError must carry its issues"
    return [fmt(issue) for issue in caught.value.issues]


def load(text: str):
    return load_config_text(dedent(text))


# A valid config the tests below vary. Line numbers:
#  1 version / 2 project / 3 name / 4 services / 5 web / 6 image / 7 port /
#  8 healthcheck / 9 on / 10 routes / 11 environments / 12 prod / 13 hosts / 14 - h1
BASE = """\
version: 1
project:
  name: shop
services:
  web:
    image: nginx:1.27
    port: 80
    healthcheck: { path: / }
    on: [app]
    routes: [{ host: example.com }]
environments:
  prod:
    hosts:
      - { name: h1, roles: [edge, app] }
"""


def test_base_config_is_valid() -> None:
    loaded = load(BASE)
    env = loaded.environment("prod")
    assert env.services["web"].port == 80
    assert [h.name for h in env.hosts] == ["h1"]


# --- shape: unknown, missing, wrong type ---------------------------------------------


def test_unknown_key_suggests_the_close_field() -> None:
    assert problems("""\
        version: 1
        project:
          name: shop
          nmae: shop
        services:
          web: { image: nginx, on: [app] }
        environments:
          prod: { hosts: [{ name: h1, roles: [app] }] }
        """) == ["4:3: project.nmae: unknown setting 'nmae'; did you mean 'name'?"]


def test_unknown_key_without_a_close_field_lists_the_allowed_ones() -> None:
    assert problems("""\
        version: 1
        project: { name: shop, zzzz: 1 }
        services:
          web: { image: nginx, on: [app] }
        environments:
          prod: { hosts: [{ name: h1, roles: [app] }] }
        """) == ["2:24: project.zzzz: unknown setting 'zzzz'; expected one of: name, registry"]


def test_unknown_key_in_a_provider_suggests_from_that_provider_kind() -> None:
    assert problems("""\
        version: 1
        project: { name: shop }
        providers:
          cloud: { kind: digitalocean, token: "${secret:DO}", regoin: fra1 }
        services:
          web: { image: nginx, on: [app] }
        environments:
          prod: { hosts: [{ name: h1, roles: [app] }] }
        """) == [
        "4:3: providers.cloud.region: missing required setting 'region'",
        "4:55: providers.cloud.regoin: unknown setting 'regoin'; did you mean 'region'?",
    ]


def test_missing_required_setting_points_at_its_parent_key() -> None:
    assert problems("""\
        version: 1
        project:
          registry: { server: registry.example.com }
        services:
          web: { image: nginx, on: [app] }
        environments:
          prod: { hosts: [{ name: h1, roles: [app] }] }
        """) == ["2:1: project.name: missing required setting 'name'"]


def test_missing_top_level_settings_point_at_the_start_of_the_file() -> None:
    assert problems("""\
        project: { name: shop }
        """) == [
        "1:1: version: missing required setting 'version'",
        "1:1: services: missing required setting 'services'",
        "1:1: environments: missing required setting 'environments'",
    ]


def test_missing_top_level_sections_are_not_blamed_on_environments() -> None:
    # Regression: each environment also reported "environments.prod.project: missing
    # required setting 'project'", as if the environment lacked it.
    assert problems("""\
        version: 1
        environments:
          prod: { hosts: [{ name: h1, roles: [app] }] }
        """) == [
        "1:1: project: missing required setting 'project'",
        "1:1: services: missing required setting 'services'",
    ]
    # hosts belong to the environment: that one is the environment's.
    assert problems(BASE.replace("    hosts:\n      - { name: h1, roles: [edge, app] }\n",
                                 "    domain: example.com\n")) == [
        "12:3: environments.prod.hosts: missing required setting 'hosts'",
    ]


def test_wrong_type_names_what_was_expected_and_what_was_given() -> None:
    assert problems("""\
        version: 1
        project: { name: shop }
        services:
          web:
            image: nginx
            port: eighty
            replicas: [1]
            on: [app]
        environments:
          prod: { hosts: [{ name: h1, roles: [app] }] }
        """) == [
        "6:11: services.web.port: expected an integer, got string 'eighty'",
        "7:15: services.web.replicas: expected an integer, got list [1]",
    ]


def test_number_out_of_range() -> None:
    assert problems(BASE.replace("port: 80", "port: 0")) == [
        "7:11: services.web.port: expected a number >= 1, got 0",
    ]
    assert problems(BASE.replace("port: 80", "port: 70000")) == [
        "7:11: services.web.port: expected a number <= 65535, got 70000",
    ]


def test_empty_list_where_one_entry_is_required() -> None:
    assert problems(BASE.replace("on: [app]", "on: []")) == [
        "9:9: services.web.on: expected at least 1 entry, got none",
    ]


def test_bad_durations() -> None:
    assert problems(BASE.replace("{ path: / }", "{ path: /, interval: 10x, timeout: 10 }")) == [
        "8:39: services.web.healthcheck.interval: expected a duration with a unit "
        "(ms, s, m, h, d), like 10s or 500ms, got '10x'",
        "8:53: services.web.healthcheck.timeout: expected a duration with a unit, "
        "like 10s or 500ms, got 10",
    ]


def test_durations_with_every_unit_are_accepted() -> None:
    text = BASE.replace("{ path: / }", "{ path: /, interval: 500ms, timeout: 2s, start_period: 1.5m }")
    text += "rollout: { health_timeout: 1h, drain: 1d }\n"
    rollout = load(text).environment("prod").rollout
    assert (rollout.health_timeout, rollout.drain) == ("1h", "1d")


def test_bad_dns_labels() -> None:
    assert problems(BASE.replace("name: shop", "name: Shop_1")) == [
        "3:9: project.name: expected lowercase letters, digits and '-' (at most 63), "
        "not starting or ending with '-', got 'Shop_1'",
    ]
    assert problems(BASE.replace("name: h1", "name: -h1")) == [
        "14:17: environments.prod.hosts[0].name: expected lowercase letters, digits and '-' "
        "(at most 63), not starting or ending with '-', got '-h1'",
    ]


def test_bad_enum_values() -> None:
    assert problems(BASE + "firewall: { ssh: maybe }\n") == [
        "15:18: firewall.ssh: expected 'private' or 'public', got 'maybe'",
    ]
    assert problems(BASE.replace("version: 1", "version: 2")) == [
        "1:10: version: expected 1, got 2",
    ]


def test_unknown_provider_kind_lists_the_kinds() -> None:
    assert problems(BASE + "providers:\n  cloud: { kind: aws }\n") == [
        "16:10: providers.cloud: unknown kind 'aws': expected one of 'digitalocean', 'local', 'ssh'",
    ]


def test_provider_without_kind() -> None:
    assert problems(BASE + "providers:\n  network: { auth_key: '${secret:TS}' }\n") == [
        "16:12: providers.network: missing 'kind' (which provider to use)",
    ]


def test_provider_kind_missing_its_own_required_field() -> None:
    assert problems(BASE + "providers:\n  network: { kind: tailscale }\n") == [
        "16:3: providers.network.auth_key: missing required setting 'auth_key'",
    ]


@pytest.mark.usefixtures("stand_in_providers")
def test_headscale_names_its_server_and_key_except_on_the_local_cloud() -> None:
    # Cloud local runs a Headscale server of its own and makes the key.
    load(BASE + "providers:\n  network: { kind: headscale }\n")
    cloud = "  cloud: { kind: digitalocean, token: '${secret:T}', region: fra1 }\n"
    assert problems(BASE + "providers:\n" + cloud
                    + "  network: { kind: headscale, auth_key: '${secret:K}' }\n") == [
        "17:12: providers.network.login_server: network 'headscale' needs login_server on "
        "cloud 'digitalocean': give the URL of your Headscale server (clouds that run a "
        "Headscale server of their own: local)",
    ]


def test_service_needs_exactly_one_image_source() -> None:
    # Located at the service's settings (its first key).
    assert problems(BASE.replace("    image: nginx:1.27\n", "")) == [
        "6:5: services.web: a service needs exactly one of build, image or from",
    ]
    assert problems(BASE.replace("image: nginx:1.27", "image: nginx:1.27\n    build: { context: . }")) == [
        "6:5: services.web: a service needs exactly one of build, image or from (got build, image)",
    ]


def test_healthcheck_needs_exactly_one_probe() -> None:
    assert problems(BASE.replace("{ path: / }", "{ path: /, command: [curl, localhost] }")) == [
        "8:18: services.web.healthcheck: a healthcheck needs exactly one of path (HTTP) or command",
    ]


# --- YAML itself -----------------------------------------------------------------------


def test_duplicate_keys_name_the_first_definition() -> None:
    assert problems(BASE.replace("    port: 80\n", "    port: 80\n    port: 81\n")) == [
        "8:5: services.web.port: duplicate key 'port' (first defined at line 7)",
    ]


def test_invalid_yaml_syntax_points_at_the_problem() -> None:
    assert problems("""\
        version: 1
        project: { name: shop
        """) == [
        "3:1: invalid YAML: expected ',' or '}', but got '<stream end>' (while parsing a flow mapping)",
    ]
    assert problems("""\
        version: 1
        project:
          name: a
           bad: indent
        """) == ["4:7: invalid YAML: mapping values are not allowed here"]


@pytest.mark.parametrize(("text", "what"), [
    ("- a\n- b\n", "a list"),
    ("just text\n", "a string"),
    ("42\n", "a integer"),
])
def test_top_level_must_be_a_mapping(text: str, what: str) -> None:
    assert problems(text) == [f"1:1: expected a mapping of settings at the top, but the file is {what}"]


@pytest.mark.parametrize(("text", "line"), [
    ("", 1), ("\n\n", 1), ("# only a comment\n", 1), ("---\n", 2),
])
def test_empty_file(text: str, line: int) -> None:
    assert problems(text) == [f"{line}:1: expected a mapping of settings at the top, but the file is empty"]


def test_keys_must_be_strings() -> None:
    assert problems(BASE + "1: one\n") == ["15:1: keys must be strings, got 1"]


def test_control_character_is_reported_where_it_is() -> None:
    # Regression: a NUL byte used to escape as a raw yaml ReaderError.
    assert problems("version: 1\nproject: { name: \"a\x00\" }\n") == [
        "2:20: invalid YAML: unacceptable character #x0000: special characters are not allowed",
    ]


def test_recursive_anchor_is_an_error_not_a_crash() -> None:
    # Regression: `&a [*a]` used to recurse until RecursionError.
    assert problems("version: 1\nx: &loop [*loop]\n") == [
        "2:4: invalid YAML: an alias refers to a node that contains it (recursive anchor)",
    ]


@pytest.mark.parametrize(("value", "tag"), [
    ("!!int x", "int"), ("!!float x", "float"), ("!!bool maybe", "bool"),
    ("!!timestamp nope", "timestamp"),
])
def test_bad_explicit_tag_is_a_yaml_error(value: str, tag: str) -> None:
    # Regression: these used to escape as ValueError/KeyError/AttributeError.
    word = value.split()[1]
    assert problems(f"version: 1\nx: {value}\n") == [
        f"2:4: invalid YAML: cannot read '{word}' as tag:yaml.org,2002:{tag}",
    ]


def test_yaml_12_booleans_keep_on_yes_no_as_strings() -> None:
    loaded = load(BASE.replace(
        "    on: [app]\n",
        "    on: [app]\n    env: { A: on, B: off, C: yes, D: no, E: y, F: true, G: False, H: 2024-01-01 }\n",
    ))
    env = loaded.environment("prod").services["web"].env
    assert env == {"A": "on", "B": "off", "C": "yes", "D": "no", "E": "y",
                   "F": True, "G": False, "H": "2024-01-01"}
    assert loaded.raw["services"]["web"]["on"] == ["app"]  # the key `on` is the string "on"


def test_environments_may_be_named_on_and_no() -> None:
    loaded = load_config(DATA / "valid" / "anchors-and-extensions.yml")
    assert list(loaded.environments) == ["on", "no"]


# --- x- extensions ---------------------------------------------------------------------


def _keys(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield path + (key,)
            yield from _keys(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _keys(item, path + (index,))


def test_x_keys_are_ignored_at_every_level_including_merged_anchors() -> None:
    loaded = load_config(DATA / "valid" / "anchors-and-extensions.yml")
    leftover = [p for p in _keys(loaded.raw) if str(p[-1]).startswith("x-")]
    assert leftover == []
    api = loaded.environment("on").services["api"]
    # The anchor merged in through `<<: *svc` (with its own x-note dropped):
    assert api.port == 8080 and api.on == ["app"]
    assert api.healthcheck.path == "/up" and api.healthcheck.interval == "2s"
    assert api.env == {"FEATURE": "on", "LEGACY": "no", "BETA": "yes", "DEBUG": False}
    assert loaded.environment("on").volumes == {}  # `x-unused` (invalid if read) is ignored


def test_x_keys_only_by_prefix() -> None:
    # `xx-` or `X-` are not extensions: they are unknown settings.
    assert problems(BASE.replace("  name: shop", "  name: shop\n  X-note: 1")) == [
        "4:3: project.X-note: unknown setting 'X-note'; expected one of: name, registry",
    ]


# --- references ------------------------------------------------------------------------


def test_malformed_references_are_errors_where_written() -> None:
    text = BASE.replace("    on: [app]\n", (
        "    on: [app]\n"
        "    env: { A: '${secrt:X}', B: 'x ${env:HOME', OK1: '$${literal}', OK2: 'a ${env:HOME} b' }\n"
    ))
    assert problems(text) == [
        "10:15: services.web.env.A: '${secrt:X}' is not a reference stagecraft understands: write "
        "${secret:NAME} (from the secrets provider) or ${env:NAME} (from the environment), "
        "or $${ for a literal '${'",
        "10:32: services.web.env.B: unclosed '${' (write $${ for a literal '${')",
    ]


LITERAL_SECRET = ("this setting holds a secret, so it must be a reference like ${secret:NAME} "
                  "or ${env:NAME}, not a literal value")


@pytest.mark.parametrize(("extra", "where"), [
    ("project:\n  name: shop\n  registry: { server: r.io, password: hunter2 }\n",
     "4:39: project.registry.password"),
    ("providers:\n  network: { kind: tailscale, auth_key: tskey-abc }\n",
     "3:41: providers.network.auth_key"),
    ("providers:\n  cloud: { kind: digitalocean, token: 'x${secret:A}', region: fra1 }\n",
     "3:39: providers.cloud.token"),
    ("migrations:\n  engine: raw\n  from: web\n  database_url: '${secret:A}${secret:B}'\n"
     "  pre_deploy: { path: sql }\n",
     "5:17: migrations.database_url"),
])
def test_secret_settings_refuse_literals(extra: str, where: str) -> None:
    text = BASE.replace("project:\n  name: shop\n", "") if extra.startswith("project") else BASE
    head, rest = text.split("\n", 1)
    assert problems(f"{head}\n{extra}{rest}") == [f"{where}: {LITERAL_SECRET}"]


@pytest.mark.usefixtures("stand_in_providers")
def test_secret_settings_take_secret_and_env_references() -> None:
    loaded = load(BASE + (
        "providers:\n"
        "  network: { kind: tailscale, auth_key: '${secret:TS_KEY}' }\n"
        "  cloud: { kind: digitalocean, token: '${env:DO_TOKEN}', region: fra1 }\n"
    ))
    providers = loaded.environment("prod").providers
    assert providers.network.auth_key == "${secret:TS_KEY}"
    assert providers.cloud.token == "${env:DO_TOKEN}"


# --- cross-field checks ----------------------------------------------------------------


def test_role_on_no_host() -> None:
    assert problems(BASE.replace("on: [app]", "on: [app, worker]")) == [
        "9:15: services.web.on[1]: no host of environment 'prod' has role 'worker' "
        "(roles there: app, edge)",
    ]


def test_two_spellings_of_one_role() -> None:
    # Roles become Ansible groups with '-' turned into '_': they would merge silently.
    text = BASE.replace("      - { name: h1, roles: [edge, app] }",
                        "      - { name: h1, roles: [edge, app, front-end] }\n"
                        "      - { name: h2, roles: [app, front_end] }")
    assert problems(text) == [
        "15:34: environments.prod.hosts[1].roles[1]: role 'front_end' and role 'front-end' "
        "differ only in '-' and '_'; pick one spelling",
    ]


def test_from_an_unknown_service() -> None:
    assert problems(BASE.replace("    image: nginx:1.27\n", "    from: db\n")) == [
        "6:11: services.web.from: 'db' is not a service (services: web)",
    ]


def test_from_a_service_that_itself_uses_from() -> None:
    text = BASE.replace("services:\n", (
        "services:\n"
        "  base:\n    from: web\n    on: [app]\n"
        "  w2:\n    from: base\n    on: [app]\n"
    ))
    assert problems(text) == [
        "9:11: services.w2.from: 'base' has no image of its own; point from: at a service "
        "with build or image",
    ]


def test_from_itself() -> None:
    text = BASE.replace("services:\n", "services:\n  loop:\n    from: loop\n    on: [app]\n")
    assert problems(text) == [
        "6:11: services.loop.from: 'loop' has no image of its own; point from: at a service "
        "with build or image",
    ]


def test_routed_service_needs_port_and_healthcheck() -> None:
    text = BASE.replace("    port: 80\n", "").replace("    healthcheck: { path: / }\n", "")
    assert problems(text) == [
        "8:13: services.web.routes: a routed service needs a port (the port it listens on)",
        "8:13: services.web.routes: a routed service needs a healthcheck, so rollouts only send "
        "traffic to ready containers",
    ]


def test_unknown_placeholder_in_route_host() -> None:
    assert problems(BASE.replace("host: example.com", "host: '{foo}.example.com'")) == [
        "10:22: services.web.routes[0].host: unknown placeholder '{foo}' in route host; "
        "use {env} or {domain}",
    ]


def test_domain_placeholder_without_domain() -> None:
    assert problems(BASE.replace("host: example.com", "host: 'api.{domain}'")) == [
        "10:22: services.web.routes[0].host: route host uses {domain} but environment 'prod' "
        "sets no domain",
    ]


def test_placeholders_are_filled_per_environment() -> None:
    text = BASE.replace("host: example.com", "host: '{env}.{domain}'").replace(
        "  prod:\n", "  prod:\n    domain: example.com\n")
    env = load(text).environment("prod")
    assert env.route_host(env.services["web"].routes[0]) == "prod.example.com"


def test_invalid_route_host() -> None:
    assert problems(BASE.replace("host: example.com", "host: bad_host.com")) == [
        "10:22: services.web.routes[0].host: 'bad_host.com' is not a valid host name: label "
        "'bad_host' must be 1-63 of a-z, 0-9 and '-', not starting or ending with '-'",
    ]


def test_invalid_environment_domain() -> None:
    assert problems(BASE.replace("  prod:\n", "  prod:\n    domain: bad_domain\n")) == [
        "13:13: environments.prod.domain: 'bad_domain' is not a valid host name: label "
        "'bad_domain' must be 1-63 of a-z, 0-9 and '-', not starting or ending with '-'",
    ]


def test_duplicate_route_across_services() -> None:
    text = BASE.replace("services:\n", (
        "services:\n"
        "  api:\n    image: api:1\n    port: 81\n    healthcheck: { path: / }\n"
        "    on: [app]\n    routes: [{ host: example.com }, { host: example.com, path: /api }]\n"
    ))
    # The same host on another path is fine; the same host and path is not.
    assert problems(text) == [
        "16:22: services.web.routes[0].host: route example.com/ is already taken by service 'api'",
    ]


def test_routes_without_an_edge_host() -> None:
    assert problems(BASE.replace("roles: [edge, app]", "roles: [app]")) == [
        "14:7: environments.prod.hosts: services have routes but no host of environment 'prod' "
        "has role 'edge' to serve them",
    ]


def test_undefined_volume_in_a_service() -> None:
    text = BASE.replace("    on: [app]\n", "    on: [app]\n    volumes: ['data:/var/lib', '/etc/ssl:/ssl:ro']\n")
    assert problems(text) == [
        "10:15: services.web.volumes[0]: volume 'data' is not defined under volumes: "
        "(defined: none defined)",
    ]


def test_undefined_volume_on_a_host_lists_the_defined_ones() -> None:
    text = BASE.replace("roles: [edge, app] }", "roles: [edge, app], volumes: [data] }")
    text += "volumes:\n  pgdata: { size_gb: 1 }\n"
    assert problems(text) == [
        "14:51: environments.prod.hosts[0].volumes[0]: volume 'data' is not defined under "
        "volumes: (defined: pgdata)",
    ]


def test_bad_mount_syntax() -> None:
    text = BASE.replace("    on: [app]\n", "    on: [app]\n    volumes: ['nonsense', 'a:relative']\n")
    assert problems(text) == [
        "10:15: services.web.volumes[0]: 'nonsense' is not a mount: write 'volume:/path' or "
        "'/host/path:/path', with an optional ':ro'",
        "10:27: services.web.volumes[1]: 'a:relative' is not a mount: write 'volume:/path' or "
        "'/host/path:/path', with an optional ':ro'",
    ]


def test_duplicate_host_names() -> None:
    text = BASE.replace("      - { name: h1, roles: [edge, app] }",
                        "      - { name: h1, roles: [edge, app] }\n      - { name: h1, roles: [app] }")
    assert problems(text) == [
        "15:17: environments.prod.hosts[1].name: host name 'h1' is used twice in environment "
        "'prod'; host names must be unique",
    ]


def test_stateful_service_with_replicas() -> None:
    text = BASE.replace("    on: [app]\n", "    on: [app]\n    stateful: true\n    replicas: 2\n")
    assert problems(text) == [
        "11:15: services.web.replicas: a stateful service runs one container per host; "
        "set replicas: 1",
    ]


def _with_migrations(block: str) -> str:
    return BASE.replace("environments:", f"migrations:\n{block}environments:")


def test_migrations_from_unknown_service_unknown_host_and_no_phase() -> None:
    text = _with_migrations(
        "  engine: drizzle\n  from: api\n  database_url: ${secret:DB}\n  host: nope\n")
    assert problems(text) == [
        "12:3: migrations: set pre_deploy, post_deploy, or both",
        "13:9: migrations.from: 'api' is not a service (services: web)",
        "15:9: migrations.host: 'nope' is not a host of environment 'prod'",
    ]


def test_migrations_engine_needs_its_kind_of_phase() -> None:
    text = _with_migrations(
        "  engine: command\n  from: web\n  database_url: ${secret:DB}\n"
        "  pre_deploy: { path: x }\n  post_deploy: { command: [migrate] }\n")
    assert problems(text) == ["15:15: migrations.pre_deploy: engine 'command' needs command: [...]"]
    text = _with_migrations(
        "  engine: prisma\n  from: web\n  database_url: ${secret:DB}\n"
        "  pre_deploy: { command: [migrate] }\n")
    assert problems(text) == [
        "15:15: migrations.pre_deploy: engine 'prisma' needs path: (the migrations directory)",
    ]


@pytest.mark.usefixtures("stand_in_providers")
def test_cloud_ssh_hosts_need_an_address_and_others_must_not_have_one() -> None:
    assert problems(BASE + "providers:\n  cloud: { kind: ssh }\n") == [
        "14:9: environments.prod.hosts[0]: host 'h1' needs an address: cloud 'ssh' connects "
        "to hosts that already exist",
    ]
    assert problems(BASE.replace("roles: [edge, app] }", "roles: [edge, app], address: 10.0.0.1 }")) == [
        "14:50: environments.prod.hosts[0].address: address is only for cloud 'ssh'; "
        "cloud 'local' makes its hosts and knows how to reach them",
    ]


@pytest.mark.usefixtures("stand_in_providers")
def test_a_bastion_is_another_host_reached_directly() -> None:
    hosts = ("      - { name: h1, roles: [edge, app], address: 10.0.0.1 }\n"
             "      - { name: h2, roles: [app], address: 10.0.0.2, proxy_jump: h1 }\n"
             "      - { name: h3, roles: [app], address: 10.0.0.3, proxy_jump: h2 }\n"
             "      - { name: h4, roles: [app], address: 10.0.0.4, proxy_jump: h4 }\n")
    text = BASE.replace("      - { name: h1, roles: [edge, app] }\n", hosts)
    text += "providers:\n  cloud: { kind: ssh }\n"
    assert [p.split(": ", 1)[1] for p in problems(text)] == [
        "environments.prod.hosts[2].proxy_jump: bastion 'h2' is itself reached through a "
        "bastion; stagecraft takes one hop: point proxy_jump at a host reached directly",
        "environments.prod.hosts[3].proxy_jump: host 'h4' cannot be its own bastion",
    ]


@pytest.mark.usefixtures("stand_in_providers")
def test_volumes_on_ssh_hosts_name_their_device() -> None:
    text = BASE.replace("roles: [edge, app] }", "roles: [edge, app], address: 10.0.0.1, "
                        "volumes: [data] }")
    text += "volumes:\n  data: { size_gb: 1 }\nproviders:\n  cloud: { kind: ssh }\n"
    assert [p.split(": ", 1)[1] for p in problems(text)] == [
        "volumes.data.device: volume 'data' on host 'h1' needs a device: cloud 'ssh' attaches "
        "nothing, so name the disk the server already has (a stable path such as "
        "/dev/disk/by-id/...)"]
    load(text.replace("{ size_gb: 1 }", "{ size_gb: 1, device: /dev/vdb }"))


# --- environments and overrides --------------------------------------------------------


def test_override_of_an_undefined_service() -> None:
    text = BASE.replace("  prod:\n", "  prod:\n    services:\n      wbe: { replicas: 2 }\n")
    assert problems(text) == [
        "14:7: environments.prod.services.wbe: service 'wbe' is not defined at the top level, "
        "so there is nothing to override (services: web)",
    ]


def test_errors_inside_an_override_point_at_the_environment() -> None:
    text = BASE.replace("  prod:\n", (
        "  prod:\n"
        "    services:\n      web: { replicas: many, replicsa: 2 }\n"
        "    providers:\n      network: { kind: tailscale }\n"
        "    rollout: { batch: 0 }\n"
    ))
    assert problems(text) == [
        "14:24: environments.prod.services.web.replicas: expected an integer, got string 'many'",
        "14:30: environments.prod.services.web.replicsa: unknown setting 'replicsa'; "
        "did you mean 'replicas'?",
        "16:7: environments.prod.providers.network.auth_key: missing required setting 'auth_key'",
        "17:23: environments.prod.rollout.batch: expected a number >= 1, got 0",
    ]


def test_cross_field_problem_caused_by_an_override_points_at_the_override() -> None:
    text = BASE.replace("  prod:\n", "  prod:\n    services:\n      web: { on: [worker] }\n")
    assert problems(text) == [
        "14:19: environments.prod.services.web.on[0]: no host of environment 'prod' has role "
        "'worker' (roles there: app, edge)",
    ]


def test_environment_that_is_not_a_mapping() -> None:
    # Regression: a scalar environment used to crash the overlay with AttributeError.
    assert problems(BASE + "  stg: 3\n") == [
        "15:3: environments.stg.hosts: missing required setting 'hosts'",
        "15:8: environments.stg: expected a mapping (key: value), got integer 3",
    ]


@pytest.mark.usefixtures("stand_in_providers")
def test_overlay_rules() -> None:
    loaded = load_config(DATA / "valid" / "provider-overrides.yml")
    staging, local = loaded.environment("staging"), loaded.environment("local")

    # Mappings merge key by key: env keeps REGION from the top level.
    assert staging.services["api"].env == {"LOG_LEVEL": "debug", "REGION": "eu"}
    assert staging.services["api"].replicas == 1
    assert local.services["api"].replicas == 2
    # A provider of the same kind merges: region overridden, token and size kept.
    assert staging.providers.cloud == CloudDigitalOcean(
        kind="digitalocean", token="${secret:DO_TOKEN}", region="ams3", size="s-2vcpu-4gb")
    # A new kind replaces the provider whole (tailscale's auth_key and tags are gone).
    assert staging.providers.network == NetworkNone(kind="none")
    assert local.providers.cloud == CloudLocal(kind="local")
    assert local.providers.network == NetworkTailscale(
        kind="tailscale", auth_key="${secret:TS_KEY}", tags=["tag:a"])
    # Firewall, rollout and migrations merge too; unset fields keep their defaults.
    assert (staging.firewall.ssh, staging.firewall.public) == ("public", [80, 443])
    assert (staging.rollout.drain, staging.rollout.health_timeout) == ("1s", "60s")
    assert staging.migrations.pre_deploy.path == "sql"
    assert staging.migrations.post_deploy.path == "sql/post"
    assert local.migrations.post_deploy is None


def test_lists_are_replaced_not_appended() -> None:
    text = BASE.replace("on: [app]", "on: [app, edge]") + "firewall: { public: [80, 443] }\n"
    text = text.replace("  prod:\n", (
        "  prod:\n    services:\n      web: { on: [app] }\n    firewall: { public: [8443] }\n"))
    env = load(text).environment("prod")
    assert env.services["web"].on == ["app"]
    assert env.firewall.public == [8443]


@pytest.mark.usefixtures("stand_in_providers")
def test_position_of_resolved_values() -> None:
    loaded = load_config(DATA / "valid" / "provider-overrides.yml")
    replicas_staging = loaded.position_of("staging", ("services", "api", "replicas"))
    replicas_local = loaded.position_of("local", ("services", "api", "replicas"))
    assert (replicas_staging.line, replicas_staging.column) == (33, 24)
    assert (replicas_local.line, replicas_local.column) == (14, 15)
    assert loaded.position_of("local", ("services", "api", "stop_grace")) is None  # default


def test_same_mistake_in_every_environment_is_reported_once() -> None:
    text = BASE.replace("    image: nginx:1.27\n", "    from: nothing\n")
    text += "  stg:\n    hosts:\n      - { name: s1, roles: [edge, app] }\n"
    assert problems(text) == ["6:11: services.web.from: 'nothing' is not a service (services: web)"]


def test_environment_dependent_mistakes_are_reported_per_environment() -> None:
    text = BASE.replace("on: [app]", "on: [app, worker]")
    text += "  stg:\n    hosts:\n      - { name: s1, roles: [edge, app] }\n"
    assert problems(text) == [
        "9:15: services.web.on[1]: no host of environment 'prod' has role 'worker' (roles there: app, edge)",
        "9:15: services.web.on[1]: no host of environment 'stg' has role 'worker' (roles there: app, edge)",
    ]


# --- several problems at once ----------------------------------------------------------


def test_several_problems_in_one_error_sorted_by_position() -> None:
    text = """\
        version: 1
        project: { name: Shop }
        services:
          web:
            image: nginx
            on: [app, worker]
            port: [80]
        environments:
          prod:
            hosts: [{ name: h1, roles: [app], size: 1 }]
        """
    with pytest.raises(ConfigError) as caught:
        load_config_text(dedent(text), "shop.yml")
    error = caught.value
    assert error.exit_code == ExitCode.CONFIG == 3
    assert [fmt(i) for i in error.issues] == [
        "2:18: project.name: expected lowercase letters, digits and '-' (at most 63), "
        "not starting or ending with '-', got 'Shop'",
        "7:11: services.web.port: expected an integer, got list [80]",
        "10:45: environments.prod.hosts[0].size: expected a string, got integer 1",
    ]
    assert error.message == "shop.yml is invalid (3 problems):\n" + "\n".join(
        f"  shop.yml:{fmt(i)}" for i in error.issues)
    assert error.hint == "fix the file and run `stagecraft validate`"
    assert error.to_dict()["issues"][1] == {
        "file": "shop.yml", "line": 7, "column": 11, "path": "services.web.port",
        "message": "expected an integer, got list [80]",
    }


def test_cross_field_checks_run_even_when_the_top_level_is_invalid() -> None:
    # Regression: an invalid project name used to switch off every cross-field check.
    text = BASE.replace("name: shop", "name: Shop").replace("    image: nginx:1.27\n", "    from: x\n")
    assert problems(text) == [
        "3:9: project.name: expected lowercase letters, digits and '-' (at most 63), "
        "not starting or ending with '-', got 'Shop'",
        "6:11: services.web.from: 'x' is not a service (services: web)",
    ]


def test_single_problem_header_has_no_count() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text("", "empty.yml")
    assert caught.value.message == (
        "empty.yml is invalid:\n"
        "  empty.yml:1:1: expected a mapping of settings at the top, but the file is empty")


# --- data files ------------------------------------------------------------------------


@pytest.mark.usefixtures("stand_in_providers")
@pytest.mark.parametrize("path", sorted((DATA / "valid").glob("*.yml")), ids=lambda p: p.name)
def test_valid_files_load(path: Path) -> None:
    loaded = load_config(path)
    assert loaded.environments and loaded.config.services


@pytest.mark.usefixtures("stand_in_providers")
def test_the_shop_example_loads() -> None:
    loaded = load_config(EXAMPLE)
    assert list(loaded.environments) == ["local", "staging", "production"]
    prod = loaded.environment("production")
    assert [h.name for h in prod.hosts_for_service("api")] == ["app-1", "app-2"]
    assert loaded.environment("local").services["api"].replicas == 1
    assert prod.services["api"].replicas == 2


@pytest.mark.parametrize("path", sorted((DATA / "invalid").glob("*.yml")), ids=lambda p: p.name)
def test_invalid_files_report_exactly_their_expected_problems(path: Path) -> None:
    expected = [line.removeprefix("# expect: ") for line in path.read_text().splitlines()
                if line.startswith("# expect: ")]
    assert expected, f"{path.name} lists no expected problems"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [fmt(i) for i in caught.value.issues] == expected
    assert all(i.position.file == str(path) for i in caught.value.issues)


# --- files and environments ------------------------------------------------------------


def test_load_config_refuses_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "stagecraft.yml"
    path.write_bytes(b"version: 1\nproject: {name: \xff}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [fmt(i) for i in caught.value.issues] == ["1:1: not UTF-8 text (byte 27)"]


def test_load_config_of_an_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert caught.value.message == f"cannot read {tmp_path}: Is a directory"


def test_find_config_explicit_path_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        find_config(tmp_path / "nope.yml")
    assert caught.value.message == f"config file {tmp_path / 'nope.yml'} does not exist"
    assert caught.value.hint == ("pass the path of your stagecraft.yml with --config, "
                                 "or run `stagecraft init`")


def test_find_config_searches_parents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "stagecraft.yaml").write_text(BASE)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_config().resolve() == tmp_path / "stagecraft.yaml"
    (tmp_path / "a" / "stagecraft.yml").write_text(BASE)
    assert find_config().resolve() == tmp_path / "a" / "stagecraft.yml"


def test_find_config_without_any_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        find_config(start=tmp_path)
    assert caught.value.message == f"no stagecraft.yml in {tmp_path} or any parent directory"


@pytest.mark.usefixtures("stand_in_providers")
def test_choosing_an_environment() -> None:
    single = load(BASE)
    assert single.environment(None).name == "prod"  # the only one
    loaded = load_config(EXAMPLE)
    with pytest.raises(ConfigError) as caught:
        loaded.environment(None)
    assert caught.value.message == "no environment chosen"
    assert caught.value.hint == ("pass --env NAME (or set STAGECRAFT_ENV); "
                                 "environments: local, staging, production")
    with pytest.raises(ConfigError) as caught:
        loaded.environment("prod")
    assert caught.value.message == "environment 'prod' is not defined in stagecraft.yml"
    assert caught.value.hint == "did you mean 'production'? environments: local, staging, production"
    with pytest.raises(ConfigError) as caught:
        loaded.environment("qa")
    assert caught.value.hint == "environments: local, staging, production"


def test_an_empty_key_at_the_top_is_an_unknown_setting() -> None:
    """Found by the fuzz test: an empty key has an empty location in pydantic's error."""
    with pytest.raises(ConfigError) as caught:
        load("'': null\n" + BASE)
    assert "unknown setting ''" in str(caught.value)
