"""A host's probed facts against the ledger's deployed state (stagecraft.deploy.drift)."""

from __future__ import annotations

from stagecraft.deploy.drift import fleet_drift, host_drift
from stagecraft.hosts.probe import ContainerFacts, HostFacts
from stagecraft.render.state import HostState, ServiceState

RELEASE = "20261121T101500Z-3f9c2ab"
DEPLOYED = HostState(services={
    "web": ServiceState(name="web", image="r/web:1", config_hash="aaa", strategy="rolling",
                        replicas=2),
    "worker": ServiceState(name="worker", image="r/web:1", config_hash="bbb",
                           strategy="recreate", replicas=1),
}, traefik_hash="t1")


def container(name: str, service: str, config_hash: str, state: str = "running",
              health: str = "healthy") -> ContainerFacts:
    return ContainerFacts(name=name, service=service, state=state, health=health,
                          image="r/web:1", config_hash=config_hash, strategy="rolling",
                          release="")


def facts(*containers: ContainerFacts, traefik: bool = True, current: str | None = RELEASE,
          reachable: bool = True) -> HostFacts:
    return HostFacts(host="local-1", reachable=reachable, current_release=current,
                     containers=containers, traefik_running=traefik,
                     error="" if reachable else "ssh: connect refused")


MATCHING = (container("web-1", "web", "aaa"), container("web-2", "web", "aaa"),
            container("worker-1", "worker", "bbb", health=""))


def test_a_host_running_the_deployed_state_has_no_drift() -> None:
    assert host_drift(DEPLOYED, facts(*MATCHING), RELEASE) == []


def test_every_difference_is_named() -> None:
    assert host_drift(DEPLOYED, facts(*MATCHING[:1], MATCHING[2]), RELEASE) == [
        "service web: 1 of 2 running"]
    changed = (MATCHING[0], container("web-2", "web", "zzz"), MATCHING[2])
    assert host_drift(DEPLOYED, facts(*changed), RELEASE) == [
        "service web: web-2 run another definition"]
    stopped = (*MATCHING[:2], container("worker-1", "worker", "bbb", state="exited"))
    assert host_drift(DEPLOYED, facts(*stopped), RELEASE) == ["service worker: 0 of 1 running"]
    extra = (*MATCHING, container("cron-1", "cron", "ccc"))
    assert host_drift(DEPLOYED, facts(*extra), RELEASE) == [
        "services not in the release run: cron"]
    assert host_drift(DEPLOYED, facts(*MATCHING, traefik=False), RELEASE) == [
        "Traefik is not running"]
    assert host_drift(DEPLOYED, facts(*MATCHING, current="20261120T000000Z-1111111"),
                      RELEASE) == [f"current release is 20261120T000000Z-1111111, recorded {RELEASE}"]
    sick = (container("web-1", "web", "aaa", health="unhealthy"), *MATCHING[1:])
    assert host_drift(DEPLOYED, facts(*sick), RELEASE) == ["service web: unhealthy"]


def test_an_unreachable_or_unrecorded_host_always_differs() -> None:
    assert host_drift(DEPLOYED, facts(reachable=False), RELEASE) == [
        "unreachable: ssh: connect refused"]
    assert host_drift(None, facts(*MATCHING), RELEASE) == ["no release recorded for it"]
    assert host_drift(DEPLOYED, None, RELEASE) == ["not probed"]


def test_fleet_drift_lists_only_the_hosts_that_differ() -> None:
    found = fleet_drift({"local-1": DEPLOYED, "local-2": DEPLOYED},
                        {"local-1": facts(*MATCHING),
                         "local-2": facts(*MATCHING, traefik=False)},
                        {"local-1": RELEASE, "local-2": RELEASE})
    assert found == {"local-2": ["Traefik is not running"]}
