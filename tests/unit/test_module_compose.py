"""The rollout module's pure helpers (module_utils/_compose.py): reading what
`docker compose config --format json` and `docker inspect` print, and deciding
what each service needs. The JSON below was printed by Compose 2.26.1 and Docker
26.1.5 on a fleet host (Debian trixie), for the rollout scenario's compose file.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "collections"))

from ansible_collections.stagecraft.platform.plugins.module_utils._compose import (  # noqa: E402
    CREATED,
    KEPT,
    RECREATED,
    ROLLED,
    UNCHANGED,
    ComposeConfigError,
    Container,
    DesiredService,
    decide,
    orphan_services,
    parse_compose_config,
    parse_inspect,
    releases_to_prune,
    service_order,
)

COMPOSE_CONFIG = {
    "name": "demo-staging",
    "networks": {"default": {"name": "demo-staging_default", "ipam": {}},
                 "stagecraft": {"name": "stagecraft", "ipam": {}, "external": True}},
    "services": {
        "store": {
            "command": None, "deploy": {"replicas": 1, "resources": {}, "placement": {}},
            "entrypoint": None, "environment": {"PORT": "9100"},
            "image": "stagecraft-molecule/rollout-dev:v1",
            "labels": {"stagecraft.config-hash": "fa16b5f7afab727a",
                       "stagecraft.service": "store", "stagecraft.strategy": "stateful"},
            "networks": {"default": None}, "restart": "unless-stopped",
            "stop_grace_period": "5s"},
        "web": {
            "command": None, "deploy": {"replicas": 2, "resources": {}, "placement": {}},
            "entrypoint": None, "environment": {"PORT": "8080", "SCENARIO_SECRET": "sec-v1"},
            "healthcheck": {"test": ["CMD-SHELL", "test ! -e /tmp/stagecraft-drain && python3 -c "
                                     "\"import urllib.request; urllib.request.urlopen("
                                     "'http://127.0.0.1:8080/up', timeout=2)\""],
                            "timeout": "2s", "interval": "1s", "retries": 2, "start_period": "3s"},
            "image": "stagecraft-molecule/rollout-dev:v1",
            "labels": {"stagecraft.config-hash": "30f242bd8faecee3",
                       "stagecraft.project": "demo-staging", "stagecraft.service": "web",
                       "stagecraft.strategy": "rolling", "traefik.enable": "true"},
            "networks": {"default": None, "stagecraft": None}, "restart": "unless-stopped",
            "stop_grace_period": "5s"},
        "worker": {
            "command": None, "deploy": {"replicas": 1, "resources": {}, "placement": {}},
            "depends_on": {"store": {"condition": "service_started", "required": True}},
            "entrypoint": None, "environment": {"PORT": "9000"},
            "image": "stagecraft-molecule/rollout-dev:v1",
            "labels": {"stagecraft.config-hash": "787341ec93245475",
                       "stagecraft.service": "worker", "stagecraft.strategy": "recreate"},
            "networks": {"default": None}, "restart": "unless-stopped",
            "stop_grace_period": "5s"},
    },
}

WEB_INSPECT = {
    "Id": "820dba3efb2e0d10f1d99ee9291a18c86cd729bcd318fc886a0dd0fcc12bbfba",
    "Name": "/demo-staging-web-5",
    "RestartCount": 0,
    "State": {"Status": "running", "Running": True, "ExitCode": 0,
              "Health": {"Status": "healthy", "FailingStreak": 0, "Log": [
                  {"Start": "2026-11-21T07:48:37.978486499Z", "ExitCode": 0, "Output": ""},
                  {"Start": "2026-11-21T07:48:39.135364084Z", "ExitCode": 0, "Output": ""}]}},
    "Config": {
        "Labels": {
            "com.docker.compose.container-number": "5",
            "com.docker.compose.oneoff": "False",
            "com.docker.compose.project": "demo-staging",
            "com.docker.compose.service": "web",
            "com.docker.compose.version": "2.26.1",
            "stagecraft.config-hash": "30f242bd8faecee3",
            "stagecraft.service": "web",
            "stagecraft.strategy": "rolling"},
        "Healthcheck": {"Test": ["CMD-SHELL", "test ! -e /tmp/stagecraft-drain && true"],
                        "Interval": 1000000000, "Timeout": 2000000000,
                        "StartPeriod": 3000000000, "Retries": 2},
        "StopTimeout": 5},
}

WORKER_INSPECT = {
    "Id": "ac5b903f6d8b4649264fe278b7cee45debdb0a681e287bd95341300a933cc6b5",
    "Name": "/demo-staging-worker-1",
    "RestartCount": 0,
    "State": {"Status": "running", "Running": True, "ExitCode": 0},
    "Config": {
        "Labels": {
            "com.docker.compose.container-number": "1",
            "com.docker.compose.oneoff": "False",
            "com.docker.compose.project": "demo-staging",
            "com.docker.compose.service": "worker",
            "stagecraft.config-hash": "787341ec93245475",
            "stagecraft.strategy": "recreate"},
        "Healthcheck": None,
        "StopTimeout": 5},
}


def config_text(**changes: dict) -> str:
    document = copy.deepcopy(COMPOSE_CONFIG)
    for service, fields in changes.items():
        document["services"][service].update(fields)
    return json.dumps(document)


def container(service: str = "web", config_hash: str = "h1", status: str = "running",
              health: str = "healthy", **fields: object) -> Container:
    return Container(id=f"{service}-{config_hash}-{status}-{health}-{len(fields)}",
                     name=f"p-{service}-1", service=service, number=1,
                     config_hash=config_hash, status=status, health=health, **fields)


def desired(strategy: str = "rolling", replicas: int = 2, config_hash: str = "h1") -> DesiredService:
    return DesiredService(name="web", image="img:1", strategy=strategy, config_hash=config_hash,
                          replicas=replicas, has_healthcheck=strategy == "rolling")


# --------------------------------------------------------------- compose config


def test_compose_config_gives_each_service_its_strategy_hash_and_replicas() -> None:
    services = parse_compose_config(json.dumps(COMPOSE_CONFIG))
    assert services == {
        "store": DesiredService("store", "stagecraft-molecule/rollout-dev:v1", "stateful",
                                "fa16b5f7afab727a", 1, False, ()),
        "web": DesiredService("web", "stagecraft-molecule/rollout-dev:v1", "rolling",
                              "30f242bd8faecee3", 2, True, ()),
        "worker": DesiredService("worker", "stagecraft-molecule/rollout-dev:v1", "recreate",
                                 "787341ec93245475", 1, False, ("store",)),
    }


def test_a_service_without_deploy_replicas_runs_one_and_a_disabled_healthcheck_counts_as_none() -> None:
    services = parse_compose_config(config_text(web={"deploy": {}, "healthcheck": {
        "test": ["CMD", "true"], "disable": True}}))
    assert services["web"].replicas == 1
    assert services["web"].has_healthcheck is False


def test_labels_in_list_form_are_read_too() -> None:
    services = parse_compose_config(config_text(worker={"labels": [
        "stagecraft.config-hash=787341ec93245475", "stagecraft.strategy=recreate"]}))
    assert services["worker"].strategy == "recreate"
    assert services["worker"].config_hash == "787341ec93245475"


@pytest.mark.parametrize(("labels", "expected"), [
    ({"stagecraft.config-hash": "abc"}, "service web needs the label stagecraft.strategy"),
    ({"stagecraft.strategy": "blue-green", "stagecraft.config-hash": "abc"},
     "one of rolling, recreate, stateful (got 'blue-green')"),
    ({"stagecraft.strategy": "rolling"}, "service web needs the label stagecraft.config-hash"),
    ({"stagecraft.strategy": "rolling", "stagecraft.config-hash": "has space"},
     "stagecraft.config-hash"),
])
def test_a_service_without_usable_labels_is_refused_with_what_to_set(
        labels: dict, expected: str) -> None:
    with pytest.raises(ComposeConfigError, match="^releases/x/compose.yml: ") as caught:
        parse_compose_config(config_text(web={"labels": labels}), source="releases/x/compose.yml")
    assert expected in str(caught.value)


ROUTED = {"stagecraft.strategy": "rolling", "stagecraft.config-hash": "30f242bd8faecee3",
          "stagecraft.traefik.service": "demo-staging-web", "stagecraft.traefik.port": "8080",
          "stagecraft.traefik.load-balancer": '{"passHostHeader":true}'}


def test_a_routed_service_gives_its_traefik_service_port_and_balancer() -> None:
    web = parse_compose_config(config_text(web={"labels": ROUTED}))["web"]
    assert (web.routed, web.traefik_service, web.traefik_port) == (True, "demo-staging-web", 8080)
    assert web.traefik_balancer == {"passHostHeader": True}
    worker = parse_compose_config(config_text())["worker"]
    assert (worker.routed, worker.traefik_service, worker.traefik_port) == (False, "", 0)


@pytest.mark.parametrize(("change", "expected"), [
    ({"stagecraft.traefik.port": "http"}, "label stagecraft.traefik.port is 'http'"),
    ({"stagecraft.traefik.port": "70000"}, "label stagecraft.traefik.port is '70000'"),
    ({"stagecraft.traefik.service": "web/x"}, "label stagecraft.traefik.service 'web/x'"),
    ({"stagecraft.traefik.load-balancer": "{"}, "load-balancer is not JSON"),
    ({"stagecraft.traefik.load-balancer": '{"servers": []}'}, "without servers"),
])
def test_a_routed_service_with_unusable_routing_labels_is_refused(change: dict,
                                                                  expected: str) -> None:
    with pytest.raises(ComposeConfigError, match="service web") as caught:
        parse_compose_config(config_text(web={"labels": {**ROUTED, **change}}))
    assert expected in str(caught.value)


def test_a_service_without_image_or_with_bad_replicas_is_refused() -> None:
    with pytest.raises(ComposeConfigError, match="service web has no image"):
        parse_compose_config(config_text(web={"image": None}))
    with pytest.raises(ComposeConfigError, match="deploy.replicas -1"):
        parse_compose_config(config_text(web={"deploy": {"replicas": -1}}))


def test_output_that_is_not_a_compose_config_is_refused() -> None:
    with pytest.raises(ComposeConfigError, match="gave no JSON"):
        parse_compose_config("WARN[0000] something\n{")
    with pytest.raises(ComposeConfigError, match="gave no JSON object"):
        parse_compose_config('["services"]')
    with pytest.raises(ComposeConfigError, match="services is not a mapping"):
        parse_compose_config('{"services": ["web"]}')


def test_a_host_that_runs_no_service_has_none_to_pull_or_roll() -> None:
    assert parse_compose_config('{"name": "shop", "services": {}}') == {}
    assert parse_compose_config('{"name": "shop"}') == {}


def test_the_secret_environment_never_reaches_the_parsed_services() -> None:
    # compose config merges env files into `environment`: only what the rollout
    # needs is kept, so nothing secret can travel into the module's result.
    services = parse_compose_config(json.dumps(COMPOSE_CONFIG))
    assert "sec-v1" not in repr(services)


# --------------------------------------------------------------------- inspect


def test_docker_inspect_gives_state_health_and_probe_timing() -> None:
    web, worker = parse_inspect(json.dumps([WEB_INSPECT, WORKER_INSPECT]))
    assert (web.name, web.service, web.number, web.config_hash) == (
        "demo-staging-web-5", "web", 5, "30f242bd8faecee3")
    assert (web.status, web.health, web.ready) == ("running", "healthy", True)
    assert (web.health_interval, web.health_timeout, web.health_retries) == (1.0, 2.0, 2)
    assert (worker.health, worker.ready) == ("", True)


def test_healthcheck_defaults_apply_when_docker_leaves_them_at_zero() -> None:
    data = copy.deepcopy(WEB_INSPECT)
    data["Config"]["Healthcheck"] = {"Test": ["CMD", "true"]}
    (web,) = parse_inspect(json.dumps([data]))
    assert (web.health_interval, web.health_timeout, web.health_retries) == (30.0, 30.0, 3)


def test_a_healthcheck_switched_off_in_the_image_counts_as_none() -> None:
    data = copy.deepcopy(WEB_INSPECT)
    data["Config"]["Healthcheck"] = {"Test": ["NONE"]}
    (web,) = parse_inspect(json.dumps([data]))
    assert web.health == "" and web.ready


def test_one_off_containers_are_left_out_and_long_probe_outputs_cut() -> None:
    oneoff = copy.deepcopy(WORKER_INSPECT)
    oneoff["Config"]["Labels"]["com.docker.compose.oneoff"] = "True"
    failing = copy.deepcopy(WEB_INSPECT)
    failing["State"]["Health"] = {"Status": "unhealthy", "Log": [
        {"ExitCode": 1, "Output": f"probe {n}: " + "x" * 1000 + " HTTP Error 500"} for n in range(5)]}
    (web,) = parse_inspect(json.dumps([oneoff, failing]))
    assert web.health == "unhealthy" and not web.ready
    assert len(web.health_outputs) == 3
    assert all(len(out) == 300 and out.endswith("HTTP Error 500") for out in web.health_outputs)


def test_exited_and_restarting_containers_are_not_ready() -> None:
    assert not container(status="exited").ready
    assert not container(status="restarting").ready
    assert not container(health="starting").ready
    assert container(health="").ready


# ---------------------------------------------------------------------- decide


def test_a_rolling_service_that_runs_as_desired_is_unchanged() -> None:
    assert decide(desired(), [container(), container()]) == UNCHANGED


def test_a_rolling_service_rolls_on_a_new_hash_a_new_count_or_an_unhealthy_container() -> None:
    assert decide(desired(), [container(config_hash="old"), container()]) == ROLLED
    assert decide(desired(replicas=3), [container(), container()]) == ROLLED
    assert decide(desired(), [container(), container(health="unhealthy")]) == ROLLED


def test_a_service_with_no_running_container_is_created() -> None:
    assert decide(desired(), []) == CREATED
    assert decide(desired(), [container(status="exited")]) == CREATED
    assert decide(desired("recreate", 1), []) == CREATED


def test_stopped_leftovers_do_not_make_a_running_service_change() -> None:
    running = [container(), container()]
    assert decide(desired(), running + [container(status="exited")]) == UNCHANGED


def test_a_recreate_service_is_recreated_when_it_differs() -> None:
    worker = desired("recreate", replicas=1)
    assert decide(worker, [container(health="")]) == UNCHANGED
    assert decide(worker, [container(config_hash="old", health="")]) == RECREATED
    assert decide(worker, [container(health=""), container(health="")]) == RECREATED


def test_a_stateful_service_is_kept_unless_forced_and_created_when_missing() -> None:
    store = desired("stateful", replicas=1)
    assert decide(store, []) == CREATED
    assert decide(store, [container(health="")]) == UNCHANGED
    # Unhealthy or not, a stateful container with the desired hash is left alone.
    assert decide(store, [container(health="unhealthy")]) == UNCHANGED
    assert decide(store, [container(config_hash="old", health="")]) == KEPT
    assert decide(store, [container(config_hash="old", health="")], force=True) == RECREATED
    assert decide(store, [container(config_hash="old", status="exited")]) == CREATED


def test_a_service_scaled_to_zero_with_no_container_is_unchanged() -> None:
    assert decide(desired(replicas=0), []) == UNCHANGED


# ------------------------------------------------------------ order, orphans, prune


def test_services_come_after_the_ones_they_depend_on_else_by_name() -> None:
    services = {
        "web": DesiredService("web", "i", "rolling", "h", 1, True, ("api",)),
        "api": DesiredService("api", "i", "rolling", "h", 1, True, ("db", "cache")),
        "db": DesiredService("db", "i", "stateful", "h", 1, False, ()),
        "cache": DesiredService("cache", "i", "stateful", "h", 1, False, ("missing",)),
        "admin": DesiredService("admin", "i", "rolling", "h", 1, True, ()),
    }
    assert service_order(services) == ["admin", "cache", "db", "api", "web"]


def test_a_dependency_cycle_does_not_loop() -> None:
    services = {
        "a": DesiredService("a", "i", "recreate", "h", 1, False, ("b",)),
        "b": DesiredService("b", "i", "recreate", "h", 1, False, ("a",)),
    }
    assert sorted(service_order(services)) == ["a", "b"]


def test_services_running_under_the_project_but_not_in_the_file_are_orphans() -> None:
    services = parse_compose_config(json.dumps(COMPOSE_CONFIG))
    running = [container("web"), container("old-api"), container("old-api"), container("cron")]
    assert orphan_services(services, running) == ["cron", "old-api"]


def test_pruning_keeps_the_newest_releases_and_never_a_protected_one() -> None:
    releases = [f"20261121T10000{n}Z-abc" for n in range(8)] + [".20261121T100009Z-abc.tmp-x"]
    newest = releases[3:8]
    assert releases_to_prune(releases, 5, set()) == releases[:3]
    assert releases_to_prune(releases, 5, {releases[0]}) == releases[1:3]
    assert releases_to_prune(list(reversed(newest)), 5, set()) == []
    assert releases_to_prune(releases[:8], 1, {releases[2]}) == [
        r for r in releases[:7] if r != releases[2]]
