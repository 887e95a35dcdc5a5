"""The plan of a release: what each host runs now, what it should run, and the
steps of each phase that get it there.

``build_plan`` is a pure function of the desired state per host (from render),
the deployed state per host (from the ledger), and hints for the phases that
run once per release (images to build, pending migrations). It runs nothing and
reads nothing; ``stagecraft plan`` prints its result, ``deploy`` follows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from stagecraft.plan.phases import PHASE_BY_NAME, PHASE_NAMES, PHASES
from stagecraft.render.state import HostState, ServiceState, Strategy

Action = Literal["deploy", "rollback"]
ChangeKind = Literal["added", "changed", "removed", "unchanged", "kept"]
ChangedField = Literal["image", "config", "replicas", "strategy"]

KEPT_NOTE = "stateful: not recreated without --force"
REMOVED_STATEFUL_NOTE = "stateful: its volumes stay"
# Phases a caller may describe with hints; lock and unlock the planner writes itself.
HINTED_PHASES: tuple[str, ...] = ("build", "migrate-pre", "migrate-post")
_HINT_ACTION = {"build": "build", "migrate-pre": "migrate", "migrate-post": "migrate"}


@dataclass(frozen=True)
class Difference:
    """One way a service differs from what the host runs."""

    field: ChangedField
    before: str | int
    after: str | int

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class ServiceChange:
    """One service on one host: added, changed (with why), removed, unchanged, or kept
    (a stateful service that changed but is not recreated without force)."""

    name: str
    kind: ChangeKind
    strategy: Strategy  # the desired one; the deployed one when removed
    differences: tuple[Difference, ...] = ()
    note: str = ""

    @property
    def is_change(self) -> bool:
        return self.kind in ("added", "changed", "removed")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "change": self.kind, "strategy": self.strategy,
                "differences": [d.to_dict() for d in self.differences], "note": self.note}


@dataclass(frozen=True)
class TraefikChange:
    """The host's Traefik configuration, by hash."""

    before: str  # "" when the host was never deployed
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def to_dict(self) -> dict[str, Any]:
        return {"change": "changed" if self.changed else "unchanged",
                "before": self.before, "after": self.after}


@dataclass(frozen=True)
class Step:
    """One thing a phase does: ``action`` on ``target`` (e.g. roll web)."""

    action: str
    target: str
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"action": self.action, "target": self.target, "detail": self.detail}


@dataclass(frozen=True)
class HostPlan:
    """One host: how each service changes, and the steps of each per-host phase."""

    host: str
    first_deploy: bool
    services: tuple[ServiceChange, ...]  # by service name
    traefik: TraefikChange
    steps: Mapping[str, tuple[Step, ...]]  # phase name -> steps, only phases with steps
    after: HostState = field(repr=False)  # the state the host has once the plan is applied

    @property
    def changes(self) -> tuple[ServiceChange, ...]:
        return tuple(s for s in self.services if s.is_change)

    @property
    def change_count(self) -> int:
        return len(self.changes) + (1 if self.traefik.changed else 0)

    @property
    def has_changes(self) -> bool:
        return self.change_count > 0

    def service(self, name: str) -> ServiceChange:
        return next(s for s in self.services if s.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "first_deploy": self.first_deploy,
            "has_changes": self.has_changes,
            "services": [s.to_dict() for s in self.services],
            "traefik": self.traefik.to_dict(),
            "phases": {name: [step.to_dict() for step in self.steps[name]]
                       for name in PHASE_NAMES if name in self.steps},
        }


@dataclass(frozen=True)
class Plan:
    """The plan of one release of one environment."""

    release_id: str
    action: Action
    force: bool
    hosts: tuple[HostPlan, ...]  # in the environment's order; the first is the primary
    release_steps: Mapping[str, tuple[Step, ...]]  # steps of once-per-release phases
    dropped_hosts: tuple[str, ...] = ()  # deployed before, no longer in the environment

    @property
    def changed_hosts(self) -> tuple[str, ...]:
        return tuple(h.host for h in self.hosts if h.has_changes)

    @property
    def migrations(self) -> tuple[Step, ...]:
        return (*self.release_steps.get("migrate-pre", ()),
                *self.release_steps.get("migrate-post", ()))

    @property
    def change_count(self) -> int:
        return sum(h.change_count for h in self.hosts) + len(self.migrations)

    @property
    def has_changes(self) -> bool:
        return self.change_count > 0

    @property
    def phases_to_run(self) -> tuple[str, ...]:
        """The phases that have a step somewhere, in order."""
        return tuple(name for name in PHASE_NAMES
                     if self.release_steps.get(name)
                     or any(host.steps.get(name) for host in self.hosts))

    def hosts_in_phase(self, phase: str) -> tuple[str, ...]:
        return tuple(h.host for h in self.hosts if h.steps.get(phase))

    def host(self, name: str) -> HostPlan:
        for host in self.hosts:
            if host.host == name:
                return host
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data, in a stable order (``--output json``)."""
        return {
            "release_id": self.release_id,
            "action": self.action,
            "force": self.force,
            "has_changes": self.has_changes,
            "summary": {"hosts": len(self.hosts), "changed_hosts": list(self.changed_hosts),
                        "changes": self.change_count},
            "phases": [{"name": phase.name, "description": phase.description,
                        "scope": phase.scope, "runs": phase.name in self.phases_to_run,
                        "steps": [s.to_dict() for s in self.release_steps.get(phase.name, ())],
                        "hosts": list(self.hosts_in_phase(phase.name))}
                       for phase in PHASES],
            "hosts": [h.to_dict() for h in self.hosts],
            "dropped_hosts": list(self.dropped_hosts),
        }


def build_plan(
    desired: Mapping[str, HostState],
    deployed: Mapping[str, HostState | None],
    *,
    release_id: str,
    action: Action = "deploy",
    hints: Mapping[str, Sequence[str]] | None = None,
    force: bool = False,
) -> Plan:
    """Plan taking every host from ``deployed`` to ``desired``.

    ``desired`` is in the environment's order (its first host is the primary,
    which holds the deploy lock). A host missing from ``deployed`` (or None) was
    never deployed: all its services are added. ``hints`` describe the steps of
    the once-per-release phases build, migrate-pre and migrate-post, one line per
    step (e.g. ``{"migrate-pre": ["drizzle: 2 pending migrations"]}``). ``force``
    lets changed stateful services be recreated.
    """
    if action not in ("deploy", "rollback"):
        raise ValueError(f"unknown action {action!r}")
    hosts = tuple(
        _plan_host(name, state, deployed.get(name), release_id=release_id, action=action,
                   force=force)
        for name, state in desired.items())
    dropped = tuple(sorted(name for name, state in deployed.items()
                           if name not in desired and state is not None))
    release_steps = _hinted_steps(hints or {})
    if any(h.has_changes for h in hosts) or release_steps.get("migrate-pre") \
            or release_steps.get("migrate-post"):
        primary = hosts[0].host if hosts else ""
        release_steps["lock"] = (Step("lock", primary, "take the deploy lock"),)
        release_steps["unlock"] = (Step("unlock", primary, "release the deploy lock"),)
    ordered = {name: release_steps[name] for name in PHASE_NAMES if release_steps.get(name)}
    return Plan(release_id=release_id, action=action, force=force, hosts=hosts,
                release_steps=ordered, dropped_hosts=dropped)


def _hinted_steps(hints: Mapping[str, Sequence[str]]) -> dict[str, tuple[Step, ...]]:
    steps: dict[str, tuple[Step, ...]] = {}
    for phase, lines in hints.items():
        if phase not in PHASE_BY_NAME:
            raise ValueError(f"unknown phase {phase!r} in plan hints; phases are "
                             f"{', '.join(PHASE_NAMES)}")
        if phase not in HINTED_PHASES:
            raise ValueError(f"phase {phase!r} takes no hints; only {', '.join(HINTED_PHASES)}")
        if isinstance(lines, str):
            raise TypeError(f"hints for {phase!r} must be a list of lines, not one string")
        if lines:
            steps[phase] = tuple(Step(_HINT_ACTION[phase], line) for line in lines)
    return steps


def _plan_host(host: str, desired: HostState, deployed: HostState | None, *,
               release_id: str, action: Action, force: bool) -> HostPlan:
    before = deployed if deployed is not None else HostState()
    names = sorted(set(desired.services) | set(before.services))
    services = tuple(_service_change(name, desired.services.get(name),
                                     before.services.get(name), force=force)
                     for name in names)
    traefik = TraefikChange(before=before.traefik_hash, after=desired.traefik_hash)
    after_services = {}
    for change in services:
        if change.kind == "kept":
            after_services[change.name] = before.services[change.name]
        elif change.kind != "removed":
            after_services[change.name] = desired.services[change.name]
    after = HostState(services=after_services, traefik_hash=desired.traefik_hash)
    plan = HostPlan(host=host, first_deploy=deployed is None, services=services,
                    traefik=traefik, steps={}, after=after)
    if not plan.has_changes:
        return plan
    return HostPlan(host=host, first_deploy=plan.first_deploy, services=services,
                    traefik=traefik, after=after,
                    steps=_host_steps(services, traefik, desired, release_id, action))


def _service_change(name: str, desired: ServiceState | None, deployed: ServiceState | None,
                    *, force: bool) -> ServiceChange:
    if desired is None:
        assert deployed is not None
        note = REMOVED_STATEFUL_NOTE if deployed.strategy == "stateful" else ""
        return ServiceChange(name, "removed", deployed.strategy, note=note)
    if deployed is None:
        return ServiceChange(name, "added", desired.strategy)
    differences = _differences(deployed, desired)
    if not differences:
        return ServiceChange(name, "unchanged", desired.strategy)
    # Either side stateful means data lives there: never recreate it by accident.
    stateful = "stateful" in (desired.strategy, deployed.strategy)
    if stateful and not force:
        return ServiceChange(name, "kept", desired.strategy, differences, note=KEPT_NOTE)
    return ServiceChange(name, "changed", desired.strategy, differences)


def _differences(before: ServiceState, after: ServiceState) -> tuple[Difference, ...]:
    found: list[Difference] = []
    if before.image != after.image:
        found.append(Difference("image", before.image, after.image))
    elif before.config_hash != after.config_hash:
        # With the same image, a different hash means the rest of the definition changed.
        found.append(Difference("config", before.config_hash, after.config_hash))
    if before.replicas != after.replicas:
        found.append(Difference("replicas", before.replicas, after.replicas))
    if before.strategy != after.strategy:
        found.append(Difference("strategy", before.strategy, after.strategy))
    return tuple(found)


def _rollout_action(change: ServiceChange) -> str | None:
    if change.kind == "added":
        return "create"
    if change.kind == "removed":
        return "remove"
    if change.kind == "changed":
        return "roll" if change.strategy == "rolling" else "recreate"
    return None  # unchanged, kept: nothing happens to it


def _host_steps(services: tuple[ServiceChange, ...], traefik: TraefikChange,
                desired: HostState, release_id: str,
                action: Action) -> dict[str, tuple[Step, ...]]:
    steps: dict[str, tuple[Step, ...]] = {}
    if action == "deploy":  # a rollback's release files are still on the host
        steps["upload"] = (Step("upload", "release files", f"to releases/{release_id}"),)
    started = [c for c in services if _rollout_action(c) in ("create", "roll", "recreate")]
    images = sorted({desired.services[c.name].image for c in started})
    if images:
        steps["pull"] = tuple(Step("pull", image) for image in images)
    rollout: list[Step] = []
    if traefik.changed:
        rollout.append(Step("configure", "traefik", "configuration changed"))
    for change in services:
        verb = _rollout_action(change)
        if verb is not None:
            rollout.append(Step(verb, change.name, change.strategy))
    if rollout:
        steps["rollout"] = tuple(rollout)
    steps["finalize"] = (Step("switch", "current", f"to release {release_id}"),
                         Step("prune", "old releases"))
    return steps
