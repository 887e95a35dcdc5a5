"""Cloud `digitalocean` without Ansible: what a run that waited too long for a droplet
becomes (failures.py), the plan and record of a droplet still in status `new`, the
volumes and firewalls `infra status` lists (report.py), `wait_timeout` from
stagecraft.yml to the provider, and `up` against the API twin (no machines) when the
droplet module gives up on a droplet stuck in `new`."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagecraft.errors import ConfigError, ProviderError, RunFailed
from stagecraft.providers.cloud.base import (
    CREATING,
    RUNNING,
    STOPPED,
    CloudResources,
    FirewallStatus,
    FleetSpec,
    HostSpec,
    VolumeStatus,
    cloud_resources,
)
from stagecraft.providers.cloud.digitalocean import failures, report
from stagecraft.providers.cloud.digitalocean.plan import Found, Settings, plan_up
from stagecraft.providers.cloud.digitalocean.provider import DigitalOceanCloud, _record

SPEC = FleetSpec(project="shop", environment="prod", hosts=(
    HostSpec("edge-1", ("edge",), volumes=("pgdata",)), HostSpec("app-1", ("app",))))
MODULE_FAILED = ("the Ansible run 20260101T000000Z-digitalocean-prod failed:\nlocalhost: "
                 "Create the droplets, resize them and power them on failed: One or more "
                 "items failed: item shop-prod-app-1: Wait for Droplet [active,off] status "
                 "timeout")
STUCK_HINT = (
    "look at it in DigitalOcean's control panel (cloud.digitalocean.com) and at "
    "status.digitalocean.com; then run `stagecraft infra up` again: it finds the droplet "
    "by its name and waits for it anew (raise providers.cloud.wait_timeout, now 15s, to "
    "wait longer). A droplet that never leaves `new` can be destroyed in the control "
    "panel: `stagecraft infra up` then creates it anew")


def droplet(name: str, status: str = "active", id_: int = 1, tags=()) -> dict:
    return {"id": id_, "name": name, "status": status, "size_slug": "s-1vcpu-2gb",
            "tags": list(tags), "region": {"slug": "fra1"},
            "networks": {"v4": [{"type": "public", "ip_address": f"203.0.113.{id_}"},
                                {"type": "private", "ip_address": f"10.1.0.{id_}"}]}}


# ------------------------------------------------------------- failures.py


@pytest.mark.parametrize("message", [
    MODULE_FAILED, "x: Wait for Droplet [active] status timeout",
    "x: One or more items failed: Wait for Droplet action timeout"])
def test_the_droplet_modules_timeouts_are_recognised(message: str) -> None:
    assert failures.waited_too_long(message)


def test_other_failures_are_not_mapped() -> None:
    message = "localhost: Create the volumes failed: HTTP 500"
    assert not failures.waited_too_long(message)
    assert failures.wait_timeout_error(message, [droplet("shop-prod-app-1", "new")],
                                       project="shop", environment="prod",
                                       wait_timeout=15) is None


def test_a_droplet_stuck_in_new_is_named_with_what_to_do() -> None:
    found = [droplet("shop-prod-edge-1", id_=1), droplet("shop-prod-app-1", "new", id_=2),
             droplet("shop-other-app-1", "new", id_=3)]  # not this environment's
    error = failures.wait_timeout_error(MODULE_FAILED, found, project="shop",
                                        environment="prod", wait_timeout=15)
    assert isinstance(error, ProviderError) and error.exit_code == 8
    assert error.message == ("droplet shop-prod-app-1 (host app-1) stayed in status `new` "
                             "for more than 15s: DigitalOcean has not finished creating it")
    assert error.hint == STUCK_HINT


def test_several_stuck_droplets_are_all_named_and_minutes_read_as_minutes() -> None:
    found = [droplet("shop-prod-edge-1", "new", id_=1), droplet("shop-prod-app-1", "new", id_=2)]
    error = failures.stuck_error(found, project="shop", environment="prod", wait_timeout=300)
    assert error.message.startswith(
        "droplets shop-prod-app-1 (host app-1), shop-prod-edge-1 (host edge-1) stayed in "
        "status `new` for more than 5m: DigitalOcean has not finished creating them")
    assert "now 5m" in (error.hint or "") and "look at them" in (error.hint or "")


def test_a_timeout_with_no_droplet_in_new_says_what_was_waited_for() -> None:
    found = [droplet("shop-prod-edge-1", id_=1), droplet("shop-prod-app-1", "off", id_=2)]
    error = failures.wait_timeout_error(
        "localhost: Power off the droplets that change size failed: Wait for Droplet action "
        "timeout", found, project="shop", environment="prod", wait_timeout=60)
    assert error is not None
    assert error.message == (
        "a droplet did not finish an action (power on, power off or resize) within 60s; "
        "not active now: shop-prod-app-1 (host app-1) in status `off`")
    status = failures.wait_timeout_error("Wait for Droplet [active] status timeout", [],
                                         project="shop", environment="prod", wait_timeout=60)
    assert status is not None and status.message == "a droplet did not reach status active within 60s"


# ---------------------------------------------------- plan and records of `new`


def test_a_droplet_in_new_is_waited_for_by_the_plan() -> None:
    tags = ["stagecraft", "stagecraft-shop-prod", "stagecraft-shop-prod--app"]
    found = Found(droplets=[droplet("shop-prod-app-1", "new", tags=tags)])
    spec = FleetSpec(project="shop", environment="prod", hosts=(HostSpec("app-1", ("app",)),))
    plan = plan_up(spec, Settings(region="fra1"), found, failures_key())
    waits = [c for c in plan.changes if c.kind == "droplet"]
    assert [(c.name, c.action) for c in waits] == [("shop-prod-app-1", "wait")]
    assert "still creating it" in waits[0].detail


def failures_key() -> str:
    return ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA "
            "test")


@pytest.mark.parametrize(("status", "state"), [("active", RUNNING), ("new", CREATING),
                                                ("off", STOPPED), ("archive", STOPPED)])
def test_a_droplets_status_is_its_hosts_state(status: str, state: str) -> None:
    assert _record(droplet("shop-prod-app-1", status), "app-1", ("app",), "root", None,
                   True).state == state


# -------------------------------------------------------------- report.py


def test_volumes_name_their_droplet_host_and_config_volume() -> None:
    droplets = [droplet("shop-prod-edge-1", id_=7)]
    volumes = [
        {"id": "v-2", "name": "shop-prod-old-data", "size_gigabytes": 5, "droplet_ids": []},
        {"id": "v-1", "name": "shop-prod-edge-1-pgdata", "size_gigabytes": 20,
         "droplet_ids": [7]},
        {"id": "v-3", "name": "shop-prod-x", "size_gigabytes": 1, "droplet_ids": [99]},
    ]
    rows = report.volume_statuses(SPEC, volumes, droplets)
    assert rows == (
        VolumeStatus(name="shop-prod-edge-1-pgdata", size_gb=20, host="edge-1",
                     attached_to="shop-prod-edge-1", volume="pgdata", provider_id="v-1",
                     device="/dev/disk/by-id/scsi-0DO_Volume_shop-prod-edge-1-pgdata"),
        VolumeStatus(name="shop-prod-old-data", size_gb=5, host=None, attached_to=None,
                     volume=None, provider_id="v-2",
                     device="/dev/disk/by-id/scsi-0DO_Volume_shop-prod-old-data"),
        VolumeStatus(name="shop-prod-x", size_gb=1, host=None, attached_to="droplet 99",
                     volume=None, provider_id="v-3",
                     device="/dev/disk/by-id/scsi-0DO_Volume_shop-prod-x"),
    )


@pytest.mark.parametrize(("rule", "text"), [
    ({"protocol": "tcp", "ports": "80", "sources": {"addresses": ["0.0.0.0/0", "::/0"]}},
     "tcp 80 from 0.0.0.0/0, ::/0"),
    ({"protocol": "udp", "ports": "0", "sources": {"tags": ["stagecraft-shop-prod"]}},
     "udp all from tag stagecraft-shop-prod"),
    ({"protocol": "icmp", "sources": {"droplet_ids": [4], "load_balancer_uids": ["lb"]}},
     "icmp from droplet 4, load balancer lb"),
    ({"protocol": "tcp", "ports": "8000-9000", "sources": {}}, "tcp 8000-9000 from nowhere"),
])
def test_an_inbound_rule_is_one_line(rule: dict, text: str) -> None:
    assert report.rule_text(rule) == text


def test_firewalls_count_the_droplets_they_apply_to_by_tag_or_id() -> None:
    droplets = [droplet("shop-prod-edge-1", id_=1, tags=["stagecraft-shop-prod",
                                                        "stagecraft-shop-prod--edge"]),
                droplet("shop-prod-app-1", id_=2, tags=["stagecraft-shop-prod"])]
    firewalls = [
        {"id": "f-2", "name": "stagecraft-shop-prod--edge", "status": "succeeded",
         "tags": ["stagecraft-shop-prod--edge"], "droplet_ids": [1],
         "inbound_rules": [{"protocol": "tcp", "ports": "443",
                            "sources": {"addresses": ["0.0.0.0/0"]}}]},
        {"id": "f-1", "name": "stagecraft-shop-prod", "status": "waiting",
         "tags": ["stagecraft-shop-prod"], "droplet_ids": [],
         "inbound_rules": [{"protocol": "tcp", "ports": "0",
                            "sources": {"tags": ["stagecraft-shop-prod"]}}]},
    ]
    rows = report.firewall_statuses(firewalls, droplets)
    assert rows == (
        FirewallStatus(name="stagecraft-shop-prod", status="waiting", droplets=2,
                       tags=("stagecraft-shop-prod",),
                       inbound=("tcp all from tag stagecraft-shop-prod",), provider_id="f-1"),
        FirewallStatus(name="stagecraft-shop-prod--edge", status="succeeded", droplets=1,
                       tags=("stagecraft-shop-prod--edge",),
                       inbound=("tcp 443 from 0.0.0.0/0",), provider_id="f-2"),
    )
    assert rows[0].to_dict()["inbound"] == ["tcp all from tag stagecraft-shop-prod"]


def test_a_cloud_without_resources_reports_none(tmp_path: Path) -> None:
    class Plain:
        pass

    class Reporting:
        def resources(self, spec, state_dir):
            return CloudResources(volumes=(VolumeStatus("v", 1, "h", "m"),))

    assert cloud_resources(Plain(), SPEC, tmp_path) == CloudResources()
    assert cloud_resources(Plain(), SPEC, tmp_path).to_dict() == {"volumes": [],
                                                                   "firewalls": []}
    assert cloud_resources(Reporting(), SPEC, tmp_path).volumes[0].name == "v"


def test_the_ssh_cloud_reports_no_resources_and_the_others_do() -> None:
    from stagecraft.providers.cloud.base import ResourceReporter
    from stagecraft.providers.cloud.local.provider import LocalCloud
    from stagecraft.providers.cloud.ssh.provider import SshCloud

    assert not issubclass(SshCloud, ResourceReporter)
    assert issubclass(LocalCloud, ResourceReporter)
    assert issubclass(DigitalOceanCloud, ResourceReporter)


def test_the_local_clouds_loop_volumes_are_listed_per_host() -> None:
    from stagecraft.providers.cloud.local import loopdev

    record = {"db-1": {"pgdata": {"file": "/s/volumes/db-1/pgdata.img", "loop": "/dev/loop3",
                                  "size_bytes": 2 * loopdev.GIB,
                                  "device": loopdev.device_path("pgdata")}}}
    spec = FleetSpec(project="shop", environment="local", hosts=(HostSpec("db-1", ("db",)),))
    (row,) = loopdev.volume_statuses(spec, record)
    assert (row.name, row.size_gb, row.host, row.volume, row.provider_id, row.device) == (
        "db-1/pgdata", 2, "db-1", "pgdata", "/s/volumes/db-1/pgdata.img", "/dev/loop3")
    assert row.attached_to and row.attached_to.endswith("db-1")


# ------------------------------------------------ wait_timeout, config to role


def test_wait_timeout_is_a_duration_passed_on_in_seconds(tmp_path: Path) -> None:
    from stagecraft.config.loader import load_config
    from stagecraft.hosts.fleet import cloud_for

    config = tmp_path / "stagecraft.yml"
    base = ("version: 1\nproject: {name: shop}\nproviders:\n  cloud: {kind: digitalocean, "
            "token: '${secret:DO_TOKEN}', region: fra1%s}\nservices:\n  web: {image: "
            "'nginx:1', port: 80, healthcheck: {path: /}, on: [app]}\nenvironments:\n"
            "  prod: {hosts: [{name: app-1, roles: [app]}]}\n")
    config.write_text(base % "")
    assert cloud_for(load_config(config).environment("prod")).wait_timeout == 300
    config.write_text(base % ", wait_timeout: 2m")
    cloud = cloud_for(load_config(config).environment("prod"))
    assert isinstance(cloud, DigitalOceanCloud) and cloud.wait_timeout == 120
    for bad, expected in (("5s", "expected a duration from 10s to 1h, got '5s'"),
                          ("15", "expected a duration with a unit")):
        config.write_text(base % f", wait_timeout: {bad}")
        with pytest.raises(ConfigError) as raised:
            load_config(config)
        assert "wait_timeout" in str(raised.value) and expected in str(raised.value)


def test_the_role_gets_the_wait_timeout(tmp_path: Path) -> None:
    seen: dict = {}
    cloud = DigitalOceanCloud(token="a-token-never-sent", region="fra1", wait_timeout=14.2,
                              api_url="http://127.0.0.1:9/v2")

    def provisioner(playbook, variables, state_dir, log):
        seen.update(variables)

    from stagecraft.providers.cloud.base import StateFiles

    cloud._apply({"digitalocean_state": "present"}, StateFiles(tmp_path), print, provisioner)
    assert seen["digitalocean_wait_timeout"] == 15


# ------------------------------------------------------- up against the twin


@pytest.fixture
def twin(tmp_path: Path):
    from tests.unit.test_do_twin_api import RunningTwin

    running = RunningTwin(tmp_path / "twin", tmp_path / "record.jsonl")
    yield running
    running.terminate()


def test_up_names_a_droplet_stuck_in_new_and_records_nothing(tmp_path: Path, twin) -> None:
    from tests.unit.test_do_twin_api import TOKEN

    spec = FleetSpec(project="shop", environment="prod", hosts=(HostSpec("app-1", ("app",)),))
    cloud = DigitalOceanCloud(token=TOKEN, region="fra1", api_url=twin.url, wait_timeout=15)
    twin.ok("POST", "/_twin/faults", {"droplet_stuck": True}, 201)
    state = tmp_path / "state"

    def module_gives_up(playbook, variables, state_dir, log):
        # What the role does: the droplet is created, then the module waits in vain.
        item = variables["digitalocean_droplets"][0]
        twin.ok("POST", "droplets", {"name": item["name"], "size": item["size"],
                                     "region": "fra1", "image": "debian-12-x64",
                                     "tags": item["tags"]}, 202)
        raise RunFailed(MODULE_FAILED, hint="events and output are in /runs/x")

    with pytest.raises(ProviderError) as raised:
        cloud.up(spec, state, provisioner=module_gives_up)
    assert raised.value.message == (
        "droplet shop-prod-app-1 (host app-1) stayed in status `new` for more than 15s: "
        "DigitalOcean has not finished creating it")
    assert raised.value.hint == f"{STUCK_HINT} (events and output are in /runs/x)"
    assert not (state / "hosts.json").exists()
    (record,) = cloud.status(spec, state)
    assert record.state == CREATING

    # Another run: the plan waits for it; when the module still gives up, the same error.
    plan = cloud.plan(spec, state)
    assert [(c.kind, c.action) for c in plan.changes if c.kind == "droplet"] == [
        ("droplet", "wait")]

    def still_new(playbook, variables, state_dir, log):
        raise RunFailed(MODULE_FAILED.replace("items failed: item shop-prod-app-1: ", ""))

    with pytest.raises(ProviderError, match="stayed in status `new`"):
        cloud.up(spec, state, provisioner=still_new)
    # A run that succeeds while the droplet is somehow still new records nothing either.
    with pytest.raises(ProviderError, match="stayed in status `new`"):
        cloud.up(spec, state, provisioner=lambda *args: None)
    assert not (state / "hosts.json").exists()


def test_a_failure_that_is_not_a_wait_stays_the_runs_failure(tmp_path: Path, twin) -> None:
    from tests.unit.test_do_twin_api import TOKEN

    spec = FleetSpec(project="shop", environment="prod", hosts=(HostSpec("app-1", ("app",)),))
    cloud = DigitalOceanCloud(token=TOKEN, region="fra1", api_url=twin.url, wait_timeout=15)

    def fails(playbook, variables, state_dir, log):
        raise RunFailed("localhost: Create the volumes failed: boom")

    with pytest.raises(RunFailed, match="boom"):
        cloud.up(spec, tmp_path / "state", provisioner=fails)
