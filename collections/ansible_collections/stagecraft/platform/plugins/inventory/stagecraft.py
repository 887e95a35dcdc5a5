# Copyright: stagecraft maintainers
# Apache License 2.0 (see the stagecraft repository)
"""The stagecraft.platform.stagecraft inventory plugin: hosts and groups of one
environment of a stagecraft.yml, rendered by stagecraft itself."""

from __future__ import annotations

DOCUMENTATION = r"""
name: stagecraft
short_description: Hosts, groups and host variables of a stagecraft.yml environment
version_added: 0.1.0
description:
  - Reads a stagecraft.yml and the environment's state files (C(.stagecraft/<env>/hosts.json),
    C(known_hosts), the SSH key) and adds that environment's hosts to the inventory.
  - The inventory is rendered by the stagecraft Python package, the same function the
    C(stagecraft inventory) command and the CLI's runs use, so both always agree.
    Run Ansible from the Python environment stagecraft is installed in.
  - "Groups: C(project_<project>) holds C(env_<environment>), which holds every host;
    C(role_<role>) holds the hosts with that role. A C(-) in a name becomes C(_)."
  - "Host variables: C(stagecraft_project), C(stagecraft_environment), C(stagecraft_roles),
    C(stagecraft_services), C(stagecraft_volumes), C(stagecraft_private_ip) (once the host
    exists); and, once the host has an address, C(ansible_host), C(ansible_port),
    C(ansible_user), C(ansible_ssh_private_key_file) and C(ansible_ssh_common_args) that pin
    the recorded host keys. C(ansible_host_key_checking) is always true."
  - "Variables of C(all): C(stagecraft_config) (the path of stagecraft.yml), C(stagecraft_root)
    and, once the hosts exist, the variables C(stagecraft bootstrap) passes the bootstrap
    playbook (C(bootstrap_project), C(bootstrap_deploy_authorized_keys), firewall and
    volume settings, ...), so C(ansible-playbook stagecraft.platform.bootstrap) needs no
    C(-e)."
  - "When the run names a release (C(-e stagecraft_release=<id>)), the release is rendered
    as the stagecraft CLI renders it: per host C(stagecraft_release_files) and
    C(stagecraft_traefik_files) (the non-secret files: compose, Traefik), and for C(all)
    C(stagecraft_release_id), C(stagecraft_images), C(stagecraft_traefik_image),
    C(stagecraft_rollout), C(stagecraft_keep_releases) and the rollout hooks. Files that
    hold secrets are never inventory variables; the deploy and rollback playbooks resolve
    them with the C(stagecraft.platform.release_secrets) action, under no_log."
  - "A release's images are those the project's ledger recorded for it, or else the tags
    C(stagecraft build --release <id>) pushes (C(<registry>/<project>-<service>:<id>))."
  - The inventory config file's name must end in C(stagecraft.yml) or C(stagecraft.yaml),
    for example C(inventories/production.stagecraft.yml).
author:
  - stagecraft maintainers (@stagecraft)
requirements:
  - the stagecraft Python package, importable by the Python that runs Ansible
extends_documentation_fragment:
  - ansible.builtin.constructed
options:
  plugin:
    description: The name of this plugin; makes the file an inventory config of this plugin.
    required: true
    type: string
    choices: [stagecraft.platform.stagecraft]
  config:
    description:
      - Path of the project's stagecraft.yml, relative to the directory of this inventory
        config file (or absolute).
      - When not set, stagecraft.yml is looked for in that directory and its parents.
    type: string
  environment:
    description: The environment of stagecraft.yml whose hosts make the inventory.
    required: true
    type: string
"""

EXAMPLES = r"""
# inventories/production.stagecraft.yml
plugin: stagecraft.platform.stagecraft
config: ../stagecraft.yml
environment: production

# The constructed features also work, for example a group of the hosts that run
# the api service and a group per service:
#   groups:
#     runs_api: "'api' in stagecraft_services"
#   keyed_groups:
#     - key: stagecraft_services
#       prefix: service

# Use it, from the Python environment stagecraft is installed in:
#   ANSIBLE_COLLECTIONS_PATH=/path/to/stagecraft/collections \
#     ansible-inventory -i inventories/production.stagecraft.yml --graph
"""

import os
from collections.abc import Mapping
from pathlib import Path

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable

NAME = "stagecraft.platform.stagecraft"
FILE_SUFFIXES = ("stagecraft.yml", "stagecraft.yaml")


class StagecraftInventoryError(AnsibleParserError):
    """An error stagecraft reported, in its own words (message and hint).

    Its message already says everything, so Ansible must not append the
    message of the cause again (ansible-core >= 2.19 would).
    """

    _include_cause_message = False


class InventoryModule(BaseInventoryPlugin, Constructable):
    """Adds the hosts of one stagecraft environment, as stagecraft renders them."""

    NAME = NAME

    def verify_file(self, path):
        """Only inventory configs of this plugin: a readable ``*stagecraft.yml`` file
        whose ``plugin`` key names this plugin (a project's own stagecraft.yml has none)."""
        if not super().verify_file(path):
            return False
        if not str(path).endswith(FILE_SUFFIXES):
            self.display.vvv(f"{path}: skipped, the name does not end in stagecraft.yml")
            return False
        return _names_this_plugin(path)

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        rendered, group_vars, host_vars = self._render(path)
        added = []
        self._add_group("all", rendered.get("all") or {}, added)
        for key, value in group_vars.items():
            self.inventory.set_variable("all", key, value)
        for host, variables in host_vars.items():
            if host in added:
                for key, value in variables.items():
                    self.inventory.set_variable(host, key, value)
        self._construct(added)

    def _render(self, path):
        """The inventory stagecraft renders for the configured environment, the
        variables of all, and each host's variables of the release the run names."""
        try:
            from stagecraft.config import find_config, load_config
            from stagecraft.deploy.standalone import inventory_variables, release_of
            from stagecraft.errors import StagecraftError
            from stagecraft.render.inventory import inventory_of
        except ImportError as exc:
            raise StagecraftInventoryError(
                f"{path}: the stagecraft package is not importable by this Python "
                f"({exc}); run Ansible from the environment stagecraft is installed in"
            ) from exc
        base = os.path.dirname(os.path.abspath(path))
        config = self.get_option("config")
        environment = self.get_option("environment")
        try:
            if config:
                config_path = find_config(
                    os.path.normpath(os.path.join(base, os.path.expanduser(config))))
            else:
                config_path = find_config(start=Path(base))
        except StagecraftError as exc:
            raise StagecraftInventoryError(
                f"{path}: {exc.message}\nhint: set `config:` in this file to the path of "
                "stagecraft.yml, relative to this file"
            ) from exc
        try:
            rendered = inventory_of(load_config(config_path), environment)
            group_vars, host_vars = inventory_variables(config_path, environment,
                                                        release_of(self._vars or {}))
            return rendered, group_vars, host_vars
        except StagecraftError as exc:
            hint = f"\nhint: {exc.hint}" if exc.hint else ""
            raise StagecraftInventoryError(f"{path}: {exc.message}{hint}") from exc

    def _add_group(self, name, group, added):
        """Add a group of the YAML inventory shape: its hosts with their
        variables, its variables and, recursively, its children. Host names go
        to ``added`` in first-seen order."""
        if name != "all":
            name = self.inventory.add_group(name)
        for host, variables in (group.get("hosts") or {}).items():
            self.inventory.add_host(host, group=name)
            if host not in added:
                added.append(host)
            for key, value in (variables or {}).items():
                self.inventory.set_variable(host, key, value)
        for key, value in (group.get("vars") or {}).items():
            self.inventory.set_variable(name, key, value)
        for child_name, child in (group.get("children") or {}).items():
            child_name = self._add_group(child_name, child or {}, added)
            self.inventory.add_child(name, child_name)
        return name

    def _construct(self, hosts):
        """Apply ``compose``, ``groups`` and ``keyed_groups`` to ``hosts``."""
        strict = self.get_option("strict")
        for host in hosts:
            host_vars = self.inventory.get_host(host).get_vars()
            self._set_composite_vars(self.get_option("compose"), host_vars, host, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), host_vars, host,
                                              strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), host_vars, host,
                                           strict=strict)


def _names_this_plugin(path):
    """Whether the YAML file at ``path`` is a mapping with ``plugin: <this plugin>``."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, Mapping) and data.get("plugin") == NAME
