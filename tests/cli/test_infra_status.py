"""`stagecraft infra status`: the hosts, then what the cloud made besides them (volumes,
cloud firewalls), as text and as JSON.

Cloud `digitalocean` runs against the API twin without machines (no Docker, no
Ansible): the resources are made through its API as `infra up` would name them, then
the CLI reads them back through the real provider. Cloud `ssh` makes nothing besides
hosts and reports empty lists.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from stagecraft.cli.main import cli
from tests.unit.test_do_twin_api import TOKEN, RunningTwin

CONFIG = """version: 1
project: {{ name: shop }}
providers:
  cloud: {cloud}
services:
  web: {{ image: "nginx:1", port: 80, healthcheck: {{ path: / }}, on: [app] }}
volumes:
  pgdata: {{ size_gb: 2{device} }}
environments:
  prod:
    hosts:
      - {{ name: edge-1, roles: [edge, app], volumes: [pgdata]{address} }}
      - {{ name: app-1, roles: [app]{address} }}
"""
TAG = "stagecraft-shop-prod"


def invoke(project: Path, *args: str, env: dict | None = None):
    return CliRunner().invoke(cli, ["--config", str(project / "stagecraft.yml"), "--env",
                                    "prod", *args], env=env, prog_name="stagecraft",
                              catch_exceptions=False)


@pytest.fixture
def twin(tmp_path: Path):
    running = RunningTwin(tmp_path / "twin", tmp_path / "record.jsonl")
    yield running
    running.terminate()


def make_environment(twin: RunningTwin) -> dict[str, dict]:
    """What `infra up` makes for environment prod of shop, made through the API."""
    droplets = {}
    for host, roles, size in (("edge-1", ["edge", "app"], "s-1vcpu-2gb"),
                              ("app-1", ["app"], "s-1vcpu-1gb")):
        made = twin.ok("POST", "droplets", {
            "name": f"shop-prod-{host}", "size": size, "region": "fra1",
            "image": "debian-13-x64",
            "tags": ["stagecraft", TAG, *(f"{TAG}--{r}" for r in roles)]}, 202)["droplet"]
        droplets[host] = twin.wait_for(f"droplets/{made['id']}", "droplet", "status", "active")
    volume = twin.ok("POST", "volumes", {"name": "shop-prod-edge-1-pgdata", "size_gigabytes": 2,
                                         "region": "fra1", "tags": ["stagecraft", TAG]},
                     201)["volume"]
    twin.ok("POST", f"volumes/{volume['id']}/actions", {
        "type": "attach", "droplet_id": droplets["edge-1"]["id"], "region": "fra1"}, 202)
    outbound = [{"protocol": "tcp", "ports": "0",
                 "destinations": {"addresses": ["0.0.0.0/0", "::/0"]}}]
    for name, tags, inbound in (
            (TAG, [TAG], [{"protocol": "tcp", "ports": "0", "sources": {"tags": [TAG]}},
                          {"protocol": "icmp", "sources": {"tags": [TAG]}}]),
            (f"{TAG}--edge", [f"{TAG}--edge"],
             [{"protocol": "tcp", "ports": str(p), "sources": {"addresses": ["0.0.0.0/0",
                                                                             "::/0"]}}
              for p in (80, 443)])):
        made = twin.ok("POST", "firewalls", {"name": name, "tags": tags, "inbound_rules": inbound,
                                             "outbound_rules": outbound}, 202)["firewall"]
        twin.wait_for(f"firewalls/{made['id']}", "firewall", "status", "succeeded")
    deadline = time.monotonic() + 10
    while twin.ok("GET", f"volumes/{volume['id']}")["volume"]["droplet_ids"] == [] \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    return droplets


def test_status_lists_droplets_volumes_and_firewalls(tmp_path: Path, twin: RunningTwin) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    (project / "stagecraft.yml").write_text(CONFIG.format(
        cloud=f'{{ kind: digitalocean, token: "${{env:DO_TOKEN}}", region: fra1, '
              f'api_url: "{twin.url}" }}', address="", device=""))
    droplets = make_environment(twin)
    public = {h: next(n["ip_address"] for n in droplets[h]["networks"]["v4"]
                      if n["type"] == "public") for h in droplets}
    private = {h: next(n["ip_address"] for n in droplets[h]["networks"]["v4"]
                       if n["type"] == "private") for h in droplets}

    result = invoke(project, "infra", "status", "--output", "json", env={"DO_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [(h["name"], h["state"], h["public_ip"], h["private_ip"], h["size"])
            for h in data["hosts"]] == [
        ("edge-1", "running", public["edge-1"], private["edge-1"], "s-1vcpu-2gb"),
        ("app-1", "running", public["app-1"], private["app-1"], "s-1vcpu-1gb")]
    (volume,) = data["volumes"]
    assert volume == {
        "name": "shop-prod-edge-1-pgdata", "size_gb": 2, "host": "edge-1",
        "attached_to": "shop-prod-edge-1", "volume": "pgdata",
        "provider_id": volume["provider_id"],
        "device": "/dev/disk/by-id/scsi-0DO_Volume_shop-prod-edge-1-pgdata"}
    assert [(f["name"], f["status"], f["droplets"], f["tags"], f["inbound"])
            for f in data["firewalls"]] == [
        (TAG, "succeeded", 2, [TAG], [f"tcp all from tag {TAG}", f"icmp from tag {TAG}"]),
        (f"{TAG}--edge", "succeeded", 1, [f"{TAG}--edge"],
         ["tcp 80 from 0.0.0.0/0, ::/0", "tcp 443 from 0.0.0.0/0, ::/0"])]

    text = invoke(project, "infra", "status", env={"DO_TOKEN": TOKEN})
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["host", "roles", "state", "ssh", "private", "ip", "size"]
    assert lines[1].split() == ["edge-1", "edge,app", "running", f"root@{public['edge-1']}:22",
                                private["edge-1"], "s-1vcpu-2gb"]
    assert lines[3:] == [
        "",
        "volume                   size   attached to       host",
        "shop-prod-edge-1-pgdata  2 GiB  shop-prod-edge-1  edge-1",
        "",
        "firewall                    status     droplets  tags                        inbound",
        f"{TAG}        succeeded  2         {TAG}        tcp all from tag {TAG}; "
        f"icmp from tag {TAG}",
        f"{TAG}--edge  succeeded  1         {TAG}--edge  tcp 80 from 0.0.0.0/0, ::/0; "
        "tcp 443 from 0.0.0.0/0, ::/0",
    ]


def test_a_cloud_that_makes_nothing_besides_hosts_lists_no_resources(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    (project / "stagecraft.yml").write_text(CONFIG.format(
        cloud="{ kind: ssh }", address=", address: 192.0.2.1",
        device=", device: /dev/disk/by-id/scsi-0-data"))
    result = invoke(project, "infra", "status", "--output", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [h["name"] for h in data["hosts"]] == ["edge-1", "app-1"]
    assert (data["volumes"], data["firewalls"]) == ([], [])
    text = invoke(project, "infra", "status")
    assert "volume" not in text.stdout and "firewall" not in text.stdout
