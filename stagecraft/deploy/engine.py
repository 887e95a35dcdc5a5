"""The phase engine shared by deploy and rollback.

One release = lock -> build -> (render, plan) -> upload -> pull -> migrate-pre ->
rollout -> migrate-post -> finalize -> unlock. The controller-side phases (lock,
build, finalize, unlock) run here; the host phases run in one Ansible run of
playbooks/deploy.yml (or rollback.yml), whose plays carry the same phase names.
Everything the release did is written to the ledger as it happens, so a run
killed at any point leaves a record the next run can read.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stagecraft.config.schema import ResolvedEnvironment
from stagecraft.deploy.outcome import HostOutcome, fold_outcomes, switched_hosts
from stagecraft.deploy.request import RegistryLogin, release_request
from stagecraft.errors import (
    HookFailed,
    Interrupted,
    MigrationFailed,
    RunFailed,
    StagecraftError,
    StateError,
)
from stagecraft.deploy.hooks import HookContext, Hooks
from stagecraft.hosts.fleet import cloud_for, fleet_spec, state_dir
from stagecraft.ledger import Ledger
from stagecraft.ledger.model import ErrorRecord, HostRecord as LedgerHost, ImageRecord, Release
from stagecraft.ledger.model import utc_now
from stagecraft.ledger.release_id import git_source, new_release_id
from stagecraft.hosts.lock import LockInfo, acquire, performer, release as release_lock
from stagecraft.plan import Plan, build_plan
from stagecraft.hosts.probe import HostFacts
from stagecraft.providers.cloud import CloudProvider, FleetSpec, HostRecord, SshAccess
from stagecraft.hosts.remote import RemoteHost, remote_hosts
from stagecraft.render.inventory import load_host_records
from stagecraft.render.state import HostRender, HostState, RenderInput, TlsSettings

Say = Callable[[str], None]
OnEvent = Callable[[Any], None]
DEFAULT_TRAEFIK_IMAGE = "traefik:v3.6"


def _quiet(_: str) -> None:
    pass


@dataclass
class Target:
    """An environment and the fleet it runs on, loaded once per command."""

    env: ResolvedEnvironment
    project_dir: Path
    state_dir: Path
    cloud: CloudProvider
    spec: FleetSpec
    records: dict[str, HostRecord]
    access: SshAccess

    @classmethod
    def load(cls, env: ResolvedEnvironment, project_dir: Path) -> Target:
        project_dir = Path(project_dir).resolve()
        sdir = state_dir(project_dir, env.name)
        records = {n: r for n, r in load_host_records(sdir).items() if r.in_spec}
        missing = [h.name for h in env.hosts if h.name not in records]
        if missing:
            raise StateError(
                f"environment '{env.name}' has no host record for {', '.join(missing)}",
                hint=f"create the hosts first: stagecraft infra up --env {env.name} --bootstrap")
        cloud = cloud_for(env)
        spec = fleet_spec(env)
        return cls(env=env, project_dir=project_dir, state_dir=sdir, cloud=cloud, spec=spec,
                   records=records, access=cloud.ssh_access(spec, sdir))

    @property
    def ledger(self) -> Ledger:
        return Ledger.for_project(self.project_dir)

    @property
    def runs_dir(self) -> Path:
        return self.project_dir / ".stagecraft" / "runs"

    def remote(self, name: str) -> RemoteHost:
        return remote_hosts(self.records, self.access, [name])[name]

    @property
    def primary(self) -> RemoteHost:
        return self.remote(self.env.primary_host.name)

    @property
    def private_ips(self) -> dict[str, str]:
        return {name: r.private_ip or r.ssh_host or name for name, r in self.records.items()}


@dataclass(frozen=True)
class DeployOptions:
    """What the user asked of deploy or rollback."""

    skip_build: bool = False
    force: bool = False
    check: bool = False  # --dry-run: plan, then Ansible in check mode; nothing recorded
    lock_wait: float = 0.0
    message: str = ""
    verbosity: int = 0
    confirm: Callable[[Plan], bool] | None = None  # asked after the plan; False aborts
    skip_hooks: bool = False


@dataclass
class ReleaseOutcome:
    """What a deploy or rollback did: the record as written, the plan and the run."""

    release: Release | None
    plan: Plan
    phases: dict[str, dict[str, HostOutcome]] = field(default_factory=dict)
    run: Any = None
    executed: bool = False
    drift: Mapping[str, list[str]] = field(default_factory=dict)  # hosts unlike the ledger

    def to_dict(self) -> dict[str, Any]:
        return {
            "release": self.release.model_dump(mode="json") if self.release else None,
            "plan": self.plan.to_dict(),
            "executed": self.executed,
            "drift": {h: list(r) for h, r in self.drift.items()},
            "phases": {p: {h: o.to_dict() for h, o in hosts.items()}
                       for p, hosts in self.phases.items()},
        }


# --------------------------------------------------------------------- images


def config_hash(env: ResolvedEnvironment) -> str:
    """Hash of the resolved environment's configuration, recorded with each release."""
    text = json.dumps(env.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _digest_of(ref: str) -> str | None:
    return ref.rpartition("@")[2] if "@sha256:" in ref else None


def keep_same_images(images: Mapping[str, str], deployed: Mapping[str, HostState]) -> dict[str, str]:
    """Where a new build produced the very image (digest) a host already runs, keep
    the deployed reference: a tag that differs only by release id is no change."""
    running: dict[str, str] = {}
    for state in deployed.values():
        for name, service in state.services.items():
            running.setdefault(name, service.image)
    kept = dict(images)
    for name, ref in images.items():
        old = running.get(name)
        if old and _digest_of(ref) and _digest_of(ref) == _digest_of(old):
            kept[name] = old
    return kept


def predicted_images(target: Target, release_id: str, registry_server: str | None) -> dict[str, str]:
    """Images a deploy would use, without building: for `plan`. A built service whose
    source commit is the one last deployed (clean tree) is expected to stay the same."""
    env = target.env
    last = target.ledger.last_successful(env.name)
    source = git_source(target.project_dir)
    same_source = (last is not None and source.sha is not None and not source.dirty
                   and last.git.sha == source.sha and not last.git.dirty)
    images: dict[str, str] = {}
    for name, service in env.services.items():
        if service.image is not None:
            images[name] = service.image
        elif service.build is not None:
            if same_source and name in last.images:  # type: ignore[union-attr]
                images[name] = last.images[name].ref  # type: ignore[union-attr]
            else:
                server = registry_server or "registry"
                images[name] = f"{server}/{env.project.name}-{name}:{release_id}"
    for name, service in env.services.items():
        if service.from_ is not None:
            images[name] = images[service.from_]
    return images


# ------------------------------------------------------------------ rendering


def tls_settings(target: Target) -> TlsSettings:
    """The edge's TLS: ACME, off, or a certificate from the environment's local CA."""
    env = target.env
    mode = env.tls_mode
    if mode != "local":
        return TlsSettings(mode=mode, email=env.tls.email)  # type: ignore[arg-type]
    names = sorted({env.route_host(route) for s in env.services.values() for route in s.routes})
    if not names:  # an edge without routes still serves TLS: a name of its own
        names = [env.domain or f"{env.project.name}-{env.name}.localhost"]
    certificate, key = _edge_certificate(target.state_dir, names)
    return TlsSettings(mode="local", email=env.tls.email, certificate=certificate, key=key)


def _edge_certificate(state_dir: Path, names: list[str]) -> tuple[str, str]:
    """The edge's certificate for ``names`` from the environment's CA, issued once and
    kept (a new key every deploy would change the Traefik files every deploy)."""
    from stagecraft.infra import tls
    from stagecraft.fsutil import write_atomic

    ca = tls.ensure_ca(state_dir)
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
    cert_path = tls.ca_directory(state_dir) / f"edge-{digest}.crt"
    key_path = cert_path.with_suffix(".key")
    if cert_path.is_file() and key_path.is_file():
        return cert_path.read_text(), key_path.read_text()
    certificate, key = tls.issue(ca, names, [])
    write_atomic(key_path, key, mode=0o600)
    write_atomic(cert_path, certificate, mode=0o644)
    return certificate, key


def render_release(target: Target, release_id: str, images: Mapping[str, str],
                   secrets: Mapping[str, str], traefik_image: str,
                   tls: TlsSettings) -> dict[str, HostRender]:
    from stagecraft.render.host import render_fleet

    inp = RenderInput(release_id=release_id, images=dict(images),
                      private_ips=target.private_ips, secrets=dict(secrets), tls=tls,
                      traefik_image=traefik_image)
    return render_fleet(target.env, inp)


def desired_states(renders: Mapping[str, HostRender]) -> dict[str, HostState]:
    return {name: render.state for name, render in renders.items()}


# ---------------------------------------------------------------- the engine


class ReleaseRun:
    """One deploy or rollback in progress: keeps the ledger record current."""

    def __init__(self, target: Target, release: Release | None) -> None:
        self.target = target
        self.release = release  # None in check mode: nothing is recorded

    def _update(self, change: Callable[[Release], None]) -> None:
        if self.release is None:
            return
        self.release = self.target.ledger.update(self.release.id, change,
                                                 environment=self.target.env.name)

    def phase(self, name: str, status: str, detail: str = "") -> None:
        def change(release: Release) -> None:
            phase = release.phase(name)  # type: ignore[arg-type]
            phase.status = status  # type: ignore[assignment]
            now = utc_now()
            if status == "running":
                phase.started = now
            elif status in ("ok", "failed", "skipped"):
                phase.started = phase.started or now
                phase.finished = now
        self._update(change)

    def record_hosts(self, phases: Mapping[str, Mapping[str, HostOutcome]],
                     switched: set[str]) -> None:
        def change(release: Release) -> None:
            for phase_name, hosts in phases.items():
                try:
                    phase = release.phase(phase_name)  # type: ignore[arg-type]
                except ValueError:
                    continue
                failed = any(o.status in ("failed", "unreachable") for o in hosts.values())
                phase.status = "failed" if failed else "ok"
                phase.finished = phase.finished or utc_now()
                phase.started = phase.started or phase.finished
                for host, outcome in hosts.items():
                    phase.hosts[host] = {  # type: ignore[assignment]
                        "status": "failed" if outcome.status in ("failed", "unreachable")
                        else "ok" if outcome.status == "ok" else "skipped",
                        "seconds": round(outcome.seconds, 2), "changed": outcome.changed,
                        "detail": outcome.detail[:500]}
            rollout = phases.get("rollout", {})
            for host, record in release.hosts.items():
                outcome = rollout.get(host)
                record.switched = host in switched
                if host in switched:
                    record.status = "ok"  # type: ignore[assignment]
                elif outcome is not None and outcome.status in ("failed", "unreachable"):
                    record.status = "failed"  # type: ignore[assignment]
                if outcome is not None and outcome.services:
                    record.result = {"services": outcome.services, "current": outcome.current}
        self._update(change)

    def record_migration(self, record: Mapping[str, Any]) -> None:
        def change(release: Release) -> None:
            release.migrations.append(record)  # type: ignore[arg-type]
        self._update(change)

    def fail(self, exc: BaseException, phase: str | None = None) -> None:
        """Record how an exception ended the release: interrupted (Ctrl-C) or failed."""
        if isinstance(exc, (Interrupted, KeyboardInterrupt)):
            error = exc if isinstance(exc, Interrupted) else Interrupted("stopped by Ctrl-C")
            self.finish("interrupted", error, phase=phase)
        elif isinstance(exc, StagecraftError):
            self.finish("failed", exc, phase=phase)
        else:
            self.finish("failed", StateError(f"{type(exc).__name__}: {exc}"), phase=phase)

    def finish(self, result: str, error: StagecraftError | None = None,
               phase: str | None = None, host: str | None = None) -> None:
        def change(release: Release) -> None:
            release.result = result  # type: ignore[assignment]
            release.finished = utc_now()
            for record in release.phases:
                if record.status == "running":
                    record.status = "failed" if result != "succeeded" else "ok"  # type: ignore[assignment]
                    record.finished = release.finished
            if error is not None:
                release.error = ErrorRecord(message=error.message[:2000], hint=error.hint,
                                            phase=phase, host=host)  # type: ignore[arg-type]
        self._update(change)


def start_release(target: Target, *, action: str, release_id: str, options: DeployOptions,
                  rollback_of: str | None = None, say: Say = _quiet) -> ReleaseRun:
    """Record a new ``running`` release before anything happens (a kill at any later
    point leaves a record that the next run marks interrupted). A deploy's record
    takes ``release_id`` (the next free second if another run took it); a rollback's
    record gets an id of its own. Nothing is recorded in a dry run."""
    if options.check:
        return ReleaseRun(target, None)
    for killed in target.ledger.mark_abandoned(target.env.name):
        say(f"release {killed} was left running by a process that is gone: "
            "recorded as interrupted")
    source = git_source(target.project_dir)
    record_id = release_id if action == "deploy" else new_release_id(target.project_dir)
    release = Release(
        id=record_id, environment=target.env.name, action=action,  # type: ignore[arg-type]
        rollback_of=rollback_of, git={"sha": source.sha, "dirty": source.dirty},
        config_hash=config_hash(target.env), message=options.message, pid=os.getpid())
    return ReleaseRun(target, target.ledger.record_new(release))


def load_hooks(target: Target, *, action: str, release_id: str,
               options: DeployOptions) -> Hooks:
    """The project's hooks for this release (none in a dry run or with --skip-hooks)."""
    context = HookContext(project=target.env.project.name, environment=target.env.name,
                          release=release_id, action=action, performer=performer(),
                          hosts=tuple(h.name for h in target.env.hosts),
                          message=options.message)
    return Hooks.load(target.project_dir, context, skip=options.skip_hooks or options.check)


def execute(target: Target, *, action: str, release_id: str, renders: Mapping[str, HostRender],
            plan: Plan, images: Mapping[str, str], registry: RegistryLogin | None,
            traefik_image: str, options: DeployOptions, say: Say = _quiet,
            on_event: OnEvent | None = None, rollback_of: str | None = None,
            built: bool = False, hooks: Hooks | None = None,
            traefik_current: Iterable[str] = (),
            run: ReleaseRun | None = None) -> ReleaseOutcome:
    """Run the host phases of ``plan`` under the deploy lock and record the release.

    ``release_id`` names the release dir on hosts (for a rollback: the release
    brought back); the ledger record of a rollback gets its own new id.
    """
    env = target.env
    outcome = ReleaseOutcome(release=None, plan=plan)
    if hooks is None:
        hooks = load_hooks(target, action=action, release_id=release_id, options=options)
    # The plan is shown (and confirmed when interactive) before anything changes.
    if options.confirm is not None and not options.confirm(plan) and not options.check:
        raise Interrupted("stopped before any change: the plan was not confirmed",
                          hint="run again and answer yes, or pass --yes")
    image_records = {name: ImageRecord(ref=ref, digest=_digest_of(ref))
                     for name, ref in images.items()}
    # What each host reaches: kept stateful services stay as deployed.
    host_records = {name: LedgerHost(state=plan.host(name).after.to_dict()) for name in renders}
    if run is None:
        run = start_release(target, action=action, release_id=release_id, options=options,
                            rollback_of=rollback_of, say=say)
    if run.release is not None:
        def settle(release: Release) -> None:
            release.images = image_records
            release.hosts = host_records
        run._update(settle)
    record_id = run.release.id if run.release is not None else release_id
    lock_info = LockInfo.new(record_id, options.message, command=action)
    primary = target.primary
    locked = False
    failed_phase: str | None = "lock"
    try:
        if not options.check:
            run.phase("lock", "running")
            acquire(primary, env.project.name, env.name, lock_info, wait=options.lock_wait,
                    on_wait=lambda holder: say(f"waiting for the deploy lock: {holder.describe()}"))
            locked = True
            run.phase("lock", "ok")
            if built:
                run.phase("build", "ok")
            hooks.run("pre-deploy", on_line=say)
        failed_phase = "rollout"
        migrations = _migration_setup(target, action, images, options, say)
        pre = migrations is not None and migrations.phase("pre") is not None
        # Pre-deploy migrations run after every host pulled and before any switches.
        segments: list[tuple[str, ...] | None] = \
            [("upload", "pull"), ("rollout",)] if pre else [None]
        for index, phases in enumerate(segments):
            if index == 1:
                failed_phase = "migrate-pre"
                _migrate(target, run, migrations, "pre", say)
                failed_phase = "rollout"
            result = _run_playbook(target, action=action, release_id=release_id,
                                   renders=renders, registry=registry,
                                   traefik_image=traefik_image, options=options,
                                   on_event=on_event, hooks=hooks,
                                   traefik_current=set(traefik_current), phases=phases,
                                   start_stateful=pre and index == 0)
            outcome.run = result
            outcome.executed = True
            for phase_name, hosts in fold_outcomes(result.events).items():
                outcome.phases.setdefault(phase_name, {}).update(hosts)
            switched = switched_hosts(outcome.phases, release_id)
            run.record_hosts(outcome.phases, switched)
            result.raise_for_status()
        if migrations is not None and migrations.phase("post") is not None:
            failed_phase = "migrate-post"
            try:
                _migrate(target, run, migrations, "post", say)
            except MigrationFailed as exc:
                exc.message = (f"every host switched to {release_id}, but its post-deploy "
                               f"migrations failed (nothing was rolled back): {exc.message}")
                exc.hint = ("fix the migration and run `stagecraft migrate run --phase post`, "
                            "or deploy a fix")
                exc.release_result = "failed-after-switch"  # type: ignore[attr-defined]
                raise
        failed_phase = "finalize"
        if not options.check:
            run.phase("finalize", "ok")
            run.finish("succeeded")
    except Interrupted as exc:
        run.finish("interrupted", exc, phase=failed_phase)
        raise
    except RunFailed as exc:
        failure_host = None
        failed_phase_name = failed_phase
        for phase_name, hosts in outcome.phases.items():
            for host, o in hosts.items():
                if o.status in ("failed", "unreachable"):
                    failure_host, failed_phase_name = host, phase_name
                    if o.diagnostics:
                        exc.message += "\n" + o.diagnostics
        switched = [h for h, r in (run.release.hosts.items() if run.release else [])
                    if r.switched]
        if switched:
            exc.message += f"\nalready switched to {release_id}: {', '.join(sorted(switched))}"
        else:
            exc.message += "\nno host was switched"
        run.finish("failed", exc, phase=failed_phase_name, host=failure_host)
        raise
    except StagecraftError as exc:
        if failed_phase == "migrate-pre":
            exc.message += "\nno host was switched"
        run.finish(getattr(exc, "release_result", "failed"), exc, phase=failed_phase)
        raise
    except BaseException as exc:
        run.finish("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                   StateError(f"{type(exc).__name__}: {exc}"), phase=failed_phase)
        raise
    finally:
        if locked:
            try:
                release_lock(primary, env.project.name, env.name, lock_info)
                run.phase("unlock", "ok")
            except StagecraftError as exc:
                say(f"warning: could not release the deploy lock: {exc.message}")
    outcome.release = run.release
    if not options.check:
        try:  # after the lock is released: the release itself is done and recorded
            hooks.run("post-deploy", on_line=say)
        except HookFailed as exc:
            exc.message = f"{action} {record_id} succeeded on every host, but the " + exc.message
            raise
    return outcome


def _migration_setup(target: Target, action: str, images: Mapping[str, str],
                     options: DeployOptions, say: Say):
    """The release's migration setup; None when there is nothing to run (no
    ``migrations:``, a rollback, or a dry run, which only says what would run)."""
    from stagecraft.deploy.migrate import migration_setup

    if action != "deploy" or target.env.migrations is None:
        return None
    setup = migration_setup(target.env, target.project_dir, images)
    if setup is not None and options.check:
        for phase in ("pre", "post"):
            if setup.phase(phase) is not None:
                say(f"migrate-{phase}: would apply pending {setup.engine_name} migrations "
                    f"on {setup.host} (dry run: not run)")
        return None
    return setup


def _migrate(target: Target, run: ReleaseRun, setup: Any, phase: str, say: Say) -> None:
    """Run one migration phase, record it in the ledger; MigrationFailed on failure."""
    from stagecraft.deploy.migrate import run_phase

    name = f"migrate-{phase}"
    run.phase(name, "running")
    say(f"{name}: {setup.engine_name} migrations on {setup.host} ({setup.image})")
    outcome = run_phase(target, setup, phase)
    run.record_migration(outcome.to_record())
    if outcome.error is not None:
        run.phase(name, "failed")
        raise outcome.error
    run.phase(name, "ok")
    applied = list(outcome.report.applied_now) if outcome.report else []
    say(f"{name}: applied {len(applied)} in {outcome.seconds:.1f}s"
        + (f": {', '.join(applied)}" if applied else " (nothing pending)"))


def _run_playbook(target: Target, *, action: str, release_id: str,
                  renders: Mapping[str, HostRender], registry: RegistryLogin | None,
                  traefik_image: str, options: DeployOptions, on_event: OnEvent | None,
                  hooks: Hooks, traefik_current: set[str],
                  phases: tuple[str, ...] | None = None, start_stateful: bool = False):
    from stagecraft.ansible.bundle import prepare
    from stagecraft.ansible.runner import run as run_bundle

    playbook = "deploy.yml" if action == "deploy" else "rollback.yml"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    request = release_request(
        run_id=f"{stamp}-{action}-{target.env.name}-{int(time.time() * 1000) % 1000:03d}",
        playbook=playbook, env=target.env, records=target.records, access=target.access,
        renders=renders, release_id=release_id, action=action, performer=performer(),
        registry=registry, traefik_image=traefik_image, force=options.force,
        upload=action == "deploy", check=options.check, verbosity=options.verbosity,
        hooks=hooks.batch_hooks(), hook_env=hooks.context.batch_variables(),
        traefik_current=traefik_current, phases=phases, start_stateful=start_stateful)
    bundle = prepare(request, target.runs_dir)
    return run_bundle(bundle, on_event=on_event)


def plan_for(target: Target, renders: Mapping[str, HostRender], release_id: str,
             action: str = "deploy", force: bool = False,
             unknown: Iterable[str] = ()) -> Plan:
    """The plan against the ledger; hosts in ``unknown`` (found to differ from it)
    are planned as if nothing ran there."""
    deployed = target.ledger.deployed_state(target.env.name)
    unknown = set(unknown)
    desired = desired_states(renders)
    before = {h.name: None if h.name in unknown else deployed.get(h.name)
              for h in target.env.hosts}
    plan = build_plan(desired, before, action=action, release_id=release_id, force=force)
    hints = migration_hints(target.env) if action == "deploy" and plan.has_changes else {}
    if not hints:
        return plan
    return build_plan(desired, before, action=action, release_id=release_id, force=force,
                      hints=hints)


def migration_hints(env: ResolvedEnvironment) -> dict[str, list[str]]:
    """The plan's lines for the migration phases a deploy of ``env`` runs (which
    migrations are pending is known once the new image runs: `migrate plan`)."""
    from stagecraft.deploy.migrate import migration_host, phase_specs

    migrations = env.migrations
    if migrations is None:
        return {}
    hints: dict[str, list[str]] = {}
    for phase, spec in phase_specs(env).items():
        where = spec.path or " ".join(spec.command or ())
        hints[f"migrate-{phase}"] = [
            f"{migrations.engine} migrations ({where}) from {migrations.from_}'s new image "
            f"on {migration_host(env)}"]
    return hints


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


def observe(target: Target) -> Observed:
    """Probe every host at once (one SSH round trip each) and compare with the ledger."""
    from stagecraft.deploy.drift import fleet_drift
    from stagecraft.hosts.probe import probe_hosts

    ledger = target.ledger
    deployed = ledger.deployed_state(target.env.name)
    facts = probe_hosts(target)
    drift = fleet_drift({h.name: deployed.get(h.name) for h in target.env.hosts}, facts,
                        ledger.current_releases(target.env.name))
    return Observed(facts=facts, drift=drift)


def traefik_current(plan: Plan, observed: Observed | None) -> set[str]:
    """Hosts whose Traefik needs nothing: same configuration, and running."""
    if observed is None:
        return set()
    return {name for name in observed.facts
            if not plan.host(name).traefik.changed and observed.traefik_running(name)}
