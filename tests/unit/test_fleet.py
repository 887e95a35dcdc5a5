"""Fleet: an environment's hosts as the cloud recorded them, with one rule for which
records count (hosts/fleet.py). No Docker needed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from stagecraft.config.loader import load_config_text
from stagecraft.errors import StateError
from stagecraft.hosts.fleet import Fleet, fleet_records, fleet_spec, in_fleet, state_dir
from stagecraft.providers.cloud.base import HostRecord, SshAccess, StateFiles, write_hosts_file

CONFIG = """
version: 1
project: {name: shop}
providers: {cloud: {kind: local}}
services:
  db:
    image: postgres:17
    on: [db]
    stateful: true
    volumes: ["data:/var/lib/postgresql/data"]
  web:
    image: nginx:1
    on: [app]
volumes:
  data: {size_gb: 5}
environments:
  prod:
    hosts:
      - {name: db-1, roles: [db], volumes: [data]}
      - {name: app-1, roles: [app]}
"""


def environment():
    return load_config_text(CONFIG).environments["prod"]


def record(name: str, **changes) -> HostRecord:
    base = HostRecord(name=name, roles=(), state="running", ssh_host="127.0.0.1",
                      ssh_port=22001, ssh_user="root", private_ip="10.9.0.10",
                      provider_id=f"id-{name}", provider="local")
    return replace(base, **changes)


def write_records(project_dir: Path, env, records: list[HostRecord]) -> Path:
    directory = state_dir(project_dir, env.name)
    write_hosts_file(StateFiles(directory), provider="local", spec=fleet_spec(env),
                     records=records,
                     ssh=SshAccess(user="root", private_key=directory / "id_ed25519",
                                   known_hosts=directory / "known_hosts"))
    return directory


def test_one_rule_keeps_listed_hosts_of_this_cloud_that_were_in_the_spec():
    env = environment()
    assert in_fleet(record("db-1"), env)
    assert not in_fleet(record("db-1", in_spec=False), env)  # orphaned at the last infra up
    assert not in_fleet(record("db-1", provider="digitalocean"), env)  # the cloud changed
    assert not in_fleet(record("old-1"), env)  # no longer in stagecraft.yml
    records = {r.name: r for r in (record("app-1"), record("old-1"), record("db-1"))}
    assert list(fleet_records(env, records)) == ["app-1", "db-1"]


def test_the_spec_carries_volume_sizes_for_the_cloud():
    spec = fleet_spec(environment())
    assert spec.volume_sizes == {"data": 5}
    assert [h.volumes for h in spec.hosts] == [("data",), ()]


def test_load_reads_hosts_json_and_requires_a_record_per_host(tmp_path):
    env = environment()
    write_records(tmp_path, env, [record("db-1")])
    with pytest.raises(StateError) as caught:
        Fleet.load(env, tmp_path)
    assert "no host record for app-1" in caught.value.message
    assert "infra up --env prod" in caught.value.hint
    fleet = Fleet.load(env, tmp_path, require=False)
    assert list(fleet.records) == ["db-1"]
    assert fleet.host_names == ["db-1", "app-1"]
    assert fleet.state_dir == tmp_path.resolve() / ".stagecraft" / "prod"
    assert fleet.runs_dir == tmp_path.resolve() / ".stagecraft" / "runs"


def test_remotes_and_private_addresses_come_from_the_records(tmp_path):
    env = environment()
    write_records(tmp_path, env, [record("db-1", ssh_port=22005, private_ip="10.9.0.5"),
                                  record("app-1", private_ip=None, ssh_host="192.0.2.7")])
    fleet = Fleet.load(env, tmp_path)
    assert fleet.private_ips == {"db-1": "10.9.0.5", "app-1": "192.0.2.7"}
    primary = fleet.primary
    assert (primary.name, primary.address, primary.port) == ("db-1", "127.0.0.1", 22005)
    assert set(fleet.remotes()) == {"db-1", "app-1"}
    assert fleet.connection.private_key == fleet.access.private_key
