"""`stagecraft secrets list|sync`: the secrets the config references, and copying their
values to GitHub or to the hosts. Names are printed, values never."""

from __future__ import annotations

import click

from stagecraft.cli.context import AppContext, group
from stagecraft.cli.context import command as subcommand


@group("secrets", short_help="Show and sync the secrets the config references.")
def command(app: AppContext) -> None:
    """The ${secret:NAME} values of an environment, from its secrets provider
    (providers.secrets). Only names are ever shown."""


@subcommand("list")
def list_(app: AppContext) -> None:
    """Every secret name the environment references, where it is used, and whether the
    secrets provider has a value for it."""
    from stagecraft.providers.secrets.references import secrets_report

    report = secrets_report(app.environment(), app.load().project_dir)

    def text(data) -> None:
        click.echo(f"secrets of {data['environment']} (provider {data['provider']}):")
        if not data["secrets"]:
            click.echo("  none referenced")
        for row in data["secrets"]:
            state = "ok     " if row["in_provider"] else "MISSING"
            click.echo(f"  {state} {row['name']}  ({', '.join(row['used_by'])})")
        missing = [r["name"] for r in data["secrets"] if not r["in_provider"]]
        if missing:
            click.echo(f"{len(missing)} missing: add them to the secrets provider")
    app.emit(report, text)


def _confirm(app: AppContext, yes: bool, question: str, what: str) -> None:
    """Ask before changing anything; without a terminal only --yes goes on."""
    from stagecraft.errors import UsageError

    if yes or app.dry_run:
        return
    if not app.can_ask():
        raise UsageError(f"{what} needs confirmation, and there is no terminal to ask on",
                         hint="pass --yes to go ahead (or --dry-run to only see the plan)")
    if not click.confirm(question, default=False, err=True):
        raise click.exceptions.Abort()


@subcommand("sync")
@click.option("--to", "target", type=click.Choice(["github", "hosts"]), required=True,
              help="github: Actions secrets of the repository; hosts: a new release "
                   "whose env files carry the values.")
@click.option("--repo", metavar="OWNER/NAME",
              help="GitHub repository (default: from `git remote get-url origin`).")
@click.option("--environment-scope", "github_environment", metavar="NAME",
              help="GitHub environment to write to (default: the stagecraft "
                   "environment's name).")
@click.option("--repo-level", is_flag=True,
              help="Write repository secrets instead of a GitHub environment's.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before changing anything.")
def sync(app: AppContext, target: str, repo: str | None, github_environment: str | None,
         repo_level: bool, yes: bool) -> None:
    """Copy the values of every secret the environment references from the secrets
    provider to GitHub (sealed to the repository's or GitHub environment's public key)
    or to the hosts (a deploy of the last release's images with the new values). Shows
    the plan first (names only); --dry-run stops there."""
    from stagecraft.errors import UsageError

    if target == "hosts" and (repo or github_environment or repo_level):
        raise UsageError("--repo, --environment-scope and --repo-level are for --to github")
    if repo_level and github_environment:
        raise UsageError("--repo-level and --environment-scope exclude each other",
                         hint="pick one: repository secrets, or one GitHub environment's")
    if target == "github":
        _sync_github(app, repo, None if repo_level else (github_environment or
                                                         app.environment().name), yes)
    else:
        _sync_hosts(app, yes)


def _sync_github(app: AppContext, repo_name: str | None, github_environment: str | None,
                 yes: bool) -> None:
    from stagecraft.providers.ci.github_sync import apply_github, plan_github
    from stagecraft.providers.secrets.references import referenced_secrets, values_for
    from stagecraft.providers.ci.github_api import GitHubClient, repo_of

    env = app.environment()
    project_dir = app.load().project_dir
    repo = repo_of(project_dir, repo_name)
    names = referenced_secrets(env)
    client = GitHubClient.from_env(on_retry=app.say)
    values = values_for(env, project_dir, names)  # before GitHub: a missing one stops here
    plan = plan_github(client, repo, github_environment, names)
    if not app.json:
        click.echo(f"secrets of {env.name} -> GitHub, {plan.scope}:")
        for label, rows in (("create", plan.create), ("update", plan.update),
                            ("leave ", plan.left_alone)):
            for name in rows:
                note = "  (on GitHub, not referenced: left alone)" if label == "leave " else ""
                click.echo(f"  {label}  {name}{note}")
        if plan.update:
            click.echo("  (GitHub shows no values, so every referenced secret it has is "
                       "written again: update)")
    changes = len(plan.create) + len(plan.update)
    if app.dry_run or not changes:
        data = {**plan.to_dict(), "dry_run": app.dry_run}
        app.emit(data, "dry run: nothing written" if app.dry_run else "nothing to write")
        return
    _confirm(app, yes, f"write {changes} secret(s) to {plan.scope}?",
             f"writing {changes} secret(s) to GitHub")
    apply_github(client, repo, plan, values, app.say)
    created = sum(1 for r in plan.done.values() if r == "created")
    app.emit({**plan.to_dict(), "dry_run": False},
             f"wrote {len(plan.done)} secret(s) to {plan.scope}: {created} created, "
             f"{len(plan.done) - created} updated")


def _sync_hosts(app: AppContext, yes: bool) -> None:
    from stagecraft.cli.deploy import print_outcome
    from stagecraft.deploy.engine import DeployOptions
    from stagecraft.hosts.fleet import Fleet
    from stagecraft.deploy.secrets_sync import plan_hosts, sync_hosts
    from stagecraft.providers.secrets.references import values_for
    from stagecraft.providers.secrets import needed_secrets
    from stagecraft.ui.progress import progress_view

    env = app.environment()
    fleet = Fleet.load(env, app.load().project_dir)
    values = values_for(env, fleet.project_dir, needed_secrets(env))
    plan = plan_hosts(fleet, values)
    if not app.json:
        click.echo(f"secrets of {env.name} -> hosts (env files of the release they run):")
        for host, services in plan.items():
            for service, names in services.items():
                click.echo(f"  {host}  {service}: {', '.join(names)}")
    if not plan:
        app.emit({"to": "hosts", "environment": env.name, "differ": {}, "release": None,
                  "dry_run": app.dry_run},
                 "every host's env files hold the provider's values: nothing to do")
        return
    if app.dry_run:
        app.emit({"to": "hosts", "environment": env.name, "differ": plan, "release": None,
                  "dry_run": True}, "dry run: no release made")
        return
    _confirm(app, yes, "deploy a release with these values (same images)?",
             "a secrets sync to the hosts (a new release)")
    def show(release_plan) -> bool:  # asked already: the release's plan is only shown
        from stagecraft.ui.plan import plan_text

        if not app.json and not app.quiet:
            click.echo(plan_text(release_plan), err=True)
        return True

    options = DeployOptions(skip_build=True, message="secrets sync", verbosity=app.verbose,
                            confirm=show)
    with progress_view(app.output, -1 if app.quiet else app.verbose) as view:
        outcome = sync_hosts(fleet, plan, options, say=app.say, on_event=view.update)
    if app.json:
        app.emit({"to": "hosts", "environment": env.name, "differ": plan, "dry_run": False,
                  **outcome.to_dict()})
    else:
        print_outcome(app, outcome, "secrets sync")


command.add_command(list_, "list")
command.add_command(sync)
