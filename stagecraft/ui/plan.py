"""The plan as text for people: per host, per phase, one line per change.

    release 20261121T101500Z-3f9c2ab (deploy)
      lock          app-1: take the deploy lock
      migrate-pre   drizzle: 2 pending migrations
      unlock        app-1: release the deploy lock
    app-1
      upload        upload release files to releases/20261121T101500Z-3f9c2ab
      pull          registry/shop-api:b
                    registry/shop-web:b
      rollout       ~ api (image: registry/shop-api:a -> registry/shop-api:b)
                    + web (new)
                    = worker
      finalize      switch current to release 20261121T101500Z-3f9c2ab
                    prune old releases
    app-2 (no changes)
      = worker
    2 hosts, 2 changes

``--output json`` prints ``Plan.to_dict()`` instead; this is a view of the same data.
"""

from __future__ import annotations

from stagecraft.plan.phases import PHASE_NAMES
from stagecraft.plan.planner import HostPlan, Plan, ServiceChange, Step

_LABEL_WIDTH = 14  # fits "migrate-post" and two spaces
_SYMBOL = {"added": "+", "changed": "~", "removed": "-", "unchanged": "=", "kept": "!"}


def plan_text(plan: Plan) -> str:
    """The plan as plain text, ending with a summary line."""
    lines = [f"release {plan.release_id} ({plan.action}{', force' if plan.force else ''})"]
    for phase in PHASE_NAMES:
        steps = plan.release_steps.get(phase, ())
        lines += _labelled(phase, [_release_step_text(phase, step) for step in steps])
    for host in plan.hosts:
        lines += _host_lines(host)
    for name in plan.dropped_hosts:
        lines.append(f"{name} (no longer in the environment: left as it is)")
    lines.append(_summary(plan))
    return "\n".join(lines) + "\n"


def service_line(change: ServiceChange) -> str:
    """``+ web (new)``, ``~ api (image: a -> b)``, ``- old (removed)``, ``= worker``."""
    symbol = _SYMBOL[change.kind]
    differences = ", ".join(f"{d.field}: {d.before} -> {d.after}" for d in change.differences)
    if change.kind == "added":
        details = ["new"]
    elif change.kind == "removed":
        details = ["removed"]
    else:
        details = [differences] if differences else []
    if change.note:
        details.append(change.note)
    return f"{symbol} {change.name}" + (f" ({'; '.join(details)})" if details else "")


def _host_lines(host: HostPlan) -> list[str]:
    if not host.has_changes:
        return [f"{host.host} (no changes)",
                *(f"  {service_line(change)}" for change in host.services)]
    lines = [f"{host.host}{' (first deploy)' if host.first_deploy else ''}"]
    for phase in PHASE_NAMES:
        if phase == "rollout":
            lines += _labelled(phase, _rollout_lines(host))
        else:
            lines += _labelled(phase, [_step_text(step) for step in host.steps.get(phase, ())])
    return lines


def _rollout_lines(host: HostPlan) -> list[str]:
    # Every service is listed, unchanged and kept ones too, so the host reads whole.
    lines = [service_line(change) for change in host.services]
    if host.traefik.changed and not host.traefik.before:
        lines.append("+ traefik (new configuration)")
    elif host.traefik.changed:
        lines.append("~ traefik (configuration changed)")
    return lines


def _labelled(label: str, texts: list[str]) -> list[str]:
    return [f"  {(label if index == 0 else ''):<{_LABEL_WIDTH}}{text}"
            for index, text in enumerate(texts)]


def _step_text(step: Step) -> str:
    if step.action == "pull":
        return step.target
    return " ".join(part for part in (step.action, step.target, step.detail) if part)


def _release_step_text(phase: str, step: Step) -> str:
    if phase in ("lock", "unlock"):
        return f"{step.target}: {step.detail}"
    return step.target


def _summary(plan: Plan) -> str:
    hosts = _count(len(plan.hosts), "host")
    if not plan.has_changes:
        text = f"{hosts}, no changes"
    else:
        text = f"{hosts}, {_count(plan.change_count, 'change')}"
    kept = sum(1 for host in plan.hosts for s in host.services if s.kind == "kept")
    if kept:
        text += f", {_count(kept, 'stateful service')} kept (use --force to recreate)"
    return text


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
