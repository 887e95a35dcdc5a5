"""`stagecraft infra up|down|status`: the hosts of an environment."""

from __future__ import annotations

import time

from collections.abc import Callable

import click

from stagecraft.cli.context import AppContext, command as subcommand, group
from stagecraft.errors import ExitCode, UsageError


@group("infra", short_help="Create, inspect and remove the hosts of an environment.")
def command(app: AppContext) -> None:
    """The hosts of an environment, from its cloud provider (`local`: containers on
    this machine's Docker Engine; `ssh`: servers that exist already, adopted over SSH)."""


def _context(app: AppContext):
    from stagecraft.hosts.fleet import Fleet

    fleet = Fleet.load(app.environment(), app.load().project_dir, require=False)
    return fleet.env, fleet.cloud, fleet.spec, fleet.state_dir


def _print_hosts(records: list, *, show_change: bool) -> None:
    from stagecraft.ui.table import print_table

    sized = any(r.size for r in records)
    columns = (["host", "roles", "state", "ssh", "private ip"] + (["size"] if sized else [])
               + (["change"] if show_change else []))
    rows = []
    for r in records:
        ssh = f"{r.ssh_user}@{r.ssh_host}:{r.ssh_port}" if r.ssh_host else "-"
        row = [r.name + ("" if r.in_spec else " (not listed)"), ",".join(r.roles) or "-",
               r.state, ssh, r.private_ip or "-"]
        if sized:
            row.append(r.size or "-")
        if show_change:
            row.append(r.change or "-")
        rows.append(row)
    print_table(columns, rows)


def _print_plan(plan, environment: str) -> None:
    from stagecraft.ui.table import print_table

    if plan.changes:
        print_table(["resource", "name", "change", "detail"],
                    [[c.kind, c.name, c.action, c.detail or "-"] for c in plan.changes])
    for note in plan.kept:
        click.echo(f"note: {note}")
    click.echo(f"{len(plan.changes)} change(s) to environment {environment}"
               if plan.changes else f"no changes: environment {environment} is as listed")


@subcommand("plan")
@click.option("--prune", is_flag=True,
              help="Also show the deletion of hosts the environment no longer lists.")
@click.option("--down", "for_down", is_flag=True, help="Show what `infra down` would remove.")
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 20 when there are changes, 0 when there are none.")
def plan(app: AppContext, prune: bool, for_down: bool, detailed_exitcode: bool) -> None:
    """Show what `infra up` (or `infra down`) would create, change or delete, from the
    cloud's current state. Changes nothing."""
    env, cloud, spec, state = _context(app)
    result = cloud.plan(spec, state, prune=prune, down=for_down, log=app.say)
    app.emit({"environment": env.name, **result.to_dict(),
              "variables": dict(result.variables)},
             lambda d: _print_plan(result, env.name))
    if detailed_exitcode and result.changed:
        raise SystemExit(ExitCode.CHANGES)


@subcommand("up")
@click.option("--bootstrap", "then_bootstrap", is_flag=True,
              help="Then run `stagecraft bootstrap` on the hosts.")
@click.option("--accept-new-host-keys", is_flag=True,
              help="Trust host keys that nothing vouches for yet, without asking (check "
              "their fingerprints first). A changed host key is refused all the same.")
@click.option("--prune", is_flag=True,
              help="Delete the hosts the environment no longer lists (asks first, naming them).")
@click.option("--yes", "-y", is_flag=True, help="With --prune: delete without asking.")
def up(app: AppContext, then_bootstrap: bool, accept_new_host_keys: bool, prune: bool,
       yes: bool) -> None:
    """Create the environment's hosts (idempotent: existing hosts are left as they are;
    `infra plan` shows what would change).

    Cloud `ssh` adopts servers that exist: a host key that neither the environment's
    known_hosts nor yours vouches for is shown and asked about on a terminal, and
    refused without one unless --accept-new-host-keys is given. Cloud `digitalocean`
    makes droplets, volumes, a VPC and cloud firewalls, and resizes what changed."""
    env, cloud, spec, state = _context(app)
    if app.dry_run:
        result = cloud.plan(spec, state, prune=prune, log=app.say)
        app.emit({"dry_run": True, "environment": env.name, **result.to_dict()},
                 lambda d: _print_plan(result, env.name))
        return
    if prune:
        _confirm_prune(app, cloud.plan(spec, state, prune=True, log=app.say).unlisted,
                       env.name, yes)
    from stagecraft.infra.provision import run_on_controller

    records = cloud.up(spec, state, log=app.say, confirm=_confirm(app, accept_new_host_keys),
                       prune=prune, provisioner=run_on_controller)
    created = sum(r.change in ("created", "started") for r in records)
    data = {"environment": env.name, "changed": created > 0,
            "hosts": [r.to_dict() for r in records]}

    def text(_: dict) -> None:
        _print_hosts(records, show_change=True)
        app.say(f"{created} host(s) created or started, "
                f"{sum(r.change == 'unchanged' for r in records)} unchanged")

    if then_bootstrap:
        from stagecraft.cli.bootstrap import bootstrap_hosts

        if not app.json:
            text(data)
        data["bootstrap"] = bootstrap_hosts(app).to_dict()
        app.emit(data, lambda d: app.say("bootstrap: done"))
        return
    app.emit(data, text)


def _confirm_prune(app: AppContext, unlisted: tuple[str, ...], environment: str,
                   yes: bool) -> None:
    """Deleting hosts needs --yes or a yes on a terminal, naming them."""
    if not unlisted or yes:
        return
    names = ", ".join(unlisted)
    if not app.can_ask():
        raise UsageError(f"--prune would delete host(s) {names} of environment {environment}",
                         hint="run it on a terminal to be asked, or add --yes")
    click.confirm(f"Delete host(s) {names} of environment '{environment}' and everything "
                  "on them?", abort=True, err=True)


def _confirm(app: AppContext, accept: bool) -> Callable[[str], bool] | None:
    """How ``up`` asks before trusting something new: yes with the flag, a question on
    a terminal, else nobody to ask (None: the cloud refuses)."""
    if accept:
        return lambda _question: True
    if app.can_ask():
        return lambda question: click.confirm(question, default=False, err=True)
    return None


def _print_resources(resources) -> None:
    from stagecraft.ui.table import print_table

    if resources.volumes:
        click.echo("")
        print_table(["volume", "size", "attached to", "host"],
                    [[v.name, f"{v.size_gb} GiB" if v.size_gb is not None else "-",
                      v.attached_to or "-", v.host or "-"] for v in resources.volumes])
    if resources.firewalls:
        click.echo("")
        print_table(["firewall", "status", "droplets", "tags", "inbound"],
                    [[f.name, f.status or "-", f.droplets, ", ".join(f.tags) or "-",
                      "; ".join(f.inbound) or "-"] for f in resources.firewalls])


@subcommand("status")
def status(app: AppContext) -> None:
    """List the environment's hosts (name, roles, addresses, state, size), then what
    its cloud made besides them: volumes (size, where attached) and cloud firewalls
    (status, droplets, inbound rules)."""
    from stagecraft.providers.cloud import cloud_resources

    env, cloud, spec, state = _context(app)
    records = cloud.status(spec, state)
    resources = cloud_resources(cloud, spec, state)

    def text(_: dict) -> None:
        _print_hosts(records, show_change=False)
        _print_resources(resources)

    app.emit({"environment": env.name, "hosts": [r.to_dict() for r in records],
              **resources.to_dict()}, text)


@subcommand("down")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def down(app: AppContext, yes: bool) -> None:
    """Remove the environment's hosts, their volumes and network (idempotent)."""
    env, cloud, spec, state = _context(app)
    if not yes and not cloud.capabilities.disposable_hosts:
        click.confirm(f"Remove every host of environment '{env.name}'?", abort=True)
    if app.dry_run:
        result = cloud.plan(spec, state, down=True, log=app.say)
        app.emit({"dry_run": True, "environment": env.name, **result.to_dict()},
                 lambda d: _print_plan(result, env.name))
        return
    from stagecraft.infra.provision import run_on_controller

    if spec.mesh:
        _leave_tailnet(app)
    result = cloud.down(spec, state, log=app.say, provisioner=run_on_controller)

    def text(_: dict) -> None:
        for host in result.hosts:
            click.echo(f"{host.name}  {host.change}")
        for thing in result.removed:
            click.echo(f"removed {thing}")
        if not result.changed:
            click.echo("nothing to remove")

    app.emit({"environment": env.name, **result.to_dict()}, text)


def _leave_tailnet(app: AppContext) -> None:
    """The hosts that joined log out of the tailnet before they go, so no stale node
    stays in it. Best effort: a host that cannot be reached is removed anyway (its
    node then expires, or an admin removes it)."""
    from stagecraft.hosts.fleet import Fleet
    from stagecraft.hosts.mesh import forget_nodes
    from stagecraft.infra.bootstrap import run_bootstrap
    from stagecraft.infra.mesh import LEAVE_DELAY, leave_request
    from stagecraft.ui.progress import progress_view

    fleet = Fleet.load(app.environment(), app.load().project_dir, require=False)
    if fleet.mesh:
        request = leave_request(fleet, verbosity=app.verbose)
        with progress_view(app.output, -1 if app.quiet else app.verbose,
                           run_id=request.run_id) as view:
            result = run_bootstrap(request, fleet.runs_dir, on_event=view.update)
        if result.ok:
            time.sleep(LEAVE_DELAY + 3)  # they log out now, before the cloud removes them
        else:
            app.say(f"warning: some hosts could not leave the tailnet ({result.summary()}); "
                    "remove their nodes in the tailnet's admin console")
    forget_nodes(fleet.state_dir)


command.add_command(plan)
command.add_command(up)
command.add_command(status)
command.add_command(down)
