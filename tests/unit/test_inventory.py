"""The rendered Ansible inventory (CORE_INVENTORY): golden files, group naming,
connection variables, state files, the graph view and the `inventory` command.

Golden files live in tests/golden/inventory/. After an intended change, rewrite
them with ``STAGECRAFT_UPDATE_GOLDEN=1 pytest tests/unit/test_inventory.py`` and
review the diff.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from stagecraft.cli.main import main
from stagecraft.config import load_config, load_config_text
from stagecraft.errors import ConfigError, StateError
from stagecraft.providers.cloud.base import (
    FleetSpec,
    HostRecord,
    HostSpec,
    SshAccess,
    StateFiles,
    write_hosts_file,
)
from stagecraft.hosts.fleet import (
    ConnectionSettings,
    load_connection_settings,
    load_host_records,
    state_dir as state_dir_of,
)
from stagecraft.render.inventory import (
    inventory_graph,
    inventory_of,
    render_inventory,
    role_group,
    ssh_common_args,
)

# The example's staging and production use cloud digitalocean and network tailscale,
# and some tests cloud ssh: kinds with no provider yet, registered here by stand-ins.
pytestmark = pytest.mark.usefixtures("stand_in_providers_module")

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "shop" / "reference" / "stagecraft.yml"
GOLDEN = REPO / "tests" / "golden" / "inventory"


@pytest.fixture(scope="module")
def shop():
    return load_config(EXAMPLE)


def record(name: str, ssh_host: str | None, ssh_port: int | None, private_ip: str | None,
           *, provider: str = "digitalocean", user: str = "root") -> HostRecord:
    return HostRecord(name=name, roles=(), state="running", ssh_host=ssh_host,
                      ssh_port=ssh_port, ssh_user=user, private_ip=private_ip,
                      provider_id=f"id-{name}", provider=provider)


#: What `infra up` would have recorded for the example's environments.
RECORDS = {
    "production": {
        "edge-1": record("edge-1", "203.0.113.10", 22, "10.110.0.2"),
        "app-1": record("app-1", "203.0.113.11", 22, "10.110.0.3"),
        "app-2": record("app-2", "203.0.113.12", 22, "10.110.0.4"),
        "db-1": record("db-1", "203.0.113.13", 22, "10.110.0.5"),
    },
    "local": {
        "local-1": record("local-1", "127.0.0.1", 22417, "10.201.7.10", provider="local"),
    },
}


def connection(env: str) -> ConnectionSettings:
    state = Path("/srv/shop/.stagecraft") / env
    return ConnectionSettings(state / "id_ed25519", state / "known_hosts", "root")


def check_golden(name: str, data: dict) -> None:
    """Compare ``data`` with the golden file ``name`` (or rewrite it when asked)."""
    path = GOLDEN / name
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    if os.environ.get("STAGECRAFT_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    if not path.is_file():
        pytest.fail(f"golden file {path} is missing: run with STAGECRAFT_UPDATE_GOLDEN=1 "
                    "to write it, then review it")
    assert text == path.read_text(), (
        f"the rendered inventory differs from {path}; if the change is intended, rerun "
        "with STAGECRAFT_UPDATE_GOLDEN=1 and review the diff")


# ------------------------------------------------------------------------- golden


@pytest.mark.parametrize("env", ["production", "local"])
def test_inventory_before_the_hosts_exist_matches_its_golden_file(shop, env):
    check_golden(f"{env}.json", render_inventory(shop.environments[env], None, connection(env)))


@pytest.mark.parametrize("env", ["production", "local"])
def test_inventory_with_host_records_matches_its_golden_file(shop, env):
    rendered = render_inventory(shop.environments[env], RECORDS[env], connection(env))
    check_golden(f"{env}-hosts.json", rendered)


# ------------------------------------------------------------------ groups, vars


def test_groups_are_the_project_the_environment_and_each_role(shop):
    rendered = render_inventory(shop.environments["production"], None, ConnectionSettings())
    top = rendered["all"]["children"]
    assert list(top) == ["project_shop", "role_app", "role_db", "role_edge", "role_worker"]
    hosts = top["project_shop"]["children"]["env_production"]["hosts"]
    assert list(hosts) == ["edge-1", "app-1", "app-2", "db-1"]  # the config's order
    assert list(top["role_app"]["hosts"]) == ["app-1", "app-2"]
    assert list(top["role_edge"]["hosts"]) == ["edge-1"]
    # Host variables live once, under the environment group.
    assert top["role_app"]["hosts"]["app-1"] == {}


def test_host_facts_name_the_services_placed_on_each_host(shop):
    rendered = render_inventory(shop.environments["production"], None, ConnectionSettings())
    hosts = rendered["all"]["children"]["project_shop"]["children"]["env_production"]["hosts"]
    assert hosts["app-1"]["stagecraft_services"] == ["api", "web", "worker"]
    assert hosts["db-1"]["stagecraft_services"] == ["db"]
    assert hosts["db-1"]["stagecraft_volumes"] == ["pgdata"]
    assert hosts["edge-1"]["stagecraft_services"] == []
    assert hosts["app-1"]["stagecraft_roles"] == ["app", "worker"]


MINIMAL = """
version: 1
project: {{ name: acme }}
providers: {{ cloud: {{ kind: {cloud} }} }}
services:
  web: {{ image: nginx, on: [{role}] }}
environments:
  {env}:
    hosts:
{hosts}
"""


def minimal(hosts: str, *, cloud: str = "local", role: str = "app", env: str = "prod"):
    text = MINIMAL.format(hosts=hosts, cloud=cloud, role=role, env=env)
    return load_config_text(text).environments[env]


def test_dashes_in_names_become_underscores_in_group_names():
    env = minimal("      - { name: web-1, roles: [front-end] }", role="front-end",
                  env="pre-prod")
    rendered = render_inventory(env, None, ConnectionSettings())
    top = rendered["all"]["children"]
    assert list(top) == ["project_acme", "role_front_end"]
    assert list(top["project_acme"]["children"]) == ["env_pre_prod"]
    hosts = top["project_acme"]["children"]["env_pre_prod"]["hosts"]
    # Variables keep the names as written.
    assert hosts["web-1"]["stagecraft_roles"] == ["front-end"]
    assert hosts["web-1"]["stagecraft_environment"] == "pre-prod"


def test_a_role_named_like_a_reserved_group_gets_its_own_group():
    env = minimal("      - { name: web-1, roles: [all, ungrouped] }", role="all")
    top = render_inventory(env, None, ConnectionSettings())["all"]["children"]
    assert list(top) == ["project_acme", "role_all", "role_ungrouped"]


def test_two_roles_that_become_the_same_group_are_rejected_by_validate():
    with pytest.raises(ConfigError, match="role 'front_end' and role 'front-end' differ "
                                          "only in '-' and '_'"):
        minimal("      - { name: web-1, roles: [front-end, front_end] }", role="front-end")


def test_the_renderer_refuses_merged_role_groups_even_without_validation():
    # A caller that builds an environment by hand skips the loader's checks; the
    # renderer still refuses to merge two roles into one group.
    env = minimal("      - { name: web-1, roles: [front-end] }", role="front-end")
    host = env.hosts[0].model_copy(update={"roles": ["front-end", "front_end"]})
    env = env.model_copy(update={"hosts": [host]})
    with pytest.raises(ConfigError, match="roles 'front-end' and 'front_end' both become "
                                          "the Ansible group role_front_end"):
        render_inventory(env, None, ConnectionSettings())


def test_role_group_names():
    assert role_group("edge") == "role_edge"
    assert role_group("a-b_c") == "role_a_b_c"


# ---------------------------------------------------------------- connection vars


def host_vars(env, records=None, conn: ConnectionSettings | None = None) -> dict:
    rendered = render_inventory(env, records, conn or ConnectionSettings())
    group = rendered["all"]["children"][f"project_{env.project.name}"]["children"]
    return next(iter(group.values()))["hosts"]


def test_a_host_without_record_or_address_has_no_connection_variables():
    env = minimal("      - { name: web-1, roles: [app] }")
    web = host_vars(env, None, connection("prod"))["web-1"]
    assert not {k for k in web if k.startswith("ansible_") and k != "ansible_host_key_checking"}
    assert "stagecraft_private_ip" not in web
    assert web["ansible_host_key_checking"] is True


def test_a_recorded_host_is_reached_at_its_recorded_address_with_pinned_keys():
    env = minimal("      - { name: web-1, roles: [app] }")
    records = {"web-1": record("web-1", "127.0.0.1", 22001, "10.200.0.10", user="root")}
    web = host_vars(env, records, connection("prod"))["web-1"]
    assert web["ansible_host"] == "127.0.0.1"
    assert web["ansible_port"] == 22001
    assert web["ansible_user"] == "root"
    assert web["ansible_ssh_private_key_file"] == "/srv/shop/.stagecraft/prod/id_ed25519"
    assert web["ansible_ssh_common_args"] == (
        "-o UserKnownHostsFile=/srv/shop/.stagecraft/prod/known_hosts "
        "-o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes")
    assert web["ansible_host_key_checking"] is True
    assert web["stagecraft_private_ip"] == "10.200.0.10"


def test_an_ssh_host_is_reached_at_the_address_and_user_of_the_config():
    env = minimal("      - { name: web-1, roles: [app], address: 192.0.2.7, user: deploy, "
                  "port: 2222 }", cloud="ssh")
    web = host_vars(env, None, ConnectionSettings(user="root"))["web-1"]
    assert (web["ansible_host"], web["ansible_port"], web["ansible_user"]) == (
        "192.0.2.7", 2222, "deploy")
    # No key, no pinned file: ssh's own known_hosts, still checked.
    assert "ansible_ssh_private_key_file" not in web
    assert web["ansible_ssh_common_args"] == "-o StrictHostKeyChecking=yes"


def test_user_comes_from_the_record_then_the_config_then_the_connection():
    env = minimal("      - { name: a, roles: [app], address: 192.0.2.1, user: deploy }\n"
                  "      - { name: b, roles: [app], address: 192.0.2.2 }\n"
                  "      - { name: c, roles: [app], address: 192.0.2.3 }", cloud="ssh")
    # The record says whom the provider connects as now (after bootstrap: the deploy
    # user), so it outranks the config's adoption user.
    records = {name: record(name, None, None, None, user="admin", provider="ssh")
               for name in ("b",)}
    hosts = host_vars(env, records, ConnectionSettings(user="fallback"))
    assert [hosts[n]["ansible_user"] for n in ("a", "b", "c")] == ["deploy", "admin", "fallback"]
    # A record without an address leaves the config's in place.
    assert [hosts[n]["ansible_host"] for n in ("a", "b", "c")] == [
        "192.0.2.1", "192.0.2.2", "192.0.2.3"]
    assert "ansible_port" not in hosts["c"]


def test_records_of_hosts_the_environment_does_not_list_are_ignored():
    env = minimal("      - { name: web-1, roles: [app] }")
    records = {"old-1": record("old-1", "192.0.2.1", 22, "10.0.0.9")}
    assert list(host_vars(env, records)) == ["web-1"]


def test_paths_with_spaces_are_quoted_for_ssh():
    conn = ConnectionSettings(Path("/my project/key"), Path("/my project/known_hosts"))
    assert ssh_common_args(conn) == (
        "-o 'UserKnownHostsFile=/my project/known_hosts' -o GlobalKnownHostsFile=/dev/null "
        "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes")


def test_rendering_is_deterministic_and_holds_no_secret(shop):
    env = shop.environments["production"]
    first = json.dumps(render_inventory(env, RECORDS["production"], connection("production")))
    again = json.dumps(render_inventory(env, RECORDS["production"], connection("production")))
    assert first == again
    assert "secret" not in first and "${" not in first
    assert "registry" not in first and "DATABASE_URL" not in first


# -------------------------------------------------------------------- state files


def write_state(project: Path, env: str, records: list[HostRecord], provider: str) -> StateFiles:
    """hosts.json, known_hosts and a key pair as a cloud provider writes them."""
    files = StateFiles(project / ".stagecraft" / env)
    spec = FleetSpec("shop", env, tuple(HostSpec(r.name) for r in records))
    write_hosts_file(files, provider=provider, spec=spec, records=records,
                     ssh=SshAccess("root", files.private_key, files.known_hosts))
    files.known_hosts.write_text("[127.0.0.1]:22417 ssh-ed25519 AAAAC3Nza...\n")
    files.private_key.write_text("not a real key\n")
    return files


def test_host_records_and_connection_come_from_hosts_json(tmp_path):
    records = list(RECORDS["local"].values())
    files = write_state(tmp_path, "local", records, "local")
    assert load_host_records(files.state_dir) == {"local-1": RECORDS["local"]["local-1"]}
    # hosts.json holds paths relative to the state dir; they come back whole.
    assert load_connection_settings(files.state_dir) == ConnectionSettings(
        files.private_key, files.known_hosts, "root")


def test_without_hosts_json_there_are_no_records_and_only_existing_files(tmp_path):
    files = StateFiles(tmp_path / ".stagecraft" / "prod")
    assert load_host_records(files.state_dir) == {}
    assert load_connection_settings(files.state_dir) == ConnectionSettings()
    files.state_dir.mkdir(parents=True)
    files.known_hosts.write_text("")
    assert load_connection_settings(files.state_dir) == ConnectionSettings(
        known_hosts=files.known_hosts)


def test_a_corrupt_hosts_json_is_a_state_error(tmp_path):
    files = StateFiles(tmp_path)
    files.hosts.write_text("{")
    with pytest.raises(StateError, match="not valid JSON"):
        load_host_records(tmp_path)


def shop_project(tmp_path: Path) -> Path:
    project = tmp_path / "shop"
    project.mkdir()
    (project / "stagecraft.yml").write_text(EXAMPLE.read_text())
    return project


def test_inventory_of_reads_the_state_of_the_chosen_environment(tmp_path):
    project = shop_project(tmp_path)
    files = write_state(project, "local", list(RECORDS["local"].values()), "local")
    loaded = load_config(project / "stagecraft.yml")
    assert state_dir_of(loaded.project_dir, "local") == files.state_dir.resolve()
    expected = render_inventory(loaded.environments["local"], RECORDS["local"],
                                ConnectionSettings(files.private_key.resolve(),
                                                   files.known_hosts.resolve(), "root"))
    assert inventory_of(loaded, "local") == expected


def test_inventory_of_leaves_out_records_of_another_cloud(tmp_path):
    # The local cloud made hosts.json; the environment now says digitalocean.
    project = shop_project(tmp_path)
    made_locally = [replace(r, provider="local") for r in RECORDS["production"].values()]
    write_state(project, "production", made_locally, "local")
    loaded = load_config(project / "stagecraft.yml")
    hosts = inventory_of(loaded, "production")["all"]["children"]["project_shop"][
        "children"]["env_production"]["hosts"]
    assert all("ansible_host" not in v for v in hosts.values())


# --------------------------------------------------------------------------- graph


def test_graph_shows_groups_then_hosts_like_ansible_inventory(shop):
    env = minimal("      - { name: web-1, roles: [app, edge] }\n"
                  "      - { name: web-2, roles: [app] }")
    assert inventory_graph(render_inventory(env, None, ConnectionSettings())) == (
        "@all:\n"
        "  |--@ungrouped:\n"
        "  |--@project_acme:\n"
        "  |  |--@env_prod:\n"
        "  |  |  |--web-1\n"
        "  |  |  |--web-2\n"
        "  |--@role_app:\n"
        "  |  |--web-1\n"
        "  |  |--web-2\n"
        "  |--@role_edge:\n"
        "  |  |--web-1"
    )


# ------------------------------------------------------------------------- command


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_command_prints_the_inventory_as_sorted_json(tmp_path, capsys, monkeypatch):
    project = shop_project(tmp_path)
    monkeypatch.chdir(project)
    code, out, err = run_cli(["inventory", "--env", "production"], capsys)
    assert (code, err) == (0, "")
    loaded = load_config(project / "stagecraft.yml")
    assert json.loads(out) == inventory_of(loaded, "production")
    assert out == json.dumps(json.loads(out), indent=2, sort_keys=True) + "\n"


def test_command_prints_the_graph(tmp_path, capsys, monkeypatch):
    project = shop_project(tmp_path)
    monkeypatch.chdir(project)
    code, out, _ = run_cli(["inventory", "-e", "local", "--graph"], capsys)
    assert code == 0
    assert out == inventory_graph(inventory_of(load_config(project / "stagecraft.yml"),
                                               "local")) + "\n"
    code, out, _ = run_cli(["inventory", "-e", "local", "--graph", "--output", "json"], capsys)
    assert json.loads(out)["graph"].startswith("@all:\n  |--@ungrouped:\n  |--@project_shop:")


def test_command_without_an_environment_names_the_choices(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(shop_project(tmp_path))
    code, out, err = run_cli(["inventory"], capsys)
    assert (code, out) == (3, "")
    assert err == ("error: no environment chosen\n"
                   "hint: pass --env NAME (or set STAGECRAFT_ENV); environments: local, "
                   "staging, production\n")


def test_command_reports_a_corrupt_hosts_json_as_a_state_error(tmp_path, capsys, monkeypatch):
    project = shop_project(tmp_path)
    state = project / ".stagecraft" / "local"
    state.mkdir(parents=True)
    (state / "hosts.json").write_text("[")
    monkeypatch.chdir(project)
    code, _, err = run_cli(["inventory", "-e", "local"], capsys)
    assert code == 4
    assert err.startswith(f"error: {state.resolve() / 'hosts.json'} is not valid JSON")
