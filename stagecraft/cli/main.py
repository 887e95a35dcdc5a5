"""The `stagecraft` command: global flags, lazy subcommands, the one error handler.

Subcommands are imported only when they run, so `stagecraft --version` and
`stagecraft validate` start fast.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any

import click

from stagecraft import __version__
from stagecraft.cli.context import AppContext, global_options
from stagecraft.errors import ExitCode, StagecraftError

# name -> "module:attribute" (the module lives in stagecraft.cli)
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init", "Create stagecraft.yml and the .stagecraft/ workspace."),
    "validate": ("validate", "Check stagecraft.yml and report every problem."),
    "config": ("config", "Show the resolved configuration of an environment."),
    "schema": ("schema", "Print the JSON Schema of stagecraft.yml."),
    "inventory": ("inventory", "Print the Ansible inventory of an environment."),
    "version": ("version", "Show versions of stagecraft and its tools."),
    "doctor": ("doctor", "Check this machine and an environment's hosts."),
    "completion": ("completion", "Print a shell completion script."),
    "status": ("status", "Show what the hosts run: releases, containers, Traefik, lock."),
    "infra": ("infra", "Create, inspect and remove the hosts of an environment."),
    "bootstrap": ("bootstrap", "Prepare the hosts of an environment for deploys."),
    "plan": ("plan", "Show what a deploy would change."),
    "deploy": ("deploy", "Build and roll out a release of an environment."),
    "rollback": ("rollback", "Roll back to an earlier release."),
    "releases": ("releases", "List and show recorded releases."),
    "build": ("build", "Build (and push) the images of a release."),
    "logs": ("logs", "Show a service's container logs from every host."),
    "ssh": ("ssh", "Open a shell on a host, or run one command there."),
    "exec": ("exec", "Run a command in a service's container."),
    "lock": ("lock", "Show or release the deploy lock."),
    "audit": ("audit", "Show the hosts' audit logs, merged by time."),
    "migrate": ("migrate", "List or run database migrations."),
    "ci": ("ci", "Write CI workflows, start and follow CI runs."),
    "secrets": ("secrets", "Show and sync the secrets the config references."),
    "dev": ("dev", "Run the app on this machine: infra, dev servers, HTTPS routes."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use: ``commands_by_name`` maps each name
    to (module in stagecraft.cli defining ``command``, short help)."""

    commands_by_name: dict[str, tuple[str, str]] = COMMANDS

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands_by_name)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands_by_name:
            return None
        module = importlib.import_module(f"stagecraft.cli.{self.commands_by_name[name][0]}")
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help lists commands without importing them.
        rows = [(name, self.commands_by_name[name][1]) for name in sorted(self.commands_by_name)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _print_version(ctx: click.Context, _param: Any, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"stagecraft {__version__}")
        ctx.exit(0)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Print the version and exit.")
@global_options(root=True)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Plan, render and roll out releases of a containerised app to a fleet of hosts.

    Global options may also come after the command (`stagecraft validate -e prod`)
    or from STAGECRAFT_* environment variables.
    """
    ctx.ensure_object(AppContext)


def _wants_debug(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("STAGECRAFT_DEBUG", "").lower() in ("1", "true", "yes")


def _wants_json(argv: list[str]) -> bool:
    # The last --output on the command line wins, and beats STAGECRAFT_OUTPUT.
    chosen = None
    for index, arg in enumerate(argv):
        if arg.startswith("--output="):
            chosen = arg.partition("=")[2]
        elif arg == "--output":
            chosen = next(iter(argv[index + 1:index + 2]), None)
    if chosen is None:
        chosen = os.environ.get("STAGECRAFT_OUTPUT", "")
    return chosen == "json"


def report_error(error: StagecraftError, *, as_json: bool) -> None:
    """Print an error the one way stagecraft prints errors."""
    click.echo(f"error: {error.message}", err=True)
    if error.hint:
        click.echo(f"hint: {error.hint}", err=True)
    if as_json:
        click.echo(json.dumps(error.to_dict()))


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _wants_debug(args)
    as_json = _wants_json(args)
    try:
        code = cli.main(args=args, prog_name="stagecraft", standalone_mode=False)
    except StagecraftError as error:
        if debug:
            import traceback

            traceback.print_exc()
        report_error(error, as_json=as_json)
        sys.exit(int(error.exit_code))
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    except KeyboardInterrupt:
        click.echo("\nerror: interrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except Exception as error:  # a bug: say so plainly
        if debug:
            import traceback

            traceback.print_exc()
        click.echo(f"error: internal error: {type(error).__name__}: {error}", err=True)
        click.echo("hint: this is a bug in stagecraft; rerun with --debug and report the "
                   "traceback", err=True)
        sys.exit(int(ExitCode.INTERNAL))
    sys.exit(code if isinstance(code, int) else 0)
