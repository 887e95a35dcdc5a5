"""The digitalocean role's contract (role stagecraft.platform.digitalocean, meta/argument_specs.yml) holds
what stagecraft gives the role: the variables of `infra up` and `infra down` plans
(stagecraft/providers/cloud/digitalocean/plan.py, plus what provider.py adds) pass
ansible-core's own validator, which ansible-playbook runs before the role's first task.
The token is a secret there, and every task that sends it hides it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from stagecraft.paths import roles_dir
from stagecraft.providers.cloud.base import FleetSpec, HostSpec
from stagecraft.providers.cloud.digitalocean.plan import Found, Settings, plan_down, plan_up

ROLE = roles_dir() / "digitalocean"
PUBLIC_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFoG5J6+o0OKj9xaad1fvUTIUbbHdGZLgmRzHoXoF5JI "
              "stagecraft shop/production")
SPEC = FleetSpec(
    project="shop", environment="production",
    hosts=(HostSpec("edge-1", roles=("edge", "app")), HostSpec("db-1", roles=("db",),
                                                                size="s-2vcpu-4gb",
                                                                volumes=("pgdata",))),
    volume_sizes={"pgdata": 20}, ssh_from=("192.0.2.0/24",))
SETTINGS = Settings(region="fra1")
#: What provider.py adds to a plan's variables when it runs the role.
PROVIDER_ADDS = {"digitalocean_api_url": "http://127.0.0.1:40001/v2",
                 "digitalocean_wait_timeout": 300}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def options() -> dict[str, Any]:
    specs = load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]
    assert set(specs) == {"main"}  # tasks/main.yml is the only entry point
    return specs["main"]["options"]


def errors(variables: dict[str, Any]) -> list[str]:
    return ArgumentSpecValidator(options()).validate(variables).error_messages


def existing() -> Found:
    """The environment as a later `infra up` finds it: edge-1 lost its app role tag
    and has another size; the volume exists, untagged and detached."""
    droplets = [
        {"id": 11, "name": "shop-production-edge-1", "size_slug": "s-2vcpu-4gb",
         "status": "active", "region": {"slug": "fra1"},
         "tags": ["stagecraft", "stagecraft-shop-production",
                  "stagecraft-shop-production--edge", "stagecraft-shop-production--old"]},
        {"id": 12, "name": "shop-production-db-1", "size_slug": "s-2vcpu-4gb",
         "status": "off", "region": {"slug": "fra1"},
         "tags": ["stagecraft", "stagecraft-shop-production", "stagecraft-shop-production--db"]},
        {"id": 13, "name": "shop-production-gone-1", "size_slug": "s-1vcpu-2gb",
         "status": "active", "region": {"slug": "fra1"}, "tags": ["stagecraft-shop-production"]},
    ]
    volumes = [{"id": "v-1", "name": "shop-production-db-1-pgdata", "size_gigabytes": 10,
                "droplet_ids": [], "tags": []}]
    return Found(droplets=droplets, volumes=volumes,
                 firewalls=[{"id": "f-1", "name": "stagecraft-shop-production", "tags": [],
                             "inbound_rules": [], "outbound_rules": []}],
                 vpc={"id": "vpc-1", "name": "stagecraft-shop-production"},
                 ssh_key={"id": 1, "name": "stagecraft-shop-production",
                          "fingerprint": "ab:cd"},
                 tags=["stagecraft-shop-production", "stagecraft-shop-production--db"])


def test_the_spec_declares_every_default_with_its_value() -> None:
    defaults = load(ROLE / "defaults" / "main.yml")
    declared = options()
    assert set(declared) == set(defaults)
    assert {name: declared[name].get("default") for name in defaults} == defaults
    for name, option in declared.items():
        assert option.get("description") and option.get("type"), name


@pytest.mark.parametrize("found, prune", [(Found(), False), (existing(), True)],
                         ids=["new environment", "existing environment, pruned"])
def test_what_infra_up_plans_is_valid_for_the_role(found: Found, prune: bool) -> None:
    plan = plan_up(SPEC, SETTINGS, found, PUBLIC_KEY, prune=prune)
    variables = {**plan.variables, **PROVIDER_ADDS}
    assert errors(variables) == []
    # Every kind of item was there to check.
    assert variables["digitalocean_droplets"] and variables["digitalocean_volumes"]
    assert variables["digitalocean_firewalls"][0]["inbound_rules"]
    if prune:
        assert variables["digitalocean_droplet_tags"] and variables["digitalocean_prune"]
        assert any("resize_from" in d for d in variables["digitalocean_droplets"])


def test_what_infra_down_plans_is_valid_for_the_role() -> None:
    plan = plan_down(SPEC, SETTINGS, existing())
    variables = {**plan.variables, **PROVIDER_ADDS}
    assert variables["digitalocean_droplet_ids"] == [11, 12, 13]
    assert errors(variables) == []


@pytest.mark.parametrize("change, complaint", [
    ({"digitalocean_state": "gone"}, "digitalocean_state must be one of"),
    ({"digitalocean_droplets": [{"name": "a", "tags": []}]}, "size"),
    ({"digitalocean_droplets": [{"name": "a", "size": "s", "tags": [], "image": "x"}]},
     "image"),
    ({"digitalocean_volumes": [{"name": "v", "size": 10, "droplet": "a", "tag": True}]},
     "size"),
    ({"digitalocean_droplet_tags": [{"tag": "t", "droplet": "a", "state": "maybe"}]},
     "state must be one of"),
    ({"digitalocean_firewalls": [{"name": "f", "tags": [], "outbound_rules": [],
                                  "inbound_rules": [{"protocol": "sctp", "ports": "1",
                                                     "sources": {"tags": ["t"]}}]}]},
     "protocol must be one of"),
    ({"digitalocean_firewalls": [{"name": "f", "tags": [], "outbound_rules": [],
                                  "inbound_rules": [{"ports": "22",
                                                     "destinations": {"tags": ["t"]}}]}]},
     "sources"),
    ({"digitalocean_droplet_ids": ["not-an-id"]}, "digitalocean_droplet_ids"),
], ids=["state", "droplet without size", "droplet with an unknown key",
        "volume size misnamed", "tag state", "firewall protocol", "inbound rule sources",
        "droplet id"])
def test_the_spec_refuses_what_the_tasks_cannot_use(change: dict[str, Any],
                                                    complaint: str) -> None:
    found = errors(change)
    assert found and any(complaint in message for message in found), found


def test_the_token_is_a_secret_in_the_spec_and_in_every_task_that_sends_it() -> None:
    from ansible_collections.community.digitalocean.plugins.module_utils.digital_ocean import (
        DigitalOceanHelper,
    )

    assert options()["digitalocean_token"].get("no_log") is True
    # The modules hide their oauth_token themselves.
    assert DigitalOceanHelper.digital_ocean_argument_spec()["oauth_token"]["no_log"] is True
    seen = []
    for path in sorted((ROLE / "tasks").glob("*.yml")):
        for task in load(path) or []:
            module = next(k for k in task if k.startswith(("community.", "ansible.")))
            arguments = dict(task[module]) if isinstance(task[module], dict) else {}
            if module.startswith("community.digitalocean."):
                arguments.pop("oauth_token", None)
            rest = yaml.safe_dump({**task, module: arguments})
            if "digitalocean_token" in rest:
                seen.append(task["name"])
                assert "_digitalocean_token" in str(task.get("no_log", "")) or \
                    task.get("no_log") is True, f"{path.name}: {task['name']} sends the token"
    assert len(seen) == 3, seen  # the role's own API calls (ansible.builtin.uri)
