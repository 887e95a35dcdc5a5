"""`stagecraft plan`: what a deploy would change, per host and phase."""

from __future__ import annotations

import click

from stagecraft.cli.context import AppContext, command

from stagecraft.errors import ExitCode

EXIT_CHANGES = int(ExitCode.CHANGES)


@command("plan", short_help="Show what a deploy would change.")
@click.option("--force", is_flag=True, help="Plan as `deploy --force` would (stateful services).")
@click.option("--detailed-exitcode", is_flag=True,
              help=f"Exit {EXIT_CHANGES} when there are changes, 0 when there are none.")
def command(app: AppContext, force: bool, detailed_exitcode: bool) -> None:
    """Compare what the environment should run (config, images, Traefik) with what the
    ledger says each host runs, and list per host and phase the services added,
    changed (with the reason), removed and unchanged. Changes nothing; builds nothing:
    built services are expected to change when the source commit differs from the one
    last deployed."""
    from stagecraft.hosts.fleet import Fleet
    from stagecraft.deploy.release import plan_deploy
    from stagecraft.ui.plan import plan_text

    env = app.environment()
    fleet = Fleet.load(env, app.load().project_dir)
    plan, _release_id = plan_deploy(fleet, force=force)
    infra = _infra_changes(fleet)

    def text(_data) -> None:
        click.echo(plan_text(plan))
        if infra:
            click.echo("\nbootstrap would change (stagecraft bootstrap):")
            for change in infra:
                click.echo(f"  {change.host}  {change.kind} {change.name}: {change.detail}")

    app.emit({**plan.to_dict(), "infra": [c.to_dict() for c in infra]}, text)
    if detailed_exitcode and plan.has_changes:
        raise SystemExit(EXIT_CHANGES)


def _infra_changes(fleet):
    """Firewall and volume changes bootstrap would make, from one probe per host."""
    from stagecraft.infra import firewall
    from stagecraft.infra.bootstrap import over_tailnet
    from stagecraft.infra.plan import infra_changes
    from stagecraft.hosts.probe import probe_hosts

    facts = probe_hosts(fleet)
    cloud_vars = fleet.cloud.bootstrap_vars(fleet.spec, fleet.state_dir)
    cidrs = firewall.private_cidrs(cloud_vars, (r.private_ip for r in fleet.records.values()),
                                   tailnet_only=over_tailnet(fleet))
    return infra_changes(fleet.env, facts, cidrs)
