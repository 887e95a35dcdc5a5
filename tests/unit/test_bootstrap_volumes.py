"""bootstrap.volumes_by_host: the volumes role's input per host, from stagecraft.yml."""

from __future__ import annotations

from pathlib import Path

from stagecraft.infra.bootstrap import volumes_by_host
from stagecraft.config import load_config
from stagecraft.config.loader import load_config_text

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "compose" / "stagecraft.yml"


def test_a_host_carrying_a_volume_gets_it_with_a_directory_per_service_using_it():
    env = load_config(GOLDEN).environments["three"]
    assert volumes_by_host(env) == {
        "db-1": [{"name": "pgdata", "filesystem": "ext4", "directories": [{"path": "db"}]}],
    }


def test_device_filesystem_and_several_services_are_passed_and_hosts_without_volumes_left_out():
    text = """
version: 1
project: {name: shop}
services:
  db:
    image: postgres:17
    on: [db]
    stateful: true
    volumes: ["data:/var/lib/postgresql/data"]
  backup:
    image: busybox:1
    on: [db]
    volumes: ["data:/backup:ro", "/srv:/srv"]
  web:
    image: nginx:1
    on: [app]
volumes:
  data: {size_gb: 5, filesystem: xfs, device: /dev/disk/by-id/virtio-data}
  spare: {size_gb: 1}
environments:
  prod:
    hosts:
      - {name: db-1, roles: [db], volumes: [data, spare]}
      - {name: app-1, roles: [app]}
"""
    env = load_config_text(text).environments["prod"]
    assert volumes_by_host(env) == {"db-1": [
        {"name": "data", "filesystem": "xfs", "device": "/dev/disk/by-id/virtio-data",
         "directories": [{"path": "backup"}, {"path": "db"}]},
        {"name": "spare", "filesystem": "ext4", "directories": []},
    ]}
