"""What every command shares: global flags, the loaded config, output helpers."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

from stagecraft import log, steps

OUTPUT_CHOICES = ("text", "json")


@dataclass
class AppContext:
    """Global flags after parsing (command-line > STAGECRAFT_* variable > default)."""

    config_path: str | None = None
    env: str | None = None
    verbose: int = 0
    quiet: bool = False
    dry_run: bool = False
    output: str = "text"
    debug: bool = False
    rehearse: bool = False
    _loaded: Any = field(default=None, repr=False)
    _environments: dict = field(default_factory=dict, repr=False)

    @property
    def json(self) -> bool:
        return self.output == "json"

    def load(self):
        """The loaded, validated config (cached). Raises ConfigError."""
        if self._loaded is None:
            from stagecraft.config import find_config, load_config

            self._loaded = load_config(find_config(self.config_path))
        return self._loaded

    def environment(self):
        """The resolved environment chosen with --env (or the only one); with
        --rehearse, its rehearsal on a twin of its cloud (stagecraft/infra/rehearsal.py)."""
        if self.env not in self._environments:
            env = self.load().environment(self.env)
            if self.rehearse:
                from stagecraft.infra.rehearsal import rehearse

                env = rehearse(env, self.load().project_dir, log=self.say)
            self._environments[self.env] = env
        return self._environments[self.env]

    def emit(self, data: Any, text: Callable[[Any], None] | str | None = None) -> None:
        """Print a command's result: JSON on stdout, or the text view of it."""
        if self.json:
            click.echo(json.dumps(data, indent=None, default=str))
        elif callable(text):
            text(data)
        elif text is not None:
            click.echo(text)

    def say(self, message: str) -> None:
        """A human progress line on stderr (silent with --quiet or --output json)."""
        if not self.quiet and not self.json:
            steps.echo(message, lambda line: click.echo(line, err=True))

    def can_ask(self) -> bool:
        """Whether a question can be asked: stdin is a terminal. --quiet and --output
        json change what is printed, never whether a command asks: only --yes does."""
        return sys.stdin.isatty()

    def live_steps(self) -> bool:
        """Whether long steps get a live line (stderr is a terminal, not --quiet, not json)."""
        return not self.quiet and not self.json and sys.stderr.isatty()


def _app(ctx: click.Context) -> AppContext:
    root = ctx.find_root()
    if not isinstance(root.obj, AppContext):
        root.obj = AppContext()
    return root.obj


def _setter(attr: str, *, count: bool = False) -> Callable:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        # Not given at this level: keep what the root (or its env var) set.
        if value is None or (count and not value):
            return
        if getattr(param, "is_flag", False) and value is False:
            return
        app = _app(ctx)
        if count:
            app.verbose = max(app.verbose, int(value))
        else:
            setattr(app, attr, value)

    return callback


def global_options(*, root: bool = False) -> Callable:
    """The global flags. At the root they also read STAGECRAFT_* variables;
    on a subcommand they override what the root set."""

    def env(name: str) -> str | None:
        return f"STAGECRAFT_{name}" if root else None

    options = [
        click.option("--config", "-c", "config_path", metavar="PATH", envvar=env("CONFIG"),
                     default=None, expose_value=False, callback=_setter("config_path"),
                     help="Path of stagecraft.yml (default: found in this or a parent directory)."),
        click.option("--env", "-e", "env", metavar="NAME", envvar=env("ENV"), default=None,
                     expose_value=False, callback=_setter("env"),
                     help="Environment to act on."),
        click.option("--verbose", "-v", "verbose", count=True, envvar=env("VERBOSE"),
                     expose_value=False, callback=_setter("verbose", count=True),
                     help="More detail (repeat for Ansible verbosity)."),
        click.option("--quiet", "-q", "quiet", is_flag=True, default=None, envvar=env("QUIET"),
                     expose_value=False, callback=_setter("quiet"),
                     help="Only warnings and errors."),
        click.option("--dry-run", "dry_run", is_flag=True, default=None, envvar=env("DRY_RUN"),
                     expose_value=False, callback=_setter("dry_run"),
                     help="Show what would change; change nothing."),
        click.option("--output", "output", type=click.Choice(OUTPUT_CHOICES), default=None,
                     envvar=env("OUTPUT"), expose_value=False, callback=_setter("output"),
                     help="text for people, json for machines."),
        click.option("--rehearse", "rehearse", is_flag=True, default=None,
                     envvar=env("REHEARSE"), expose_value=False, callback=_setter("rehearse"),
                     help="Run against a twin of the environment's cloud on this machine "
                     "(DigitalOcean): real droplets as containers, nothing touches the cloud."),
        click.option("--debug", "debug", is_flag=True, default=None, envvar=env("DEBUG"),
                     expose_value=False, callback=_setter("debug"),
                     help="Show tracebacks and debug logs."),
    ]

    def decorate(func: Callable) -> Callable:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def command(name: str, **kwargs: Any) -> Callable:
    """A stagecraft subcommand: click.command with the global flags and the AppContext."""

    def decorate(func: Callable) -> click.Command:
        func = global_options()(func)
        return click.command(name, **kwargs)(click.pass_context(_with_app(func)))

    return decorate


def group(name: str, **kwargs: Any) -> Callable:
    def decorate(func: Callable) -> click.Group:
        func = global_options()(func)
        return click.group(name, **kwargs)(click.pass_context(_with_app(func)))

    return decorate


def _with_app(func: Callable) -> Callable:
    import functools

    @functools.wraps(func)
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        app = _app(ctx)
        log.setup(verbosity=app.verbose, quiet=app.quiet, output=app.output)
        if not app.live_steps() or steps.live():  # a group's view serves its subcommands
            return func(app, *args, **kwargs)
        from rich.console import Console

        from stagecraft.ui.steps import LiveSteps

        view = LiveSteps(Console(stderr=True))
        try:
            with steps.use_view(view):
                return func(app, *args, **kwargs)
        finally:
            view.close()

    return wrapper
