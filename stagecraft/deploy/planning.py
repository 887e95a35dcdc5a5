"""From a release's images to its plan: render every host's files, probe what the
hosts run, and plan the difference against the ledger."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stagecraft.deploy.migrate import migration_hints
from stagecraft.hosts.fleet import Fleet
from stagecraft.hosts.probe import HostFacts
from stagecraft.plan import Plan, build_plan
from stagecraft.render.state import HostRender, HostState, RenderInput, TlsSettings


def render_release(fleet: Fleet, release_id: str, images: Mapping[str, str],
                   secrets: Mapping[str, str], traefik_image: str,
                   tls: TlsSettings) -> dict[str, HostRender]:
    """Every host's files for the release (compose, Traefik, env files)."""
    from stagecraft.render.host import render_fleet

    inp = RenderInput(release_id=release_id, images=dict(images),
                      private_ips=fleet.private_ips, secrets=dict(secrets), tls=tls,
                      traefik_image=traefik_image)
    return render_fleet(fleet.env, inp)


def desired_states(renders: Mapping[str, HostRender]) -> dict[str, HostState]:
    """What each host runs once the release is rolled out."""
    return {name: render.state for name, render in renders.items()}


def plan_for(fleet: Fleet, renders: Mapping[str, HostRender], release_id: str,
             action: str = "deploy", force: bool = False,
             unknown: Iterable[str] = ()) -> Plan:
    """The plan against the ledger; hosts in ``unknown`` (found to differ from it)
    are planned as if nothing ran there."""
    deployed = fleet.ledger.deployed_state(fleet.env.name)
    unknown = set(unknown)
    desired = desired_states(renders)
    before = {h.name: None if h.name in unknown else deployed.get(h.name)
              for h in fleet.env.hosts}
    plan = build_plan(desired, before, action=action, release_id=release_id, force=force)
    hints = migration_hints(fleet.env) if action == "deploy" and plan.has_changes else {}
    if not hints:
        return plan
    return build_plan(desired, before, action=action, release_id=release_id, force=force,
                      hints=hints)


@dataclass(frozen=True)
class Observed:
    """What the hosts run, next to what the ledger says: from one probe per host."""

    facts: Mapping[str, HostFacts]
    drift: Mapping[str, list[str]]

    @property
    def lock_held(self) -> bool:
        return any(f.lock is not None for f in self.facts.values())

    def traefik_running(self, host: str) -> bool:
        facts = self.facts.get(host)
        return facts is not None and facts.reachable and facts.traefik_running


def observe(fleet: Fleet) -> Observed:
    """Probe every host at once (one SSH round trip each) and compare with the ledger."""
    from stagecraft.deploy.drift import fleet_drift
    from stagecraft.hosts.probe import probe_hosts

    ledger = fleet.ledger
    deployed = ledger.deployed_state(fleet.env.name)
    facts = probe_hosts(fleet)
    drift = fleet_drift({h.name: deployed.get(h.name) for h in fleet.env.hosts}, facts,
                        ledger.current_releases(fleet.env.name))
    return Observed(facts=facts, drift=drift)


def traefik_current(plan: Plan, observed: Observed | None) -> set[str]:
    """Hosts whose Traefik needs nothing: same configuration, and running."""
    if observed is None:
        return set()
    return {name for name in observed.facts
            if not plan.host(name).traefik.changed and observed.traefik_running(name)}
