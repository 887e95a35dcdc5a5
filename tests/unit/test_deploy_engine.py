"""Pure parts of the deploy engine: outcomes from events, the run request, images, the lock."""

from __future__ import annotations

import json
import os
import socket

from stagecraft.config.loader import load_config_text
from stagecraft.deploy.images import keep_same_images
from stagecraft.deploy.outcome import fold_outcomes, phase_of, switched_hosts
from stagecraft.deploy.request import RegistryLogin, file_list, release_request
from stagecraft.hosts.lock import LockInfo
from stagecraft.providers.cloud.base import HostRecord, SshAccess
from stagecraft.render.state import HostRender, HostState, RenderedFile, ServiceState

CONFIG = """
version: 1
project: {name: shop}
services:
  web:
    image: example/web:1
    port: 8080
    healthcheck: {path: /up}
    on: [app]
    routes: [{host: shop.localhost}]
environments:
  local:
    hosts: [{name: h1, roles: [edge, app]}, {name: h2, roles: [app]}]
    rollout: {batch: 1, health_timeout: 30s, drain: 2s}
"""


def event(kind, play, host, task="t", res=None, action="ansible.builtin.command", duration=1.0):
    return {"event": kind, "event_data": {"play": play, "host": host, "task": task,
                                          "res": res or {}, "resolved_action": action,
                                          "duration": duration}}


def test_phase_names_come_from_play_names():
    assert phase_of("phase rollout: roll the services") == "rollout"
    assert phase_of("phase migrate-pre: run migrations") == "migrate-pre"
    assert phase_of("Check the variables") is None


def test_outcomes_per_phase_and_host_and_switched_hosts():
    rollout_ok = {"changed": True, "current": "R1",
                  "services": {"web": {"action": "rolled", "seconds": 3.5}}}
    events = [
        event("runner_on_ok", "phase upload: write", "h1", res={"changed": True}),
        event("runner_on_ok", "phase upload: write", "h2"),
        event("runner_on_ok", "phase rollout: roll", "h1", res=rollout_ok,
              action="stagecraft.platform.compose_rollout", duration=4.0),
        event("runner_on_failed", "phase rollout: roll", "h2", task="Roll the services",
              res={"msg": "web on h2: new containers never became healthy"},
              action="stagecraft.platform.compose_rollout"),
        event("runner_on_ok", "Check the variables", "h1"),
    ]
    phases = fold_outcomes(events)
    assert set(phases) == {"upload", "rollout"}
    assert phases["upload"]["h1"].changed and not phases["upload"]["h2"].changed
    assert phases["rollout"]["h1"].services == {"web": {"action": "rolled", "seconds": 3.5}}
    assert phases["rollout"]["h1"].seconds == 4.0
    failed = phases["rollout"]["h2"]
    assert failed.status == "failed"
    assert "never became healthy" in failed.detail and failed.detail.startswith("Roll the services")
    assert switched_hosts(phases, "R1") == {"h1"}
    assert switched_hosts(phases, "R0") == set()


def test_run_request_keeps_secret_files_out_of_the_inventory():
    env = load_config_text(CONFIG).environment("local")
    records = {n: HostRecord(name=n, roles=("app",), state="running", ssh_host="127.0.0.1",
                             ssh_port=22001 + i, ssh_user="root", private_ip=f"10.0.0.{10 + i}",
                             provider_id=None) for i, n in enumerate(["h1", "h2"])}
    access = SshAccess(user="root", private_key="/k/id", known_hosts="/k/known")  # type: ignore[arg-type]
    state = HostState(services={"web": ServiceState("web", "img@sha256:1", "abc", "rolling", 2)})
    renders = {n: HostRender(host=n, state=state,
                             release_files={"compose.yml": RenderedFile("services: {}\n"),
                                            "env/web.env": RenderedFile("TOKEN=s3cret-value-1\n",
                                                                        0o600, True)},
                             traefik_files={"traefik.yml": RenderedFile("a: 1\n")})
               for n in records}
    request = release_request(
        run_id="r1", playbook="deploy.yml", env=env, records=records, access=access,
        renders=renders, release_id="20261121T101500Z-3f9c2ab", action="deploy",
        performer="me@here", registry=RegistryLogin("10.0.0.128:5000", "stagecraft", "pw-777777"),
        traefik_image="10.0.0.128:5000/traefik:3.7")
    inventory = json.dumps(dict(request.inventory), default=dict)
    assert "s3cret-value-1" not in inventory and "pw-777777" not in inventory
    assert "compose.yml" in inventory
    secrets = request.secret_extravars
    assert secrets["stagecraft_secret_files"]["h2"] == [
        {"path": "env/web.env", "content": "TOKEN=s3cret-value-1\n", "mode": "0600"}]
    assert secrets["stagecraft_registry"]["password"] == "pw-777777"
    assert request.extravars["stagecraft_rollout"] == {"batch": 1, "health_timeout": 30.0,
                                                       "drain": 2.0}
    assert request.extravars["stagecraft_manage_lock"] is False
    assert request.forks == 10  # never fewer than Ansible's usual


def test_every_host_of_a_big_fleet_gets_a_fork():
    hosts = [f"h{i}" for i in range(1, 31)]
    listed = ", ".join(f"{{name: {n}, roles: [app]}}" for n in hosts[1:])
    config = CONFIG.replace("hosts: [{name: h1, roles: [edge, app]}, {name: h2, roles: [app]}]",
                            f"hosts: [{{name: h1, roles: [edge, app]}}, {listed}]")
    env = load_config_text(config).environment("local")
    records = {n: HostRecord(name=n, roles=("app",), state="running", ssh_host="127.0.0.1",
                             ssh_port=22001 + i, ssh_user="root", private_ip=f"10.0.1.{10 + i}",
                             provider_id=None) for i, n in enumerate(hosts)}
    access = SshAccess(user="root", private_key="/k/id", known_hosts="/k/known")  # type: ignore[arg-type]
    renders = {n: HostRender(host=n, state=HostState(services={}), release_files={},
                             traefik_files={}) for n in hosts}
    request = release_request(
        run_id="r1", playbook="deploy.yml", env=env, records=records, access=access,
        renders=renders, release_id="20261121T101500Z-3f9c2ab", action="deploy",
        performer="me@here", registry=None, traefik_image="traefik:3.7")
    # A batch may be the whole fleet: its hosts all work at once.
    assert request.forks == 30


def test_file_list_splits_by_secrecy_and_writes_octal_modes():
    files = {"b": RenderedFile("x", 0o644), "a": RenderedFile("y", 0o600, True)}
    assert file_list(files, secret=False) == [{"path": "b", "content": "x", "mode": "0644"}]
    assert file_list(files, secret=True) == [{"path": "a", "content": "y", "mode": "0600"}]


def test_same_digest_keeps_the_deployed_reference():
    deployed = {"h1": HostState(services={
        "web": ServiceState("web", "reg/shop-web:R1@sha256:aaa", "h", "rolling", 1)})}
    images = {"web": "reg/shop-web:R2@sha256:aaa", "api": "reg/shop-api:R2@sha256:bbb"}
    assert keep_same_images(images, deployed) == {"web": "reg/shop-web:R1@sha256:aaa",
                                                  "api": "reg/shop-api:R2@sha256:bbb"}
    changed = {"web": "reg/shop-web:R2@sha256:ccc"}
    assert keep_same_images(changed, deployed) == changed


def test_lock_info_round_trip_and_staleness():
    info = LockInfo.new("20261121T101500Z-3f9c2ab", "hotfix")
    again = LockInfo.from_json(info.to_json())
    assert again == info and not again.stale
    gone = LockInfo(holder=f"me@{socket.gethostname()}", pid=2**22 + 7, time=info.time,
                    release="r", message="")
    assert gone.stale and "stale" in gone.describe()
    elsewhere = LockInfo(holder="me@other-machine", pid=os.getpid(), time=info.time, release="r")
    assert not elsewhere.stale


def test_a_failed_rollout_carries_health_output_and_log_lines():
    res = {"msg": "service web on host h1: shop-local-web-3 is unhealthy",
           "health": {"shop-local-web-3": ["probe 1", "curl: (22) error: 500"]},
           "logs": {"shop-local-web-3": "line 1\nline 2\nweb: version 4 listening"}}
    phases = fold_outcomes([event("runner_on_failed", "phase rollout: roll", "h1", res=res,
                                  action="stagecraft.platform.compose_rollout")])
    text = phases["rollout"]["h1"].diagnostics
    assert "shop-local-web-3 health: curl: (22) error: 500" in text
    assert "web: version 4 listening" in text and "probe 1" not in text


def test_one_release_call_is_split_into_its_steps_phases():
    ok = {"changed": True, "current": "R1", "services": {"web": {"action": "rolled"}},
          "steps": {"upload": {"changed": True, "seconds": 0.2},
                    "pull": {"changed": False, "seconds": 0.5, "pulled": []},
                    "rollout": {"changed": True, "seconds": 6.0, "current": "R1",
                                "services": {"web": {"action": "rolled"}}}}}
    failed = {"msg": "host h2: cannot pull example/web:2", "step": "pull",
              "steps": {"upload": {"changed": True, "seconds": 0.1},
                        "pull": {"seconds": 3.0}}}
    events = [
        event("runner_on_ok", "phase rollout: roll", "h1", res=ok,
              action="stagecraft.platform.release", duration=7.0),
        event("runner_on_failed", "phase rollout: roll", "h2", task="Upload, pull and roll",
              res=failed, action="stagecraft.platform.release", duration=3.2),
        event("runner_on_ok", "phase rollout: roll", "h1", task="Run Traefik", duration=0.5),
    ]
    phases = fold_outcomes(events)
    assert set(phases) == {"upload", "pull", "rollout"}
    assert phases["upload"]["h1"].changed and phases["upload"]["h1"].seconds == 0.2
    assert phases["pull"]["h1"].status == "ok" and not phases["pull"]["h1"].changed
    # The Traefik task of the play counts toward the rollout, beside the step.
    assert phases["rollout"]["h1"].seconds == 6.5 and phases["rollout"]["h1"].tasks == 2
    assert phases["rollout"]["h1"].services == {"web": {"action": "rolled"}}
    assert switched_hosts(phases, "R1") == {"h1"}
    # The failure belongs to the step that failed; the steps before it went well.
    assert phases["upload"]["h2"].status == "ok"
    assert phases["pull"]["h2"].status == "failed"
    assert "cannot pull example/web:2" in phases["pull"]["h2"].detail
    assert "h2" not in phases["rollout"]
