"""`stagecraft bootstrap`: make an environment's hosts ready for deploys."""

from __future__ import annotations

import click

from typing import TYPE_CHECKING

from stagecraft.cli.context import AppContext, command

if TYPE_CHECKING:
    from stagecraft.ansible.runner import RunResult
    from stagecraft.hosts.fleet import Fleet


def bootstrap_hosts(app: AppContext, limit: str | None = None) -> RunResult:
    """Run the bootstrap playbook on the environment's hosts (as recorded now) with
    live progress; raise on failure."""
    from stagecraft.hosts.fleet import Fleet
    from stagecraft.infra.bootstrap import bootstrap_request, run_bootstrap
    from stagecraft.ui.progress import progress_view

    fleet = Fleet.load(app.environment(), app.load().project_dir, require=False)
    if fleet.spec.mesh and fleet.records and app.dry_run:
        # Joining would start a control server and log nodes in: nothing a dry run does.
        unjoined = [name for name in fleet.records if name not in fleet.mesh]
        if unjoined:
            app.say(f"dry run: {', '.join(unjoined)} would join the tailnet first")
    elif fleet.spec.mesh and fleet.records:
        join_tailnet(app, fleet, limit)
        # Joined hosts are reached over the tailnet from here on.
        fleet = Fleet.load(fleet.env, fleet.project_dir, require=False)
    request = bootstrap_request(fleet, check=app.dry_run, verbosity=app.verbose, limit=limit)
    runs_dir = fleet.runs_dir
    with progress_view(app.output, -1 if app.quiet else app.verbose,
                       run_id=request.run_id) as view:
        result = run_bootstrap(request, runs_dir, on_event=view.update)
    if not app.dry_run and fleet.cloud.capabilities.deploy_user_logins:
        # Also after a failed run: a host whose sshd already stopped taking root
        # must be reached as the deploy user next time.
        switch_to_deploy_user(fleet)
    result.raise_for_status()
    return result


def join_tailnet(app: AppContext, fleet: Fleet, limit: str | None = None) -> RunResult:
    """Join the hosts to the environment's tailnet (stagecraft.platform.mesh) with live
    progress, starting the cloud's control server first when it runs one; record what
    the hosts that joined report, then raise if some did not."""
    from stagecraft.infra.bootstrap import run_bootstrap
    from stagecraft.infra.mesh import join_request, mesh_server, record_join
    from stagecraft.ui.progress import progress_view

    server = mesh_server(fleet, app.say)
    request = join_request(fleet, server, check=app.dry_run, verbosity=app.verbose,
                           limit=limit)
    with progress_view(app.output, -1 if app.quiet else app.verbose,
                       run_id=request.run_id) as view:
        result = run_bootstrap(request, fleet.runs_dir, on_event=view.update)
    record_join(fleet, result)
    result.raise_for_status()
    return result


def switch_to_deploy_user(fleet: Fleet) -> list[str]:
    """Record the deploy user as the SSH user of every host where it can log in now.
    Returns the hosts switched.

    In rounds: a host behind a bastion is reached through the bastion's user, so it
    is tried again once its bastion switched (root may no longer log in there)."""
    from dataclasses import replace

    from stagecraft.hosts.fleet import Fleet
    from stagecraft.hosts.remote import RemoteHost, in_parallel
    from stagecraft.paths import DEPLOY_USER

    def can_log_in(host: RemoteHost) -> bool:
        as_deploy = replace(host, user=DEPLOY_USER)
        return as_deploy.run("true", check=False, timeout=30).returncode == 0

    switched: list[str] = []
    while True:
        pending = [host for host in fleet.remotes().values() if host.user != DEPLOY_USER]
        answers = in_parallel(pending, can_log_in) if pending else {}
        names = [name for name, ok in answers.items() if ok]
        if not names:
            return switched
        fleet.cloud.bootstrapped(fleet.spec, fleet.state_dir, names, DEPLOY_USER)
        switched += names
        fleet = Fleet.load(fleet.env, fleet.project_dir, require=False)


@command("bootstrap", short_help="Prepare the hosts of an environment for deploys.")
@click.option("--limit", default=None, metavar="HOSTS", help="Only these hosts (Ansible pattern).")
def command(app: AppContext, limit: str | None) -> None:
    """Install Docker Engine and Compose, a deploy user, sshd hardening, time sync,
    security updates and the /opt/stagecraft layout on every host (role bootstrap).
    Idempotent: a second run changes nothing. --dry-run runs in check mode."""
    env = app.environment()
    result = bootstrap_hosts(app, limit)

    def text(data: dict) -> None:
        changed = sum(h["changed"] for h in data["hosts"].values())
        app.say(f"bootstrap of {env.name}: {len(data['hosts'])} host(s) ok, "
                f"{changed} change(s), {data['duration']:.1f} s")

    app.emit(result.to_dict(), text)
