"""`stagecraft status` and `lock status`: the reports and their text."""

from __future__ import annotations

import json
import os
import socket

from stagecraft.config.loader import load_config_text
from stagecraft.hosts.lock import LockInfo
from stagecraft.ops.locks import lock_lines, lock_report
from stagecraft.ops.status import status_lines, status_report
from stagecraft.hosts.probe import ContainerFacts, HostFacts

CONFIG = """
version: 1
project: {name: shop}
services:
  web: {image: example/web:1, port: 8080, on: [app], routes: [{host: shop.localhost}],
        healthcheck: {path: /up}}
  worker: {image: example/web:1, on: [worker]}
environments:
  local:
    hosts: [{name: h1, roles: [edge, app]}, {name: h2, roles: [app, worker]}]
"""


def web(name: str, health: str = "healthy", state: str = "running") -> ContainerFacts:
    return ContainerFacts(name=name, service="web", state=state, health=health,
                          image="example/web:1", config_hash="abc", strategy="rolling",
                          release="")


def dead_lock() -> LockInfo:
    # A process of this machine that is gone: this one's pid after it exited is not
    # knowable, so take a pid beyond the kernel's limit.
    return LockInfo(holder=f"me@{socket.gethostname()}", pid=2**22 + 1,
                    time="2026-01-01T00:00:00Z", release="R2", message="hot fix")


def test_report_has_every_host_its_services_and_the_primary_lock() -> None:
    env = load_config_text(CONFIG).environment("local")
    facts = {
        "h1": HostFacts("h1", True, current_release="R1", containers=(web("shop-local-web-1"),),
                        traefik_running=True, lock=dead_lock(),
                        routes=({"name": "web@file", "rule": "Host(`shop.localhost`)",
                                 "status": "enabled", "service": "web-backends"},)),
        "h2": HostFacts("h2", False, error="Connection refused"),
    }
    report = json.loads(json.dumps(status_report(env, facts)))
    assert [h["host"] for h in report["hosts"]] == ["h1", "h2"]
    assert report["hosts"][0]["services"] == ["web"]
    assert report["hosts"][1]["services"] == ["web", "worker"]
    assert report["hosts"][1]["reachable"] is False
    assert report["lock"]["held"] is True and report["lock"]["stale"] is True
    assert report["lock"]["host"] == "h1"
    text = "\n".join(status_lines(report))
    assert "h1 (edge, app): release R1, traefik running, 1 routes" in text
    assert "shop-local-web-1" in text and "running healthy" in text
    assert "h2 (app, worker): UNREACHABLE - Connection refused" in text
    assert "STALE" in text


def test_missing_containers_and_lock_of_an_unreachable_primary() -> None:
    env = load_config_text(CONFIG).environment("local")
    facts = {"h1": HostFacts("h1", False, error="timed out"),
             "h2": HostFacts("h2", True, current_release="R1",
                             containers=(web("shop-local-web-2", "unhealthy"),))}
    report = status_report(env, facts)
    assert report["lock"]["held"] is None
    text = "\n".join(status_lines(report))
    assert "worker  NO CONTAINERS" in text
    assert "running unhealthy" in text
    assert "lock: unknown (primary host h1 unreachable)" in text


def test_lock_report_and_text() -> None:
    assert lock_report(None, "h1") == {"held": False, "host": "h1"}
    assert lock_lines(lock_report(None, "h1")) == [
        "the deploy lock is not held (primary host h1)"]
    alive = LockInfo(holder=f"me@{socket.gethostname()}", pid=os.getpid(),
                     time="2026-01-01T00:00:00Z", release="R2")
    report = lock_report(alive, "h1")
    assert report["held"] and report["pid"] == os.getpid() and report["stale"] is False
    assert report["age_seconds"] > 0
    text = "\n".join(lock_lines(report))
    assert "stale:   no" in text and "deploy of R2" in text
    stale = "\n".join(lock_lines(lock_report(dead_lock(), "h1")))
    assert "message: hot fix" in stale and "stagecraft lock release" in stale


def test_each_hosts_tailnet_address_and_whether_it_is_connected() -> None:
    from stagecraft.hosts.probe import parse_probe_output, probe_script

    # What `tailscale status --json --peers=false` prints, on one line.
    joined = json.dumps({"BackendState": "Running", "Self": {
        "TailscaleIPs": ["100.64.0.2", "fd7a:115c:a1e0::2"], "DNSName": "h1.mesh.internal.",
        "Online": True}})
    logged_out = json.dumps({"BackendState": "NeedsLogin", "Self": {"TailscaleIPs": None}})
    script = probe_script("shop", "local")
    assert "@@stagecraft-probe:tailnet" in script and "tailscale status --json" in script

    def output(tailnet: str) -> str:
        return ("@@stagecraft-probe:current\n@@stagecraft-probe:tailnet\n"
                f"{tailnet}\n@@stagecraft-probe:end\n")

    h1, h2 = parse_probe_output(output(joined), "h1"), parse_probe_output(output(logged_out), "h2")
    assert (h1.tailnet.ipv4, h1.tailnet.dns_name, h1.tailnet.connected) == (
        "100.64.0.2", "h1.mesh.internal", True)
    assert (h2.tailnet.ipv4, h2.tailnet.connected) == (None, False)
    assert parse_probe_output(output(""), "h3").tailnet is None  # no tailscale there

    env = load_config_text(CONFIG).environment("local")
    report = json.loads(json.dumps(status_report(env, {"h1": h1, "h2": h2})))
    assert report["hosts"][0]["tailnet"]["ipv4"] == "100.64.0.2"
    text = "\n".join(status_lines(report))
    assert "  tailnet: 100.64.0.2 h1.mesh.internal connected" in text
    assert "  tailnet: - NOT CONNECTED (NeedsLogin)" in text
