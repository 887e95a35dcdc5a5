"""The phase engine shared by deploy and rollback.

One release = lock -> build -> (render, plan) -> upload -> pull -> migrate-pre ->
rollout -> migrate-post -> finalize -> unlock. The controller-side phases (lock,
build, finalize, unlock) run here; the host phases run in one Ansible run of
stagecraft.platform.deploy (or rollback.yml), whose plays carry the same phase names.
Everything the release did is written to the ledger as it happens, so a run
killed at any point leaves a record the next run can read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stagecraft.deploy.hooks import HookContext, Hooks
from stagecraft.deploy.images import digest_of
from stagecraft.deploy.migrate import MigrationSetup, release_migrations, run_phase
from stagecraft.deploy.outcome import HostOutcome, fold_outcomes, switched_hosts
from stagecraft.deploy.request import RegistryLogin
from stagecraft.errors import (
    HookFailed,
    Interrupted,
    MigrationFailed,
    RunFailed,
    StagecraftError,
    StateError,
)
from stagecraft.hosts.fleet import Fleet
from stagecraft.hosts.lock import LockInfo, acquire, release as release_lock
from stagecraft.identity import performer
from stagecraft.ledger.model import ImageRecord, PhaseStatus, Release, ReleaseAction, ReleaseHost
from stagecraft.ledger.model import ReleaseResult
from stagecraft.ledger.recorder import ReleaseRecorder
from stagecraft.migrations.base import Phase
from stagecraft.plan import Plan
from stagecraft.plan.phases import PhaseName
from stagecraft.render.state import HostRender

Say = Callable[[str], None]
OnEvent = Callable[[Any], None]
DEFAULT_TRAEFIK_IMAGE = "traefik:v3.6"


def _quiet(_: str) -> None:
    pass


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


# ---------------------------------------------------------------- the engine


def load_hooks(fleet: Fleet, *, action: str, release_id: str,
               options: DeployOptions) -> Hooks:
    """The project's hooks for this release (none in a dry run or with --skip-hooks)."""
    context = HookContext(project=fleet.env.project.name, environment=fleet.env.name,
                          release=release_id, action=action, performer=performer(),
                          hosts=tuple(h.name for h in fleet.env.hosts),
                          message=options.message)
    return Hooks.load(fleet.project_dir, context, skip=options.skip_hooks or options.check)


def execute(fleet: Fleet, *, action: str, release_id: str, renders: Mapping[str, HostRender],
            plan: Plan, images: Mapping[str, str], registry: RegistryLogin | None,
            traefik_image: str, options: DeployOptions, say: Say = _quiet,
            on_event: OnEvent | None = None, rollback_of: str | None = None,
            built: bool = False, hooks: Hooks | None = None,
            traefik_current: Iterable[str] = (),
            recorder: ReleaseRecorder | None = None) -> ReleaseOutcome:
    """Run the host phases of ``plan`` under the deploy lock and record the release.

    ``release_id`` names the release dir on hosts (for a rollback: the release
    brought back); the ledger record of a rollback gets its own new id.
    """
    from stagecraft.deploy.playbook import run_release_playbook

    env = fleet.env
    outcome = ReleaseOutcome(release=None, plan=plan)
    if hooks is None:
        hooks = load_hooks(fleet, action=action, release_id=release_id, options=options)
    # The plan is shown (and confirmed when interactive) before anything changes.
    if options.confirm is not None and not options.confirm(plan) and not options.check:
        raise Interrupted("stopped before any change: the plan was not confirmed",
                          hint="run again and answer yes, or pass --yes")
    image_records = {name: ImageRecord(ref=ref, digest=digest_of(ref))
                     for name, ref in images.items()}
    # What each host reaches: kept stateful services stay as deployed.
    host_records = {name: ReleaseHost(state=plan.host(name).after.to_dict()) for name in renders}
    if recorder is None:
        recorder = ReleaseRecorder.start(
            fleet.ledger, env.name, fleet.project_dir, action=ReleaseAction(action),
            release_id=release_id, config_hash=env.config_hash(), message=options.message,
            rollback_of=rollback_of, dry_run=options.check, say=say)
    recorder.settle(image_records, host_records)
    record_id = recorder.release_id or release_id
    lock_info = LockInfo.new(record_id, options.message, command=action)
    primary = fleet.primary
    locked = False
    failed_phase: str | None = "lock"
    try:
        if not options.check:
            recorder.phase_started("lock")
            acquire(primary, env.project.name, env.name, lock_info, wait=options.lock_wait,
                    on_wait=lambda holder: say(f"waiting for the deploy lock: {holder.describe()}"))
            locked = True
            recorder.phase_finished("lock")
            if built:
                recorder.phase_finished("build")
            hooks.run("pre-deploy", on_line=say)
        failed_phase = "rollout"
        migrations = release_migrations(fleet, action, images, check=options.check, say=say)
        pre = migrations is not None and migrations.phase("pre") is not None
        # Pre-deploy migrations run after every host pulled and before any switches.
        segments: list[tuple[str, ...] | None] = \
            [("upload", "pull"), ("rollout",)] if pre else [None]
        for index, phases in enumerate(segments):
            if index == 1:
                failed_phase = "migrate-pre"
                _migrate(fleet, recorder, migrations, "pre", say)
                failed_phase = "rollout"
            result = run_release_playbook(
                fleet, action=action, release_id=release_id, renders=renders,
                registry=registry, traefik_image=traefik_image, force=options.force,
                check=options.check, verbosity=options.verbosity, on_event=on_event,
                hooks=hooks, traefik_current=set(traefik_current), phases=phases,
                start_stateful=pre and index == 0)
            outcome.run = result
            outcome.executed = True
            for phase_name, hosts in fold_outcomes(result.events).items():
                outcome.phases.setdefault(phase_name, {}).update(hosts)
            switched = switched_hosts(outcome.phases, release_id)
            recorder.record_hosts(outcome.phases, switched)
            result.raise_for_status()
        if migrations is not None and migrations.phase("post") is not None:
            failed_phase = "migrate-post"
            try:
                _migrate(fleet, recorder, migrations, "post", say)
            except MigrationFailed as exc:
                exc.message = (f"every host switched to {release_id}, but its post-deploy "
                               f"migrations failed (nothing was rolled back): {exc.message}")
                exc.hint = ("fix the migration and run `stagecraft migrate run --phase post`, "
                            "or deploy a fix")
                exc.release_result = "failed-after-switch"
                raise
        failed_phase = "finalize"
        if not options.check:
            recorder.phase_finished("finalize")
            recorder.finish(ReleaseResult.SUCCEEDED)
    except Interrupted as exc:
        recorder.finish(ReleaseResult.INTERRUPTED, exc, phase=failed_phase)
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
        switched = recorder.switched_hosts()
        if switched:
            exc.message += f"\nalready switched to {release_id}: {', '.join(sorted(switched))}"
        else:
            exc.message += "\nno host was switched"
        recorder.finish(ReleaseResult.FAILED, exc, phase=failed_phase_name, host=failure_host)
        raise
    except StagecraftError as exc:
        if failed_phase == "migrate-pre":
            exc.message += "\nno host was switched"
        recorder.fail(exc, phase=failed_phase)
        raise
    except BaseException as exc:
        recorder.finish(ReleaseResult.INTERRUPTED if isinstance(exc, KeyboardInterrupt)
                        else ReleaseResult.FAILED,
                        StateError(f"{type(exc).__name__}: {exc}"), phase=failed_phase)
        raise
    finally:
        if locked:
            try:
                release_lock(primary, env.project.name, env.name, lock_info)
                recorder.phase_finished("unlock")
            except StagecraftError as exc:
                say(f"warning: could not release the deploy lock: {exc.message}")
    outcome.release = recorder.release
    if not options.check:
        try:  # after the lock is released: the release itself is done and recorded
            hooks.run("post-deploy", on_line=say)
        except HookFailed as exc:
            exc.message = f"{action} {record_id} succeeded on every host, but the " + exc.message
            raise
    return outcome


def _migrate(fleet: Fleet, recorder: ReleaseRecorder, setup: MigrationSetup, phase: Phase,
             say: Say) -> None:
    """Run one migration phase, record it in the ledger; MigrationFailed on failure."""
    name: PhaseName = "migrate-pre" if phase == "pre" else "migrate-post"
    recorder.phase_started(name)
    say(f"{name}: {setup.engine_name} migrations on {setup.host} ({setup.image})")
    outcome = run_phase(fleet, setup, phase)
    recorder.record_migration(outcome.to_record())
    if outcome.error is not None:
        recorder.phase_finished(name, PhaseStatus.FAILED)
        raise outcome.error
    recorder.phase_finished(name)
    applied = list(outcome.report.applied_now) if outcome.report else []
    say(f"{name}: applied {len(applied)} in {outcome.seconds:.1f}s"
        + (f": {', '.join(applied)}" if applied else " (nothing pending)"))


