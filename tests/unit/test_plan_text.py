"""The plan as text: per host, per phase, one line per change, then a summary."""

from __future__ import annotations

from stagecraft.plan import build_plan
from stagecraft.plan.planner import Difference, ServiceChange
from stagecraft.render.state import HostState, ServiceState
from stagecraft.ui.plan import plan_text, service_line

RID = "20261121T101500Z-3f9c2ab"


def svc(name: str, image: str, config: str = "h1", strategy: str = "rolling") -> ServiceState:
    return ServiceState(name, image, config, strategy, 1)  # type: ignore[arg-type]


def test_a_plan_with_changes_reads_per_host_and_phase() -> None:
    deployed = {
        "app-1": HostState({"api": svc("api", "reg/api:a"), "old": svc("old", "reg/old:1"),
                            "worker": svc("worker", "reg/w:1", strategy="recreate"),
                            "db": svc("db", "postgres:16", strategy="stateful")}, "t1"),
        "app-2": HostState({"worker": svc("worker", "reg/w:1", strategy="recreate")}, "t2"),
        "retired": HostState({}, "t0"),
    }
    desired = {
        "app-1": HostState({"api": svc("api", "reg/api:b", "h2"), "web": svc("web", "reg/web:b"),
                            "worker": svc("worker", "reg/w:1", strategy="recreate"),
                            "db": svc("db", "postgres:17", "h3", strategy="stateful")}, "t1"),
        "app-2": HostState({"worker": svc("worker", "reg/w:1", strategy="recreate")}, "t2"),
        "app-3": HostState({"worker": svc("worker", "reg/w:1", strategy="recreate")}, "t3"),
    }
    plan = build_plan(desired, deployed, release_id=RID,
                      hints={"migrate-pre": ["drizzle: 2 pending migrations"]})
    assert plan_text(plan) == f"""\
release {RID} (deploy)
  lock          app-1: take the deploy lock
  migrate-pre   drizzle: 2 pending migrations
  unlock        app-1: release the deploy lock
app-1
  upload        upload release files to releases/{RID}
  pull          reg/api:b
                reg/web:b
  rollout       ~ api (image: reg/api:a -> reg/api:b)
                ! db (image: postgres:16 -> postgres:17; stateful: not recreated without --force)
                - old (removed)
                + web (new)
                = worker
  finalize      switch current to release {RID}
                prune old releases
app-2 (no changes)
  = worker
app-3 (first deploy)
  upload        upload release files to releases/{RID}
  pull          reg/w:1
  rollout       + worker (new)
                + traefik (new configuration)
  finalize      switch current to release {RID}
                prune old releases
retired (no longer in the environment: left as it is)
3 hosts, 6 changes, 1 stateful service kept (use --force to recreate)
"""


def test_no_changes_says_so() -> None:
    desired = {"app-1": HostState({"web": svc("web", "reg/web:1")}, "t1")}
    text = plan_text(build_plan(desired, desired, release_id=RID, action="rollback", force=True))
    assert text == f"""\
release {RID} (rollback, force)
app-1 (no changes)
  = web
1 host, no changes
"""


def test_a_changed_traefik_and_several_reasons() -> None:
    deployed = {"app-1": HostState({"web": svc("web", "reg/web:1")}, "t1")}
    desired = {"app-1": HostState({"web": ServiceState("web", "reg/web:1", "h2", "recreate", 3)},
                                  "t2")}
    text = plan_text(build_plan(desired, deployed, release_id=RID))
    assert "  rollout       ~ web (config: h1 -> h2, replicas: 1 -> 3, strategy: rolling -> " \
           "recreate)\n                ~ traefik (configuration changed)\n" in text
    assert text.endswith("1 host, 2 changes\n")


def test_service_lines() -> None:
    assert service_line(ServiceChange("web", "added", "rolling")) == "+ web (new)"
    assert service_line(ServiceChange("old", "removed", "stateful", note="stateful: its volumes "
                                      "stay")) == "- old (removed; stateful: its volumes stay)"
    assert service_line(ServiceChange("worker", "unchanged", "recreate")) == "= worker"
    assert service_line(ServiceChange("api", "changed", "rolling", (
        Difference("image", "r/api:a", "r/api:b"),))) == "~ api (image: r/api:a -> r/api:b)"
