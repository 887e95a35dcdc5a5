"""stagecraft's root on a host is one setting: stagecraft.paths.HOST_ROOT.

Every playbook run gets it as the extra variable stagecraft_root; the Ansible
side repeats it only as defaults (for runs without the CLI), and those must
stay equal to it.
"""

from __future__ import annotations

import re
import json
from pathlib import Path

import yaml

from stagecraft.ansible.bundle import prepare
from stagecraft.config.loader import load_config_text
from stagecraft.deploy.request import release_request
from stagecraft.hosts.lock import base_dir, lock_dir
from stagecraft.paths import HOST_ROOT, HOST_ROOT_VAR, playbooks_dir, roles_dir
from stagecraft.providers.cloud.base import HostRecord, SshAccess
from stagecraft.render.state import HostRender, HostState, RenderedFile

CONFIG = """
version: 1
project: {name: shop}
services:
  web: {image: example/web:1, port: 8080, healthcheck: {path: /up}, on: [app],
        routes: [{host: shop.localhost}]}
environments:
  local:
    hosts: [{name: h1, roles: [edge, app]}]
"""


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_the_root_reaches_a_deploy_bundles_extravars(tmp_path: Path) -> None:
    env = load_config_text(CONFIG).environment("local")
    records = {"h1": HostRecord(name="h1", roles=("edge", "app"), state="running",
                                ssh_host="127.0.0.1", ssh_port=22001, ssh_user="root",
                                private_ip="10.0.0.10", provider_id=None)}
    access = SshAccess(user="root", private_key=tmp_path / "id", known_hosts=tmp_path / "known")
    renders = {"h1": HostRender(host="h1", state=HostState(),
                                release_files={"compose.yml": RenderedFile("services: {}\n")},
                                traefik_files={"traefik.yml": RenderedFile("a: 1\n")})}
    request = release_request(
        run_id="r1", playbook="deploy.yml", env=env, records=records, access=access,
        renders=renders, release_id="20261121T101500Z-3f9c2ab", action="deploy",
        performer="me@here", registry=None, traefik_image="traefik:3.7")
    bundle = prepare(request, tmp_path / "runs")
    bundle.discard_secrets()
    bundle.release()

    extravars = json.loads((bundle.root / "env" / "extravars").read_text())
    assert extravars[HOST_ROOT_VAR] == HOST_ROOT == "/opt/stagecraft"


def test_python_builds_host_paths_from_the_root() -> None:
    assert base_dir("shop", "production") == f"{HOST_ROOT}/shop/production"
    assert lock_dir("shop", "production") == f"{HOST_ROOT}/shop/production/lock"


def test_the_ansible_defaults_equal_the_root() -> None:
    # Runs started with plain ansible-playbook use these; the CLI passes HOST_ROOT.
    seen = []
    for playbook in sorted(playbooks_dir().glob("*.yml")):
        expressions = re.findall(r"\{\{\s*(" + HOST_ROOT_VAR + r"\b[^}]*?)\s*\}\}",
                                 playbook.read_text(encoding="utf-8"))
        for expression in expressions:
            assert expression == f"{HOST_ROOT_VAR} | default('{HOST_ROOT}')", (playbook, expression)
        seen += expressions
    assert seen, "no playbook uses the root variable"

    for role, variable in (("rollout", "rollout_root"), ("bootstrap", "bootstrap_layout_root")):
        assert load_yaml(roles_dir() / role / "defaults" / "main.yml")[variable] == HOST_ROOT
        specs = load_yaml(roles_dir() / role / "meta" / "argument_specs.yml")["argument_specs"]
        declared = [spec["options"][variable]["default"] for spec in specs.values()
                    if variable in spec.get("options", {})]
        assert declared and set(declared) == {HOST_ROOT}, (role, declared)


def test_no_playbook_or_role_writes_the_root_literally_in_a_path() -> None:
    # Only the defaults checked above may name it; every path is built from the variable.
    defaults = {roles_dir() / "rollout" / "defaults" / "main.yml",
                roles_dir() / "rollout" / "meta" / "argument_specs.yml",
                roles_dir() / "bootstrap" / "defaults" / "main.yml",
                roles_dir() / "bootstrap" / "meta" / "argument_specs.yml"}
    found = []
    for directory in (playbooks_dir(), roles_dir()):
        for path in directory.rglob("*"):
            if path.is_file() and path not in defaults and HOST_ROOT + "/" in path.read_text(
                    encoding="utf-8", errors="replace"):
                found.append(str(path))
    assert found == []
