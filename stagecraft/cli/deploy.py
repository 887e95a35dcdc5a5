"""`stagecraft deploy`: build, plan and roll out a release of an environment."""

from __future__ import annotations

import click

from stagecraft.cli.context import AppContext, command


def release_options(func):
    """Options deploy and rollback share."""
    func = click.option("--yes", "-y", is_flag=True, help="Do not ask before changing hosts.")(func)
    func = click.option("--message", "-m", default="", help="Why: kept in the lock, ledger and audit log.")(func)
    func = click.option("--lock-wait", default="0s", metavar="DURATION",
                        help="Wait this long for another deploy's lock (e.g. 5m).")(func)
    func = click.option("--skip-hooks", is_flag=True,
                        help="Do not run the hooks in .stagecraft/hooks/.")(func)
    func = click.option("--force", is_flag=True,
                        help="Also recreate stateful services whose definition changed.")(func)
    return func


def run_release(app: AppContext, action, **kwargs):
    """Run deploy/rollback with live progress; print the outcome; raise on failure."""
    from stagecraft.config.values import parse_duration
    from stagecraft.deploy.engine import DeployOptions
    from stagecraft.hosts.fleet import Fleet
    from stagecraft.errors import UsageError
    from stagecraft.ui.plan import plan_text
    from stagecraft.ui.progress import progress_view

    try:
        lock_wait = parse_duration(kwargs.pop("lock_wait"))
    except ValueError as exc:
        raise UsageError(f"--lock-wait: {exc}", hint="write a duration like 30s or 5m") from None
    yes = kwargs.pop("yes")
    env = app.environment()
    fleet = Fleet.load(env, app.load().project_dir)
    # Only --yes skips the question; --quiet prints less but still asks on a terminal.
    # Without a terminal there is nobody to ask: the plan is applied (as with --yes).
    interactive = app.can_ask() and not app.json and not yes and not app.dry_run

    def confirm(plan) -> bool:
        if interactive:
            click.echo(plan_text(plan), err=True)  # the question is about this plan
            return click.confirm("apply this plan?", default=False, err=True)
        if not app.json and not app.quiet:
            click.echo(plan_text(plan), err=True)
        return True

    options = DeployOptions(skip_build=kwargs.pop("skip_build", False), force=kwargs.pop("force"),
                            check=app.dry_run, lock_wait=lock_wait,
                            message=kwargs.pop("message"), verbosity=app.verbose,
                            skip_hooks=kwargs.pop("skip_hooks"), confirm=confirm)
    verbosity = -1 if app.quiet else app.verbose
    with progress_view(app.output, verbosity) as view:
        outcome = action(fleet, options, say=app.say, on_event=view.update, **kwargs)
    return outcome


def print_outcome(app: AppContext, outcome, verb: str) -> None:
    def text(data: dict) -> None:
        release = data["release"]
        if release is None and not data["executed"]:
            click.echo(f"{verb}: nothing to do, every host runs what this release would give it")
            return
        if release is None:
            app.say(f"{verb} --dry-run: checked, nothing changed")
            return
        hosts = release["hosts"]
        switched = sorted(h for h, r in hosts.items() if r["switched"])
        click.echo(f"{verb} {release['id']}: {release['result']} "
                   f"({len(switched)}/{len(hosts)} hosts on the release)")
    app.emit(outcome.to_dict(), text)


@command("deploy", short_help="Build and roll out a release of an environment.")
@release_options
@click.option("--skip-build", is_flag=True, help="Reuse the images of the last release.")
def command(app: AppContext, **kwargs) -> None:
    """Build the images, plan the release, take the deploy lock, and roll every host
    to it with zero downtime (phases: lock, build, upload, pull, rollout, finalize,
    unlock). The release is recorded in .stagecraft/releases.json. With --dry-run,
    show the plan and run Ansible in check mode: nothing is built, locked or changed."""
    from stagecraft.deploy.release import deploy

    outcome = run_release(app, deploy, **kwargs)
    print_outcome(app, outcome, "deploy")
