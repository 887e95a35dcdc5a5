"""`stagecraft ci init`: write the project's CI workflows (plan, deploy, rollback)."""

from __future__ import annotations

import click

from stagecraft.cli.context import AppContext, command as subcommand

DEFAULT_PYTHON = "3.11"


@subcommand("init", short_help="Write the CI workflows of this project.")
@click.option("--provider", "provider", metavar="KIND",
              help="CI system to write workflows for (default: providers.ci.kind of "
                   "stagecraft.yml). Known: github.")
@click.option("--environments", "environments", metavar="A,B",
              help="Environments CI plans and deploys, in deploy order (each after the one "
                   "before). Default: every environment whose hosts are not disposable "
                   "containers on this machine.")
@click.option("--branch", default=None, metavar="NAME",
              help="Branch whose pushes deploy (default: the remote's default branch, "
                   "else main).")
@click.option("--python", "python_version", default=DEFAULT_PYTHON, show_default=True,
              metavar="VERSION", help="Python version the jobs run stagecraft with.")
@click.option("--install", "install", default=None, metavar="REQUIREMENT",
              help="pip requirement that installs stagecraft in CI "
                   "(default: stagecraft==<this version>).")
@click.option("--requirements", "requirements", default=None, metavar="FILE",
              help="Install from this requirements file instead (relative to the "
                   "repository root); the virtualenv cache is keyed on its hash.")
@click.option("--force", is_flag=True, help="Replace workflow files that differ.")
def command(app: AppContext, provider: str | None, environments: str | None,
            branch: str | None, python_version: str, install: str | None,
            requirements: str | None, force: bool) -> None:
    """Write .github/workflows/stagecraft-{pr,deploy,rollback}.yml at the root of the
    git repository that holds stagecraft.yml (or beside it outside git): plan on pull
    requests, deploy on pushes, rollback on demand. Files that exist with other content
    are kept unless --force; --dry-run writes nothing."""
    from stagecraft import __version__
    from stagecraft.errors import UsageError
    from stagecraft.providers.ci import ci_provider, repository_root, workflow_request
    from stagecraft.providers.ci.writer import write_workflows

    if install and requirements:
        raise UsageError("--install and --requirements both say how to install stagecraft",
                         hint="pass one of them")
    loaded = app.load()
    kind = provider or (loaded.config.providers.ci.kind
                        if loaded.config.providers.ci is not None else None)
    if kind is None:
        raise UsageError("no CI provider: providers.ci is not set in "
                         f"{loaded.path.name} and --provider was not given",
                         hint="pass --provider github, or set providers.ci: "
                              "{kind: github} in stagecraft.yml")
    ci = ci_provider(kind)
    root = repository_root(loaded.project_dir)
    request = workflow_request(
        loaded, environments=_names(environments), branch=branch or _default_branch(root),
        python_version=python_version, install=install or f"stagecraft=={__version__}",
        requirements=requirements, stagecraft_version=__version__,
        disposable=lambda env: _disposable(env, loaded.project_dir))
    written = write_workflows(root, ci.workflows(request), force=force, dry_run=app.dry_run)

    def text(_data) -> None:
        from stagecraft.ui.table import print_table

        print_table(["file", "action", "runs"],
                    [(w.path, w.action, w.purpose) for w in written])
        if not app.dry_run:
            app.say(f"next: add the secrets and environments docs/ci.md lists "
                    f"({', '.join(e.name for e in request.environments)}), then commit "
                    ".github/workflows")

    app.emit({"provider": kind, "root": str(root),
              "environments": [e.name for e in request.environments],
              "secrets": {e.name: sorted({s.secret for s in e.secrets} | {e.ssh_key_secret})
                          for e in request.environments},
              "dry_run": app.dry_run, "files": [w.to_dict() for w in written]}, text)


def _disposable(env, project_dir) -> bool:
    """Whether the environment's cloud makes disposable hosts (its capability)."""
    from stagecraft.hosts.fleet import cloud_for

    return cloud_for(env, project_dir).capabilities.disposable_hosts


def _names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


def _default_branch(root) -> str:
    """The remote's default branch as git last saw it (origin/HEAD), else main."""
    import subprocess

    try:
        found = subprocess.run(["git", "symbolic-ref", "--quiet", "--short",
                                "refs/remotes/origin/HEAD"], cwd=root, capture_output=True,
                               text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "main"
    name = found.stdout.strip()
    return name.split("/", 1)[1] if found.returncode == 0 and "/" in name else "main"
