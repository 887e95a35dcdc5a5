"""`stagecraft bootstrap`: make an environment's hosts ready for deploys."""

from __future__ import annotations

import click

from stagecraft.cli.context import AppContext, command


def bootstrap_hosts(app: AppContext, env, cloud, spec, state_dir, limit: str | None = None):
    """Run the bootstrap playbook with live progress; raise on failure."""
    from stagecraft.infra.bootstrap import bootstrap_request, run_bootstrap
    from stagecraft.ui.progress import progress_view

    request = bootstrap_request(env, cloud, spec, state_dir, check=app.dry_run,
                                verbosity=app.verbose, limit=limit)
    runs_dir = app.load().project_dir / ".stagecraft" / "runs"
    with progress_view(app.output, -1 if app.quiet else app.verbose,
                       run_id=request.run_id) as view:
        result = run_bootstrap(request, runs_dir, on_event=view.update)
    result.raise_for_status()
    return result


@command("bootstrap", short_help="Prepare the hosts of an environment for deploys.")
@click.option("--limit", default=None, metavar="HOSTS", help="Only these hosts (Ansible pattern).")
def command(app: AppContext, limit: str | None) -> None:
    """Install Docker Engine and Compose, a deploy user, sshd hardening, time sync,
    security updates and the /opt/stagecraft layout on every host (role bootstrap).
    Idempotent: a second run changes nothing. --dry-run runs in check mode."""
    from stagecraft.hosts.fleet import cloud_for, fleet_spec, state_dir

    env = app.environment()
    result = bootstrap_hosts(app, env, cloud_for(env), fleet_spec(env),
                             state_dir(app.load().project_dir, env.name), limit)

    def text(data: dict) -> None:
        changed = sum(h["changed"] for h in data["hosts"].values())
        app.say(f"bootstrap of {env.name}: {len(data['hosts'])} host(s) ok, "
                f"{changed} change(s), {data['duration']:.1f} s")

    app.emit(result.to_dict(), text)
