"""The planner: how each service changes on each host, and which phases run where."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagecraft.plan import PHASE_NAMES, PHASES, Difference, Plan, Step, build_plan
from stagecraft.plan.planner import KEPT_NOTE, REMOVED_STATEFUL_NOTE
from stagecraft.render.state import STRATEGIES, HostState, ServiceState

RID = "20261121T101500Z-3f9c2ab"


def svc(name: str, image: str = "reg/app:1", config: str = "h1", strategy: str = "rolling",
        replicas: int = 1) -> ServiceState:
    return ServiceState(name, image, config, strategy, replicas)  # type: ignore[arg-type]


def host(*services: ServiceState, traefik: str = "t1") -> HostState:
    return HostState(services={s.name: s for s in services}, traefik_hash=traefik)


def plan(desired, deployed, **options) -> Plan:
    return build_plan(desired, deployed, release_id=RID, **options)


def kinds(result: Plan, name: str) -> dict[str, str]:
    return {s.name: s.kind for s in result.host(name).services}


def test_phase_names_are_the_contract_names() -> None:
    assert PHASE_NAMES == ("lock", "build", "upload", "pull", "migrate-pre", "rollout",
                           "migrate-post", "finalize", "unlock")
    assert all(phase.description for phase in PHASES)


def test_a_host_never_deployed_gets_everything_added() -> None:
    desired = {"a": host(svc("web"), svc("db", "postgres:17", strategy="stateful")),
               "b": host(svc("web"))}
    result = plan(desired, {"a": None})
    assert kinds(result, "a") == {"db": "added", "web": "added"}
    assert kinds(result, "b") == {"web": "added"}
    assert result.host("a").first_deploy and result.host("b").first_deploy
    assert result.host("a").steps["rollout"] == (
        Step("configure", "traefik", "configuration changed"),
        Step("create", "db", "stateful"), Step("create", "web", "rolling"))


def test_nothing_to_do_when_desired_is_deployed() -> None:
    desired = {"a": host(svc("web"), svc("worker", strategy="recreate"))}
    result = plan(desired, desired)
    assert not result.has_changes
    assert result.changed_hosts == ()
    assert result.phases_to_run == ()
    assert result.release_steps == {}
    assert result.host("a").steps == {}
    assert set(kinds(result, "a").values()) == {"unchanged"}


def test_image_change_rolls_a_web_service_and_recreates_a_worker() -> None:
    deployed = {"a": host(svc("web", "reg/web:a", "h1"), svc("job", "reg/job:a", "h2", "recreate"))}
    desired = {"a": host(svc("web", "reg/web:b", "h9"), svc("job", "reg/job:b", "h8", "recreate"))}
    result = plan(desired, deployed)
    web = result.host("a").service("web")
    assert web.kind == "changed"
    assert web.differences == (Difference("image", "reg/web:a", "reg/web:b"),)  # no "config"
    assert result.host("a").steps["rollout"] == (Step("recreate", "job", "recreate"),
                                                 Step("roll", "web", "rolling"))


def test_same_image_with_another_hash_is_a_config_change() -> None:
    result = plan({"a": host(svc("web", config="h2"))}, {"a": host(svc("web", config="h1"))})
    assert result.host("a").service("web").differences == (Difference("config", "h1", "h2"),)


def test_replicas_and_strategy_are_reasons_too() -> None:
    result = plan({"a": host(svc("web", replicas=3, strategy="recreate"))},
                  {"a": host(svc("web", replicas=1, strategy="rolling"))})
    assert result.host("a").service("web").differences == (
        Difference("replicas", 1, 3), Difference("strategy", "rolling", "recreate"))


def test_a_service_no_longer_desired_is_removed() -> None:
    deployed = {"a": host(svc("web"), svc("old", strategy="recreate"),
                          svc("cache", strategy="stateful"))}
    result = plan({"a": host(svc("web"))}, deployed)
    assert kinds(result, "a") == {"cache": "removed", "old": "removed", "web": "unchanged"}
    assert result.host("a").service("cache").note == REMOVED_STATEFUL_NOTE
    assert result.host("a").steps["rollout"] == (Step("remove", "cache", "stateful"),
                                                 Step("remove", "old", "recreate"))
    assert "pull" not in result.host("a").steps  # nothing to start, nothing to pull
    assert result.host("a").after == host(svc("web"))


def test_a_changed_stateful_service_is_kept_unless_forced() -> None:
    deployed = {"a": host(svc("db", "postgres:16", strategy="stateful"))}
    desired = {"a": host(svc("db", "postgres:17", strategy="stateful"))}
    kept = plan(desired, deployed)
    db = kept.host("a").service("db")
    assert (db.kind, db.note) == ("kept", KEPT_NOTE)
    assert db.differences == (Difference("image", "postgres:16", "postgres:17"),)
    assert not kept.has_changes  # nothing would happen on the host
    assert kept.host("a").after == deployed["a"]  # so the ledger keeps what really runs

    forced = plan(desired, deployed, force=True)
    assert forced.host("a").service("db").kind == "changed"
    assert forced.host("a").steps["rollout"] == (Step("recreate", "db", "stateful"),)
    assert forced.host("a").steps["pull"] == (Step("pull", "postgres:17"),)
    assert forced.host("a").after == desired["a"]


def test_leaving_stateful_still_counts_as_stateful() -> None:
    result = plan({"a": host(svc("db", config="h2", strategy="recreate"))},
                  {"a": host(svc("db", config="h1", strategy="stateful"))})
    assert result.host("a").service("db").kind == "kept"


def test_traefik_change_alone_is_a_change_without_pulls() -> None:
    result = plan({"a": host(svc("web"), traefik="t2")}, {"a": host(svc("web"), traefik="t1")})
    assert result.changed_hosts == ("a",)
    assert result.host("a").traefik.changed
    steps = result.host("a").steps
    assert steps["rollout"] == (Step("configure", "traefik", "configuration changed"),)
    assert "pull" not in steps


def test_host_phases_run_only_on_hosts_with_changes() -> None:
    same = host(svc("web"))
    desired = {"a": host(svc("web", "reg/app:2", "h2")), "b": same, "c": host(svc("web", "reg/app:2", "h2"))}
    result = plan(desired, {"a": same, "b": same, "c": same})
    assert result.changed_hosts == ("a", "c")
    for phase in ("upload", "pull", "rollout", "finalize"):
        assert result.hosts_in_phase(phase) == ("a", "c")
    assert result.host("a").steps["upload"] == (Step("upload", "release files", f"to releases/{RID}"),)
    assert result.host("a").steps["finalize"] == (
        Step("switch", "current", f"to release {RID}"), Step("prune", "old releases"))
    assert result.phases_to_run == ("lock", "upload", "pull", "rollout", "finalize", "unlock")


def test_pull_lists_each_started_image_once() -> None:
    desired = {"a": host(svc("web", "reg/app:2"), svc("worker", "reg/app:2", strategy="recreate"),
                         svc("db", "postgres:17", strategy="stateful"))}
    deployed = {"a": host(svc("db", "postgres:16", strategy="stateful"))}
    assert plan(desired, deployed).host("a").steps["pull"] == (Step("pull", "reg/app:2"),)


def test_the_lock_is_taken_on_the_first_host_in_environment_order() -> None:
    desired = {"zeta": host(svc("web")), "alpha": host(svc("web"))}
    result = plan(desired, {})
    assert [h.host for h in result.hosts] == ["zeta", "alpha"]
    assert result.release_steps["lock"] == (Step("lock", "zeta", "take the deploy lock"),)
    assert result.release_steps["unlock"] == (Step("unlock", "zeta", "release the deploy lock"),)


def test_hints_become_release_steps_and_migrations_are_changes() -> None:
    desired = {"a": host(svc("web"))}
    result = plan(desired, desired, hints={"build": ["web from ./web"],
                                           "migrate-pre": ["drizzle: 2 pending migrations"],
                                           "migrate-post": []})
    assert result.release_steps["build"] == (Step("build", "web from ./web"),)
    assert result.release_steps["migrate-pre"] == (Step("migrate", "drizzle: 2 pending migrations"),)
    assert "migrate-post" not in result.release_steps
    assert result.has_changes and result.changed_hosts == ()
    assert result.phases_to_run == ("lock", "build", "migrate-pre", "unlock")


def test_build_hints_alone_change_nothing() -> None:
    desired = {"a": host(svc("web"))}
    result = plan(desired, desired, hints={"build": ["web"]})
    assert not result.has_changes
    assert "lock" not in result.release_steps


@pytest.mark.parametrize("hints, error", [
    ({"deploy": ["x"]}, ValueError), ({"rollout": ["x"]}, ValueError),
    ({"lock": ["x"]}, ValueError), ({"migrate-pre": "one line"}, TypeError),
])
def test_bad_hints_are_a_caller_bug(hints, error) -> None:
    with pytest.raises(error):
        plan({"a": host()}, {}, hints=hints)


def test_a_rollback_uploads_nothing() -> None:
    result = plan({"a": host(svc("web", "reg/app:1"))}, {"a": host(svc("web", "reg/app:2"))},
                  action="rollback")
    assert result.action == "rollback"
    assert "upload" not in result.host("a").steps
    assert result.host("a").steps["rollout"] == (Step("roll", "web", "rolling"),)
    with pytest.raises(ValueError):
        plan({}, {}, action="destroy")


def test_hosts_deployed_before_but_gone_from_the_environment_are_listed() -> None:
    result = plan({"a": host(svc("web"))}, {"a": host(svc("web")), "z": host(), "y": host(),
                                           "never": None})
    assert result.dropped_hosts == ("y", "z")
    assert not result.has_changes


def test_to_dict_is_json_in_a_stable_order() -> None:
    forward = {"a": host(svc("web"), svc("api", "reg/api:2"))}
    backward = {"a": host(svc("api", "reg/api:2"), svc("web"))}
    deployed = {"a": host(svc("web", config="h0"))}
    first, second = plan(forward, deployed).to_dict(), plan(backward, deployed).to_dict()
    assert json.dumps(first) == json.dumps(second)
    assert [p["name"] for p in first["phases"]] == list(PHASE_NAMES)
    assert first["summary"] == {"hosts": 1, "changed_hosts": ["a"], "changes": 2}
    [a] = first["hosts"]
    assert [s["name"] for s in a["services"]] == ["api", "web"]
    assert a["services"][1] == {"name": "web", "change": "changed", "strategy": "rolling",
                                "differences": [{"field": "config", "before": "h0", "after": "h1"}],
                                "note": ""}
    assert list(a["phases"]) == ["upload", "pull", "rollout", "finalize"]


# -- properties ----------------------------------------------------------------

names = st.sampled_from(["web", "api", "worker", "db", "cache", "jobs"])
services = st.builds(
    lambda image, config, strategy, replicas: (image, config, strategy, replicas),
    st.sampled_from(["reg/a:1", "reg/a:2", "reg/b:1"]), st.sampled_from(["h1", "h2"]),
    st.sampled_from(STRATEGIES), st.integers(1, 3))
host_states = st.builds(
    lambda found, traefik: HostState(
        services={n: ServiceState(n, *values) for n, values in found.items()},
        traefik_hash=traefik),
    st.dictionaries(names, services, max_size=5), st.sampled_from(["", "t1", "t2"]))
hosts_names = st.sampled_from(["app-1", "app-2", "app-3", "edge"])
fleets = st.dictionaries(hosts_names, host_states, max_size=4)
deployed_fleets = st.dictionaries(hosts_names, st.one_of(st.none(), host_states), max_size=4)


@given(fleets, st.booleans())
def test_desired_against_itself_has_no_changes(desired, force) -> None:
    result = plan(desired, desired, force=force)
    assert not result.has_changes
    assert result.phases_to_run == ()


@given(fleets, deployed_fleets, st.booleans())
def test_every_service_appears_exactly_once_per_host(desired, deployed, force) -> None:
    result = plan(desired, deployed, force=force)
    assert [h.host for h in result.hosts] == list(desired)
    for planned in result.hosts:
        seen = [s.name for s in planned.services]
        before = deployed.get(planned.host) or HostState()
        assert sorted(seen) == sorted(set(desired[planned.host].services) | set(before.services))
        assert len(seen) == len(set(seen))


@given(fleets, deployed_fleets, st.booleans(), st.sampled_from(["deploy", "rollback"]))
def test_to_dict_survives_json(desired, deployed, force, action) -> None:
    data = plan(desired, deployed, force=force, action=action).to_dict()
    assert json.loads(json.dumps(data)) == data


@given(fleets, deployed_fleets, st.booleans())
def test_applying_the_plan_leaves_nothing_to_do(desired, deployed, force) -> None:
    # The state a host reaches (what the ledger records) plans to no change.
    first = plan(desired, deployed, force=force)
    reached = {h.host: h.after for h in first.hosts}
    again = plan(desired, reached, force=force)
    assert not again.has_changes
    if force:
        assert reached == dict(desired)


@given(fleets, deployed_fleets, st.booleans())
def test_only_changed_hosts_have_steps(desired, deployed, force) -> None:
    result = plan(desired, deployed, force=force)
    for planned in result.hosts:
        assert bool(planned.steps) == planned.has_changes
        assert planned.has_changes == (planned.host in result.changed_hosts)
