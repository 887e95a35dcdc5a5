"""The stagecraft.platform.stagecraft inventory plugin, run by the real ansible-inventory.

No Docker needed. Each test builds a project in a temporary directory (the example
app's stagecraft.yml, an inventory config in inventories/, and for some the state
files a cloud provider writes), then runs ansible-inventory and `stagecraft
inventory` as subprocesses from the venv and compares what they print.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stagecraft.providers.cloud.base import (
    FleetSpec,
    HostRecord,
    HostSpec,
    SshAccess,
    StateFiles,
    write_hosts_file,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "shop" / "reference" / "stagecraft.yml"
BIN = Path(sys.executable).parent
# The example's production uses cloud digitalocean and network tailscale, which have
# no provider yet: the stand-ins register them for the subprocesses (PYTHONPATH).
STAND_INS = REPO / "tests" / "fixtures" / "stand_in_providers"
PLUGIN = "stagecraft.platform.stagecraft"


def ansible_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of every subprocess: this venv first on PATH, the repo's
    collections, no ansible.cfg of the user's, failures that are failures."""
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\n")
    env = dict(os.environ)
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
        "ANSIBLE_CONFIG": str(cfg),
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
        "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true",
        "ANSIBLE_NOCOLOR": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(STAND_INS), env.get("PYTHONPATH")) if p),
    })
    env.update(extra)
    return env


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def ansible_inventory(project: Path, tmp_path: Path, *args: str,
                      **extra: str) -> subprocess.CompletedProcess[str]:
    return run([str(BIN / "ansible-inventory"), *args], project, ansible_env(tmp_path, **extra))


def stagecraft(project: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([str(BIN / "stagecraft"), *args], project, ansible_env(tmp_path))


def make_project(tmp_path: Path, env: str, *, inventory: str | None = None,
                 text: str | None = None) -> Path:
    """A project with the example's stagecraft.yml and inventories/<env>.stagecraft.yml."""
    project = tmp_path / "project"
    (project / "inventories").mkdir(parents=True)
    (project / "stagecraft.yml").write_text(text if text is not None else EXAMPLE.read_text())
    (project / "inventories" / f"{env}.stagecraft.yml").write_text(
        inventory if inventory is not None
        else f"plugin: {PLUGIN}\nconfig: ../stagecraft.yml\nenvironment: {env}\n")
    return project


def write_local_state(project: Path) -> StateFiles:
    """What `infra up` of the local cloud leaves in .stagecraft/local/."""
    files = StateFiles(project / ".stagecraft" / "local")
    record = HostRecord(name="local-1", roles=("edge", "app", "worker", "db"), state="running",
                        ssh_host="127.0.0.1", ssh_port=22417, ssh_user="root",
                        private_ip="10.201.7.10", provider_id="0123456789ab", provider="local")
    write_hosts_file(files, provider="local", spec=FleetSpec("shop", "local", (HostSpec(
        "local-1", record.roles),)), records=[record],
        ssh=SshAccess("root", files.private_key, files.known_hosts))
    files.known_hosts.write_text(
        "[127.0.0.1]:22417 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH0000000000000000000000000000\n")
    files.private_key.write_text("not a real key\n")
    files.private_key.chmod(0o600)
    return files


def unwrap(value: Any) -> Any:
    """ansible-inventory --list marks values from inventory plugins as unsafe
    ({"__ansible_unsafe": value}); a static inventory file's are plain."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def listed(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    return unwrap(json.loads(proc.stdout))


def plugin_group_vars(project: Path, environment: str) -> dict[str, Any]:
    """What the plugin adds to `all` beyond stagecraft's inventory (the path of
    stagecraft.yml, the root, and once hosts exist the bootstrap variables)."""
    from stagecraft.deploy.standalone import inventory_variables

    group, hosts = inventory_variables(project / "stagecraft.yml", environment, None)
    assert hosts == {}  # no release named: no per-host files
    return json.loads(json.dumps(group))


def shape_of_list(listing: dict[str, Any], group_vars: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """hostvars, each group's direct hosts and children, from ansible-inventory --list.
    ``group_vars`` (the plugin's variables of all) must reach every host; they are left
    out of the shape."""
    groups = {name: group for name, group in listing.items() if name != "_meta"}
    hostvars = listing["_meta"]["hostvars"]
    if group_vars is not None:
        for host, variables in hostvars.items():
            for key, value in group_vars.items():
                assert variables.get(key) == value, (host, key)
        hostvars = {host: {k: v for k, v in variables.items() if k not in group_vars}
                    for host, variables in hostvars.items()}
    return {
        "hostvars": hostvars,
        "hosts": {name: sorted(g.get("hosts", [])) for name, g in groups.items()
                  if g.get("hosts")},
        "children": {name: sorted(g.get("children", [])) for name, g in groups.items()
                     if g.get("children") and name != "all"},
    }


def shape_of_rendered(inventory: dict[str, Any]) -> dict[str, Any]:
    """The same shape from the inventory-file dict `stagecraft inventory` prints."""
    hostvars: dict[str, dict] = {}
    hosts: dict[str, list[str]] = {}
    children: dict[str, list[str]] = {}

    def walk(name: str, group: dict[str, Any]) -> None:
        for host, variables in (group.get("hosts") or {}).items():
            hostvars.setdefault(host, {}).update(variables or {})
            hosts.setdefault(name, []).append(host)
        for child, sub in (group.get("children") or {}).items():
            if name != "all":
                children.setdefault(name, []).append(child)
            walk(child, sub or {})

    walk("all", inventory["all"])
    return {"hostvars": hostvars, "hosts": {k: sorted(v) for k, v in hosts.items()},
            "children": {k: sorted(v) for k, v in children.items()}}


def cli_inventory(project: Path, tmp_path: Path, env: str) -> dict[str, Any]:
    proc = stagecraft(project, tmp_path, "inventory", "--env", env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# ---------------------------------------------------------------------------- list


@pytest.mark.parametrize("with_state", [False, True], ids=["before-infra-up", "with-hosts-json"])
def test_plugin_lists_what_the_cli_renders(tmp_path, with_state):
    project = make_project(tmp_path, "local")
    if with_state:
        write_local_state(project)
    plugin = listed(ansible_inventory(project, tmp_path, "-i",
                                      "inventories/local.stagecraft.yml", "--list"))
    rendered = cli_inventory(project, tmp_path, "local")
    group_vars = plugin_group_vars(project, "local")
    assert shape_of_list(plugin, group_vars) == shape_of_rendered(rendered)
    assert group_vars["stagecraft_config"] == str((project / "stagecraft.yml").resolve())
    if with_state:  # hosts exist: a bootstrap needs no -e
        assert group_vars["bootstrap_project"] == "shop"
        assert group_vars["bootstrap_environment"] == "local"
    else:
        assert "bootstrap_project" not in group_vars

    # The CLI's output, read by Ansible as a static inventory file (as a run
    # bundle hands it over), lists what the plugin lists but the plugin's own
    # variables of all.
    static = tmp_path / "cli-inventory.json"
    static.write_text(json.dumps(rendered))
    assert shape_of_list(listed(ansible_inventory(project, tmp_path, "-i", str(static),
                                                  "--list"))) == \
        shape_of_list(plugin, group_vars)

    local_1 = plugin["_meta"]["hostvars"]["local-1"]
    state = (project / ".stagecraft" / "local").resolve()
    if with_state:
        assert local_1["ansible_host"] == "127.0.0.1"
        assert local_1["ansible_port"] == 22417
        assert local_1["ansible_ssh_private_key_file"] == str(state / "id_ed25519")
        assert f"-o UserKnownHostsFile={state / 'known_hosts'}" in local_1[
            "ansible_ssh_common_args"]
        assert "-o StrictHostKeyChecking=yes" in local_1["ansible_ssh_common_args"]
        assert local_1["stagecraft_private_ip"] == "10.201.7.10"
    else:
        assert "ansible_host" not in local_1
    assert local_1["stagecraft_services"] == ["api", "db", "web", "worker"]


def test_plugin_groups_the_production_hosts_by_role(tmp_path):
    project = make_project(tmp_path, "production")
    plugin = listed(ansible_inventory(project, tmp_path, "-i",
                                      "inventories/production.stagecraft.yml", "--list"))
    assert plugin["role_app"]["hosts"] == ["app-1", "app-2"]
    assert plugin["role_edge"]["hosts"] == ["edge-1"]
    assert plugin["project_shop"]["children"] == ["env_production"]
    assert plugin["env_production"]["hosts"] == ["edge-1", "app-1", "app-2", "db-1"]
    assert plugin["all"]["children"] == ["ungrouped", "project_shop", "role_app", "role_db",
                                         "role_edge", "role_worker"]
    assert shape_of_list(plugin, plugin_group_vars(project, "production")) == \
        shape_of_rendered(cli_inventory(project, tmp_path, "production"))


# --------------------------------------------------------------------------- graph


def test_graph_is_the_same_from_ansible_inventory_and_the_cli(tmp_path):
    project = make_project(tmp_path, "production")
    ansible = ansible_inventory(project, tmp_path, "-i", "inventories/production.stagecraft.yml",
                                "--graph")
    assert ansible.returncode == 0, ansible.stderr
    cli = stagecraft(project, tmp_path, "inventory", "--env", "production", "--graph")
    assert cli.returncode == 0, cli.stderr
    assert ansible.stdout == cli.stdout
    assert "  |--@role_edge:\n  |  |--edge-1\n" in ansible.stdout


def test_graph_of_one_group(tmp_path):
    project = make_project(tmp_path, "production")
    proc = ansible_inventory(project, tmp_path, "-i", "inventories/production.stagecraft.yml",
                             "--graph", "role_app")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "@role_app:\n  |--app-1\n  |--app-2\n"


# -------------------------------------------------------------------------- errors


def test_a_broken_stagecraft_yml_is_reported_with_file_line_and_column(tmp_path):
    text = EXAMPLE.read_text().replace("port: 8080", "port: 80800")
    project = make_project(tmp_path, "production", text=text)
    line_no, line = next((n, l) for n, l in enumerate(text.splitlines(), 1) if "80800" in l)
    where = f"{project / 'stagecraft.yml'}:{line_no}:{line.index('80800') + 1}"
    proc = ansible_inventory(project, tmp_path, "-i", "inventories/production.stagecraft.yml",
                             "--list")
    assert proc.returncode != 0
    stderr = " ".join(proc.stderr.split())  # Ansible may wrap long warnings
    assert f"{where}: services.api.port: expected a number <= 65535, got 80800" in stderr
    assert "hint: fix the file and run `stagecraft validate`" in stderr


def test_an_unknown_environment_names_the_choices(tmp_path):
    project = make_project(tmp_path, "prod", inventory=(
        f"plugin: {PLUGIN}\nconfig: ../stagecraft.yml\nenvironment: prod\n"))
    proc = ansible_inventory(project, tmp_path, "-i", "inventories/prod.stagecraft.yml",
                             "--list")
    assert proc.returncode != 0
    stderr = " ".join(proc.stderr.split())
    assert "environment 'prod' is not defined in stagecraft.yml" in stderr
    assert "did you mean 'production'?" in stderr


def test_a_config_option_that_points_nowhere_says_what_to_set(tmp_path):
    project = make_project(tmp_path, "production", inventory=(
        f"plugin: {PLUGIN}\nconfig: ../app/stagecraft.yml\nenvironment: production\n"))
    proc = ansible_inventory(project, tmp_path, "-i", "inventories/production.stagecraft.yml",
                             "--list")
    assert proc.returncode != 0
    stderr = " ".join(proc.stderr.split())
    assert f"config file {project / 'app' / 'stagecraft.yml'} does not exist" in stderr
    assert "hint: set `config:` in this file to the path of stagecraft.yml" in stderr


def test_a_missing_environment_option_is_an_error(tmp_path):
    project = make_project(tmp_path, "production", inventory=f"plugin: {PLUGIN}\n")
    proc = ansible_inventory(project, tmp_path, "-i", "inventories/production.stagecraft.yml",
                             "--list")
    assert proc.returncode != 0
    assert "environment" in proc.stderr


def test_without_the_stagecraft_package_the_error_says_which_python_to_use(tmp_path):
    project = make_project(tmp_path, "production")
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    # Python imports sitecustomize at start-up; None in sys.modules makes
    # `import stagecraft` fail as if the package were not installed.
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['stagecraft'] = None\n")
    proc = ansible_inventory(project, tmp_path, "-i", "inventories/production.stagecraft.yml",
                             "--list", PYTHONPATH=str(blocker))
    assert proc.returncode != 0
    assert ("the stagecraft package is not importable by this Python" in
            " ".join(proc.stderr.split()))


# ------------------------------------------------------------------- verify_file


def test_without_config_option_stagecraft_yml_is_found_in_a_parent(tmp_path):
    project = make_project(tmp_path, "production",
                           inventory=f"plugin: {PLUGIN}\nenvironment: production\n")
    plugin = listed(ansible_inventory(project / "inventories", tmp_path, "-i",
                                      "production.stagecraft.yml", "--list"))
    assert plugin["env_production"]["hosts"] == ["edge-1", "app-1", "app-2", "db-1"]


def test_plugin_refuses_a_config_file_whose_name_does_not_end_in_stagecraft_yml(tmp_path):
    project = make_project(tmp_path, "production")
    (project / "inventories" / "production.yml").write_text(
        (project / "inventories" / "production.stagecraft.yml").read_text())
    proc = ansible_inventory(project, tmp_path, "-i", "inventories/production.yml", "--list")
    assert proc.returncode != 0
    assert "could not be verified by inventory plugin 'stagecraft.platform.stagecraft'" in " ".join(
        proc.stderr.split())


def test_plugin_does_not_take_the_projects_own_stagecraft_yml(tmp_path):
    project = make_project(tmp_path, "production")
    proc = ansible_inventory(project, tmp_path, "-i", "stagecraft.yml", "--list", "-vvv",
                             ANSIBLE_INVENTORY_ENABLED=PLUGIN)
    assert proc.returncode != 0
    assert (f"stagecraft declined parsing {project / 'stagecraft.yml'} as it did not pass its "
            "verify_file() method") in proc.stdout + proc.stderr


# -------------------------------------------------------------------- constructed


def test_keyed_groups_and_compose_apply_to_the_rendered_hosts(tmp_path):
    project = make_project(tmp_path, "production", inventory=(
        f"plugin: {PLUGIN}\nconfig: ../stagecraft.yml\nenvironment: production\n"
        "compose:\n  runs_many: stagecraft_services | length > 1\n"
        "keyed_groups:\n  - key: stagecraft_services\n    prefix: service\n"))
    plugin = listed(ansible_inventory(project, tmp_path, "-i",
                                      "inventories/production.stagecraft.yml", "--list"))
    assert plugin["service_api"]["hosts"] == ["app-1", "app-2"]
    assert plugin["service_db"]["hosts"] == ["db-1"]
    assert plugin["_meta"]["hostvars"]["app-1"]["runs_many"] is True
    assert plugin["_meta"]["hostvars"]["db-1"]["runs_many"] is False


# ---------------------------------------------------------------------- examples


def test_the_example_inventory_of_the_repository_works(tmp_path):
    proc = ansible_inventory(REPO, tmp_path, "-i", "inventories/example.stagecraft.yml",
                             "--graph")
    assert proc.returncode == 0, proc.stderr
    assert "  |  |--@env_production:\n" in proc.stdout


def test_plugin_documentation_is_complete(tmp_path):
    proc = run([str(BIN / "ansible-doc"), "-t", "inventory", "--json", PLUGIN], tmp_path,
               ansible_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)[PLUGIN]
    options = doc["doc"]["options"]
    assert options["environment"]["required"] is True
    assert {"plugin", "config", "environment", "keyed_groups", "compose"} <= set(options)
    assert "environment: production" in doc["examples"]


# ------------------------------------------------------------- on real hosts


@pytest.mark.fleet
def test_ansible_reaches_the_local_fleet_through_the_plugin_with_host_keys_pinned(tmp_path):
    """`infra up` a one-host local environment, then ping it through the plugin's
    inventory. A known_hosts that no longer matches the host makes the connection
    fail even with ANSIBLE_HOST_KEY_CHECKING=False: the rendered variables keep
    checking on."""
    name = f"it-inv-{secrets.token_hex(3)}"
    text = EXAMPLE.read_text().replace("name: shop\n", f"name: {name}\n", 1)
    project = make_project(tmp_path, "local", text=text)
    up = stagecraft(project, tmp_path, "infra", "up", "--env", "local")
    try:
        assert up.returncode == 0, up.stderr
        no_reuse = {"ANSIBLE_SSH_ARGS": "-o ControlMaster=no"}  # every call checks the key
        ping = ansible(project, tmp_path, "role_edge", **no_reuse)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert '"ping": "pong"' in ping.stdout

        known_hosts = project / ".stagecraft" / "local" / "known_hosts"
        pinned = known_hosts.read_text()
        other_key = "AAAAC3NzaC1lZDI1NTE5AAAAIAgOL+8rYU/JUzbczHPCaHjJdlsFflUWZB1DECncWAty"
        known_hosts.write_text("\n".join(
            line if line.startswith("#") or not line else
            f"{line.rsplit(' ', 1)[0]} {other_key}" for line in pinned.splitlines()) + "\n")
        refused = ansible(project, tmp_path, "all", ANSIBLE_HOST_KEY_CHECKING="False",
                          **no_reuse)
        assert refused.returncode != 0
        assert "Host key verification failed" in refused.stdout + refused.stderr
    finally:
        down = stagecraft(project, tmp_path, "infra", "down", "--env", "local")
        assert down.returncode == 0, down.stderr


def ansible(project: Path, tmp_path: Path, pattern: str,
            **extra: str) -> subprocess.CompletedProcess[str]:
    return run([str(BIN / "ansible"), "-i", "inventories/local.stagecraft.yml", pattern,
                "-m", "ansible.builtin.ping"], project, ansible_env(tmp_path, **extra))
