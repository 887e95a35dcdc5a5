"""`stagecraft init`: create stagecraft.yml and the .stagecraft/ workspace."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from stagecraft.cli.context import AppContext, command
from stagecraft.errors import UsageError
from stagecraft.scaffold import (
    CHOICES,
    TEMPLATE_CHOICES,
    InitOptions,
    default_project_name,
    init_project,
    parse_names,
    parse_services,
)


class _Offered(click.Choice):
    """The choices init offers; a kind the template knows but no provider implements
    yet (cloud digitalocean, ...) is refused with that reason."""

    def __init__(self, option: str) -> None:
        super().__init__(CHOICES[option])
        self.option = option

    def convert(self, value, param, ctx):
        if value in TEMPLATE_CHOICES[self.option] and value not in self.choices:
            self.fail(f"{self.option} '{value}' has no provider yet; what works now: "
                      f"{', '.join(self.choices)}", param, ctx)
        return super().convert(value, param, ctx)


def _choice_option(name: str, help_text: str):
    return click.option(f"--{name}", type=_Offered(name), default=None, help=help_text)


@command("init", short_help="Create stagecraft.yml and the .stagecraft/ workspace.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True, help="Project directory.")
@click.option("--name", default=None, help="Project name (default: the directory's name).")
@click.option("--environments", default=None, metavar="A,B",
              help="Environment names, comma-separated (default: local,production).")
@click.option("--services", default=None, metavar="NAME[:PORT],...",
              help="Web services, comma-separated (default: web:8080).")
@_choice_option("backend", "Backend provider.")
@_choice_option("frontend", "Frontend provider.")
@_choice_option("network", "Private network between hosts.")
@_choice_option("cloud", "Where non-local environments' hosts come from.")
@_choice_option("secrets", "Secrets provider.")
@_choice_option("ci", "CI provider.")
@click.option("--yes", "-y", is_flag=True, help="Take defaults for everything not given; never prompt.")
@click.option("--force", is_flag=True, help="Overwrite an existing stagecraft.yml.")
def command(app: AppContext, directory: Path, name: str | None, environments: str | None,
            services: str | None, backend: str | None, frontend: str | None,
            network: str | None, cloud: str | None, secrets: str | None, ci: str | None,
            yes: bool, force: bool) -> None:
    """Write a complete, valid stagecraft.yml (with a schema line for editors),
    create .stagecraft/ and add it to .gitignore. Prompts for what is not given,
    unless --yes."""
    interactive = not yes
    if interactive and not sys.stdin.isatty():
        raise UsageError("init needs answers and there is no terminal to ask on",
                         hint="pass --yes (with --name, --services, ... as needed)")

    def ask(label: str, value, default, choices=None):
        if value is not None or not interactive or (choices and len(choices) == 1):
            return default if value is None else value
        kind = click.Choice(choices) if choices else str
        return click.prompt(label, default=default, type=kind)

    defaults = InitOptions(name=default_project_name(directory))
    chosen_name = ask("Project name", name, defaults.name)
    parse_names(chosen_name, "project name")
    env_text = ask("Environments", environments, ",".join(defaults.environments))
    service_text = ask("Services (name:port)", services,
                       ",".join(f"{s.name}:{s.port}" for s in defaults.services))
    options = InitOptions(
        name=chosen_name,
        environments=parse_names(env_text, "environment name"),
        services=parse_services(service_text),
        backend=ask("Backend", backend, defaults.backend, CHOICES["backend"]),
        frontend=ask("Frontend", frontend, defaults.frontend, CHOICES["frontend"]),
        network=ask("Network", network, defaults.network, CHOICES["network"]),
        cloud=ask("Cloud (for non-local environments)", cloud, defaults.cloud, CHOICES["cloud"]),
        secrets=ask("Secrets", secrets, defaults.secrets, CHOICES["secrets"]),
        ci=ask("CI", ci, defaults.ci, CHOICES["ci"]),
    )
    if app.dry_run:
        from stagecraft.scaffold import render_config

        app.emit({"written": [], "config": render_config(options)},
                 lambda d: click.echo(d["config"], nl=False))
        return
    written = init_project(directory, options, force=force)
    app.emit({"written": [str(p) for p in written]}, lambda d: [
        click.echo(f"wrote {p}") for p in d["written"]
    ] and click.echo("next: edit stagecraft.yml, then run `stagecraft validate`"))
