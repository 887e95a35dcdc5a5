"""The tailnet's record of an environment's hosts (stagecraft/hosts/mesh.py) and how
the fleet uses it: services at tailnet addresses, SSH over the tailnet with the host
keys pinned at first contact."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("stand_in_providers")

from stagecraft.config.loader import load_config_text
from stagecraft.errors import StateError
from stagecraft.hosts import mesh, ssh
from stagecraft.hosts.fleet import Fleet, fleet_spec, state_dir
from stagecraft.hosts.mesh import MeshNode, nodes_from_events, over_mesh, read_nodes, record_nodes
from stagecraft.providers.cloud.base import (
    HostRecord,
    MeshRoute,
    SshAccess,
    StateFiles,
    write_hosts_file,
)
from stagecraft.render.inventory import render_inventory

CONFIG = """
version: 1
project: {{name: shop}}
providers: {{cloud: {{kind: local}}, network: {network}}}
services:
  web: {{image: "nginx:1", on: [app]}}
environments:
  prod:
    hosts:
      - {{name: edge-1, roles: [edge]}}
      - {{name: app-1, roles: [app]}}
"""
HEADSCALE = "{kind: headscale}"


def environment(network: str = HEADSCALE):
    return load_config_text(CONFIG.format(network=network)).environments["prod"]


def fact(ipv4: str = "100.64.0.1", **more) -> dict:
    return {"ipv4": ipv4, "ipv6": "fd7a:115c:a1e0::1", "dns_name": "edge-1.shop.internal",
            "hostname": "edge-1", "online": True, "tags": ["tag:shop"], **more}


def ok_event(host: str, facts: dict, task: str = "Report the node's tailnet addresses and name"):
    return {"event": "runner_on_ok",
            "event_data": {"host": host, "task": task, "res": {"ansible_facts": facts}}}


def test_the_joined_nodes_are_read_from_the_roles_facts_in_the_events():
    events = [
        {"event": "runner_on_start", "event_data": {"host": "edge-1"}},
        ok_event("edge-1", {"tailscale_node": fact("100.64.0.9")}),
        ok_event("edge-1", {"tailscale_node": fact("100.64.0.1")}),  # the last one wins
        ok_event("app-1", {"other": 1}),
        ok_event("app-1", {"tailscale_node": fact("192.0.2.1")}),  # not a tailnet address
        ok_event("db-1", {"tailscale_node": fact("")}),
        {"event": "runner_on_failed", "event_data": {"host": "x", "res": {
            "ansible_facts": {"tailscale_node": fact("100.64.0.3")}}}},
    ]
    nodes = nodes_from_events(events)
    assert nodes == {"edge-1": MeshNode("edge-1", "100.64.0.1", "fd7a:115c:a1e0::1",
                                        "edge-1.shop.internal", ("tag:shop",))}


def test_nodes_are_recorded_atomically_merged_and_kept_to_the_environments_hosts(tmp_path):
    assert read_nodes(tmp_path) == {}
    record_nodes(tmp_path, {"edge-1": MeshNode("edge-1", "100.64.0.1")})
    nodes = record_nodes(tmp_path, {"app-1": MeshNode("app-1", "100.64.0.2")},
                         keep=["edge-1", "app-1"])
    assert set(nodes) == {"edge-1", "app-1"}
    assert read_nodes(tmp_path) == nodes
    assert record_nodes(tmp_path, {}, keep=["app-1"]).keys() == {"app-1"}
    assert [p.name for p in tmp_path.iterdir()] == ["mesh.json"]  # no temporary left
    mesh.forget_nodes(tmp_path)
    assert read_nodes(tmp_path) == {}


def test_an_unreadable_record_says_how_to_recover(tmp_path):
    (tmp_path / "mesh.json").write_text("{not json")
    with pytest.raises(StateError) as caught:
        read_nodes(tmp_path)
    assert "mesh.json" in caught.value.message and "stagecraft bootstrap" in caught.value.hint


def host(name: str, port: int, private_ip: str = "10.9.0.10") -> HostRecord:
    return HostRecord(name=name, roles=(), state="running", ssh_host="127.0.0.1",
                      ssh_port=port, ssh_user="root", private_ip=private_ip,
                      provider_id=f"id-{name}", provider="local")


def test_over_the_mesh_a_host_keeps_its_pinned_key_under_its_old_name():
    record = host("edge-1", 22001)
    route = MeshRoute(proxy_command="docker exec -i gw tailscale nc %h %p", ssh_port=22)
    meshed = over_mesh(record, MeshNode("edge-1", "100.64.0.1"), route)
    assert (meshed.ssh_host, meshed.ssh_port) == ("100.64.0.1", 22)
    assert meshed.host_key_alias == "[127.0.0.1]:22001"
    assert meshed.proxy_command == route.proxy_command
    # A cloud whose controller is on the tailnet: no command, the record's port.
    plain = over_mesh(replace(record, ssh_port=22), MeshNode("edge-1", "100.64.0.1"), MeshRoute())
    assert (plain.ssh_port, plain.proxy_command, plain.host_key_alias) == (22, None, "127.0.0.1")


def test_a_route_becomes_ssh_options_in_place_of_a_bastion():
    route = ssh.Route(proxy="admin@203.0.113.5:22", proxy_command="tailscale nc %h %p",
                      host_key_alias="[127.0.0.1]:22001")
    options = route.options("/k", "/kh")
    assert options == ["ProxyCommand=tailscale nc %h %p", "ServerAliveInterval=10",
                       "ServerAliveCountMax=3", "HostKeyAlias=[127.0.0.1]:22001"]
    argv = ssh.ssh_argv(private_key="/k", known_hosts="/kh", address="100.64.0.1", port=22,
                        user="root", command="true", route=route)
    assert "ProxyCommand=tailscale nc %h %p" in argv and argv[-2:] == ["100.64.0.1", "true"]
    # Without a command, the bastion's ProxyCommand as before.
    bastion = ssh.Route(proxy="admin@203.0.113.5:22").options("/k", "/kh")
    assert len(bastion) == 1 and bastion[0].startswith("ProxyCommand=ssh ")


def write_fleet(tmp_path: Path, env) -> Path:
    directory = state_dir(tmp_path, env.name)
    write_hosts_file(StateFiles(directory), provider="local", spec=fleet_spec(env),
                     records=[host("edge-1", 22001, "10.9.0.2"), host("app-1", 22002, "10.9.0.3")],
                     ssh=SshAccess(user="root", private_key=directory / "id_ed25519",
                                   known_hosts=directory / "known_hosts"))
    return directory


ROUTE = MeshRoute(proxy_command="docker exec -i stagecraft-shop-prod-mesh tailscale nc %h %p",
                  ssh_port=22)


@pytest.fixture
def routed(monkeypatch):
    monkeypatch.setattr("stagecraft.hosts.fleet.mesh_route", lambda cloud, spec, sdir: ROUTE)


@pytest.mark.usefixtures("routed")
def test_a_fleet_on_a_tailnet_talks_and_connects_over_it(tmp_path):
    env = environment()
    directory = write_fleet(tmp_path, env)
    assert Fleet.load(env, tmp_path).private_ips == {"edge-1": "10.9.0.2", "app-1": "10.9.0.3"}
    record_nodes(directory, {"app-1": MeshNode("app-1", "100.64.0.7")})

    fleet = Fleet.load(env, tmp_path)
    assert fleet.spec.mesh
    assert fleet.private_ips == {"edge-1": "10.9.0.2", "app-1": "100.64.0.7"}
    app = fleet.remote("app-1")
    assert (app.address, app.port) == ("100.64.0.7", 22)
    assert "ProxyCommand=" + ROUTE.proxy_command in app.ssh_argv("true")
    assert "HostKeyAlias=[127.0.0.1]:22002" in app.ssh_argv("true")
    edge = fleet.remote("edge-1")  # not joined yet: reached as before
    assert (edge.address, edge.port) == ("127.0.0.1", 22001)

    inventory = render_inventory(env, fleet.records, fleet.connection)
    hosts = inventory["all"]["children"]["project_shop"]["children"]["env_prod"]["hosts"]
    assert (hosts["app-1"]["ansible_host"], hosts["app-1"]["ansible_port"]) == ("100.64.0.7", 22)
    args = shlex.split(hosts["app-1"]["ansible_ssh_common_args"])
    assert f"ProxyCommand={ROUTE.proxy_command}" in args
    assert "ProxyCommand" not in hosts["edge-1"]["ansible_ssh_common_args"]
    # The fleet's view only: a record never carries its route into hosts.json.
    assert "proxy_command" not in fleet.records["app-1"].to_dict()
    assert "100.64" not in (directory / "hosts.json").read_text()


@pytest.mark.usefixtures("routed")
def test_ssh_over_mesh_off_keeps_ssh_on_the_clouds_addresses(tmp_path):
    env = environment("{kind: headscale, ssh_over_mesh: false}")
    record_nodes(write_fleet(tmp_path, env), {"app-1": MeshNode("app-1", "100.64.0.7")})
    fleet = Fleet.load(env, tmp_path)
    assert fleet.private_ips["app-1"] == "100.64.0.7"
    assert (fleet.remote("app-1").address, fleet.remote("app-1").port) == ("127.0.0.1", 22002)


def test_without_a_tailnet_a_stale_record_is_ignored(tmp_path):
    env = environment("{kind: none}")
    record_nodes(write_fleet(tmp_path, env), {"app-1": MeshNode("app-1", "100.64.0.7")})
    fleet = Fleet.load(env, tmp_path)
    assert not fleet.spec.mesh and fleet.mesh == {}
    assert fleet.private_ips["app-1"] == "10.9.0.3"
