"""Migration phases of a release: which engine runs, on which host, in which image,
with which environment; and the runner that does it through the ``migrations`` role
(stagecraft.platform.migrate), the same path for deploy, ``migrate run`` and ``migrate plan``.

spec/migrations/README.md has the contract.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stagecraft.config.schema import ResolvedEnvironment
from stagecraft.errors import MigrationFailed, PlanError, RunFailed
from stagecraft.ledger.model import MigrationRecord, PhaseStatus
from stagecraft.migrations.base import (
    DATABASE_URL_VAR,
    Completed,
    ContainerCommand,
    Migrator,
    Phase,
    PhaseSpec,
    Report,
)

OnEvent = Callable[[Any], None]

if TYPE_CHECKING:
    from stagecraft.hosts.fleet import Fleet


@dataclass(frozen=True)
class MigrationSetup:
    """Everything a migration phase needs, resolved for one release."""

    engine_name: str
    host: str  # the inventory host whose Docker runs the one-off container
    image: str  # the release image of the `from:` service
    network: str  # the compose project's network on that host (services by name)
    timeout: float
    phases: Mapping[str, PhaseSpec] = field(default_factory=dict)  # "pre"/"post"
    env: Mapping[str, str] = field(default_factory=dict)  # plain variables
    secret_env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def phase(self, name: Phase) -> PhaseSpec | None:
        return self.phases.get(name)


def migration_host(env: ResolvedEnvironment) -> str:
    """``migrations.host``, or the first host that runs the ``from:`` service."""
    migrations = env.migrations
    assert migrations is not None
    if migrations.host is not None:
        if migrations.host not in {h.name for h in env.hosts}:
            raise PlanError(f"migrations.host {migrations.host} is not a host of "
                            f"environment {env.name}",
                            hint=f"use one of: {', '.join(h.name for h in env.hosts)}")
        return migrations.host
    service = env.services.get(migrations.from_)
    if service is None:
        raise PlanError(f"migrations.from names no service: {migrations.from_}",
                        hint=f"use one of: {', '.join(sorted(env.services))}")
    for host in env.hosts:
        if set(host.roles) & set(service.on):
            return host.name
    raise PlanError(f"no host of environment {env.name} runs {migrations.from_}, the "
                    "service migrations run from",
                    hint="set migrations.host, or give a host one of the service's roles")


def phase_specs(env: ResolvedEnvironment) -> dict[str, PhaseSpec]:
    """The configured phases (``pre``, ``post``) as engine inputs."""
    migrations = env.migrations
    specs: dict[str, PhaseSpec] = {}
    if migrations is None:
        return specs
    for phase, found in (("pre", migrations.pre_deploy), ("post", migrations.post_deploy)):
        if found is None:
            continue
        specs[phase] = PhaseSpec(
            phase=phase,  # type: ignore[arg-type]
            path=found.path,
            command=tuple(found.command) if found.command else None,
            status_command=tuple(found.status_command) if found.status_command else None)
    return specs


def migration_setup(env: ResolvedEnvironment, project_dir: Path,
                    images: Mapping[str, str]) -> MigrationSetup | None:
    """The migration setup of a release with ``images``; None without ``migrations:``."""
    from stagecraft.config.values import parse_duration
    from stagecraft.providers.secrets import resolve_reference, resolve_secrets
    from stagecraft.render.compose import project_name

    migrations = env.migrations
    if migrations is None or not phase_specs(env):
        return None
    service = env.services[migrations.from_]
    image = images.get(migrations.from_)
    if image is None:
        raise PlanError(f"the release has no image for {migrations.from_}, the service "
                        "migrations run from", hint="check migrations.from in stagecraft.yml")
    secrets = dict(resolve_secrets(env, project_dir, names=service.secrets))
    secrets[DATABASE_URL_VAR] = resolve_reference(env, project_dir, migrations.database_url)
    return MigrationSetup(
        engine_name=migrations.engine,
        host=migration_host(env),
        image=image,
        network=f"{project_name(env)}_default",
        timeout=parse_duration(migrations.timeout),
        phases=phase_specs(env),
        env={name: str(value) for name, value in service.env.items()},
        secret_env=secrets,
    )


def engine_for(setup: MigrationSetup) -> Migrator:
    from stagecraft.migrations.registry import get_migrator

    return get_migrator(setup.engine_name)


class PlaybookRunner:
    """A ContainerRunner that runs each command through stagecraft.platform.migrate (role
    ``migrations``) on the setup's host: the production path of every migration."""

    def __init__(self, fleet: Fleet, setup: MigrationSetup, *, label: str,
                 on_event: OnEvent | None = None) -> None:
        self.fleet = fleet
        self.setup = setup
        self.label = label  # names the runs: <stamp>-migrate-<label>-<env>
        self.on_event = on_event
        self.runs: list[Path] = []

    def run(self, command: ContainerCommand, *, timeout: float) -> Completed:
        from stagecraft.ansible.bundle import prepare
        from stagecraft.ansible.request import RunRequest, SshSettings
        from stagecraft.ansible.runner import run as run_bundle
        from stagecraft.migrations.runner import completed_from_result, role_vars
        from stagecraft.paths import host_root_extravars
        from stagecraft.render.inventory import render_inventory

        fleet, setup = self.fleet, self.setup
        access = fleet.access
        variables = role_vars(setup.image, command, timeout=timeout,
                              env=setup.env, network=setup.network,
                              changed_when_applied=setup.engine_name == "raw")
        variables.pop("migrations_secret_env")
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        request = RunRequest(
            run_id=f"{stamp}-migrate-{self.label}-{fleet.env.name}-"
                   f"{int(time.time() * 1000) % 1000:03d}",
            playbook="migrate.yml",
            inventory=render_inventory(fleet.env, dict(fleet.records), fleet.connection),
            extravars={**host_root_extravars(), "migrations_host": setup.host, **variables},
            secret_extravars={"migrations_secret_env": dict(setup.secret_env)},
            ssh=SshSettings.of(access),
        )
        bundle = prepare(request, fleet.runs_dir)
        result = run_bundle(bundle, on_event=self.on_event)
        self.runs.append(Path(result.artifacts_dir))
        found = _migration_result(result.events)
        if found is None:
            result.raise_for_status()  # unreachable host, bad inventory: the run's error
            raise RunFailed(f"the migration run on {setup.host} recorded no outcome",
                            hint=f"see {result.artifacts_dir}")
        return completed_from_result(found)


def _migration_result(events: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The ``migrations_result`` fact the role set, from the run's events (the last one)."""
    found: Mapping[str, Any] | None = None
    for event in events:
        res = (event.get("event_data") or {}).get("res")
        if isinstance(res, Mapping):
            facts = res.get("ansible_facts")
            if isinstance(facts, Mapping) and isinstance(facts.get("migrations_result"), Mapping):
                found = facts["migrations_result"]
    return found


@dataclass
class PhaseOutcome:
    """How one migration phase went, for the ledger and the display."""

    phase: Phase
    engine: str
    host: str
    report: Report | None = None
    error: MigrationFailed | None = None
    seconds: float = 0.0

    def to_record(self) -> MigrationRecord:
        output = self.report.output if self.report is not None else \
            (self.error.output if self.error is not None else "")
        return MigrationRecord(
            phase=self.phase, engine=self.engine, host=self.host,
            status=PhaseStatus.OK if self.error is None else PhaseStatus.FAILED,
            applied=list(self.report.applied_now) if self.report else [],
            pending_after=list(self.report.pending) if self.report else [],
            output=output[-4000:], seconds=round(self.seconds, 2))


def run_phase(fleet: Fleet, setup: MigrationSetup, phase: Phase, *,
              on_event: OnEvent | None = None) -> PhaseOutcome:
    """Apply the pending migrations of ``phase``; MigrationFailed is caught into the
    outcome (the caller decides what a failure means for the release)."""
    spec = setup.phase(phase)
    assert spec is not None
    outcome = PhaseOutcome(phase=phase, engine=setup.engine_name, host=setup.host)
    runner = PlaybookRunner(fleet, setup, label=phase, on_event=on_event)
    started = time.monotonic()
    try:
        outcome.report = engine_for(setup).apply(spec, runner, timeout=setup.timeout)
    except MigrationFailed as exc:
        outcome.error = exc
    finally:
        outcome.seconds = time.monotonic() - started
    return outcome


def pending(fleet: Fleet, setup: MigrationSetup, phase: Phase, *,
            on_event: OnEvent | None = None) -> Report:
    """What ``phase`` would apply now (changes nothing)."""
    spec = setup.phase(phase)
    assert spec is not None
    runner = PlaybookRunner(fleet, setup, label=f"{phase}-plan", on_event=on_event)
    return engine_for(setup).pending(spec, runner, timeout=setup.timeout)


# ------------------------------------------------------- outside a deploy (CLI)


def release_for(fleet: Fleet, release_id: str | None) -> Any:
    """The release whose images migrations run in: ``release_id``, or the newest
    succeeded one (what the hosts run)."""
    ledger = fleet.ledger
    if release_id is not None:
        return ledger.get(release_id, fleet.env.name)
    found = ledger.last_successful(fleet.env.name)
    if found is None:
        raise PlanError(f"environment {fleet.env.name} has no successful release whose "
                        "image could run the migrations", hint="deploy first, or pass --release")
    return found


def setup_for_release(fleet: Fleet, release: Any) -> MigrationSetup:
    """The migration setup with the images of a recorded release."""
    if fleet.env.migrations is None:
        raise PlanError(f"environment {fleet.env.name} has no migrations",
                        hint="add a migrations: section to stagecraft.yml")
    images = {name: image.ref for name, image in release.images.items()}
    setup = migration_setup(fleet.env, fleet.project_dir, images)
    if setup is None:
        raise PlanError("migrations: has neither pre_deploy nor post_deploy",
                        hint="add migrations.pre_deploy or migrations.post_deploy")
    return setup


def wanted_phases(setup: MigrationSetup, phase: str | None) -> list[Phase]:
    phases: list[Phase] = [p for p in ("pre", "post") if setup.phase(p) is not None]  # type: ignore[misc]
    if phase is None:
        return phases
    if phase not in phases:
        raise PlanError(f"migrations has no {phase}_deploy set",
                        hint=f"configured phases: {', '.join(phases) or 'none'}")
    return [phase]  # type: ignore[list-item]


def plan_migrations(fleet: Fleet, *, phase: str | None = None,
                    release_id: str | None = None) -> dict[str, Any]:
    """`migrate plan`: per phase, every migration and whether it is applied."""
    release = release_for(fleet, release_id)
    setup = setup_for_release(fleet, release)
    phases = {}
    for name in wanted_phases(setup, phase):
        report = pending(fleet, setup, name)
        phases[name] = {"migrations": [{"name": m.name, "applied": m.applied}
                                       for m in report.migrations],
                        "pending": list(report.pending)}
    return {"environment": fleet.env.name, "release": release.id,
            "engine": setup.engine_name, "host": setup.host, "image": setup.image,
            "phases": phases}


def run_migrations(fleet: Fleet, *, phase: str, release_id: str | None = None,
                   message: str = "", lock_wait: float = 0.0,
                   say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """`migrate run`: apply one phase outside a deploy, under the deploy lock, and
    add its record to the release it ran with."""
    from stagecraft.hosts.lock import LockInfo, acquire, release as release_lock
    from stagecraft.ledger.recorder import ReleaseRecorder

    env = fleet.env
    release = release_for(fleet, release_id)
    setup = setup_for_release(fleet, release)
    (name,) = wanted_phases(setup, phase)
    info = LockInfo.new(release.id, message or f"migrate {phase}", command="migrate")
    primary = fleet.primary
    acquire(primary, env.project.name, env.name, info, wait=lock_wait,
            on_wait=lambda holder: say(f"waiting for the deploy lock: {holder.describe()}"))
    try:
        say(f"migrate-{name}: {setup.engine_name} migrations on {setup.host} ({setup.image})")
        outcome = run_phase(fleet, setup, name)
        record = outcome.to_record()
        ReleaseRecorder(fleet.ledger, env.name, release).record_migration(record)
    finally:
        release_lock(primary, env.project.name, env.name, info)
    if outcome.error is not None:
        raise outcome.error
    return {"environment": env.name, "release": release.id, **record.model_dump(mode="json")}


def release_migrations(fleet: Fleet, action: str, images: Mapping[str, str], *,
                       check: bool, say: Callable[[str], None]) -> MigrationSetup | None:
    """The release's migration setup; None when there is nothing to run (no
    ``migrations:``, a rollback, or a dry run, which only says what would run)."""
    if action != "deploy" or fleet.env.migrations is None:
        return None
    setup = migration_setup(fleet.env, fleet.project_dir, images)
    if setup is not None and check:
        for phase in ("pre", "post"):
            if setup.phase(phase) is not None:
                say(f"migrate-{phase}: would apply pending {setup.engine_name} migrations "
                    f"on {setup.host} (dry run: not run)")
        return None
    return setup


def migration_hints(env: ResolvedEnvironment) -> dict[str, list[str]]:
    """The plan's lines for the migration phases a deploy of ``env`` runs (which
    migrations are pending is known once the new image runs: `migrate plan`)."""
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
