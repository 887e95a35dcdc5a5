"""`stagecraft dev [down|status]`: the app on this machine (spec/cli/dev.md)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from stagecraft.cli.context import AppContext, group
from stagecraft.cli.context import command as subcommand

DEFAULT_ENV = "dev"
DETACH_TIMEOUT = 300.0


@group("dev", invoke_without_command=True,
       short_help="Run the app on this machine: infra, dev servers, HTTPS routes.")
@click.option("--detach", "-d", is_flag=True,
              help="Run in the background; `stagecraft dev down` stops it.")
@click.option("--no-hosts", is_flag=True,
              help="Never write /etc/hosts (names that do not resolve stay unresolved).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before writing /etc/hosts.")
@click.option("--trust-ca", is_flag=True,
              help="Install mkcert's CA in this machine's trust stores (`mkcert -install`).")
@click.option("--https-port", type=click.IntRange(1, 65535), default=None,
              help="Traefik's HTTPS port (default: a free one).")
@click.option("--http-port", type=click.IntRange(1, 65535), default=None,
              help="Traefik's HTTP port, redirecting to HTTPS (default: a free one).")
@click.option("--child", is_flag=True, hidden=True)
@click.pass_context
def command(ctx: click.Context, app: AppContext, detach: bool, no_hosts: bool, yes: bool,
            trust_ca: bool, https_port: int | None, http_port: int | None, child: bool) -> None:
    """Run the environment (default `dev`) on this machine: its infra services
    (databases, `dev: infra`) with Docker Compose, the backend and frontend dev
    servers supervised, and Traefik routing each route's host over HTTPS (mkcert).

    Ctrl-C stops everything. `dev status` shows a running session, `dev down` stops a
    detached one.
    """
    if ctx.invoked_subcommand is not None:
        return
    from stagecraft.dev import certs, session
    from stagecraft.providers.secrets import resolve_secrets

    loaded = app.load()
    env = loaded.environment(app.env or DEFAULT_ENV)
    project_dir = loaded.project_dir
    secrets = dict(resolve_secrets(env, project_dir))
    prepared = session.prepare(env, project_dir, secrets, https_port=https_port,
                               http_port=http_port, write_hosts=not no_hosts)
    if prepared.hosts_names and not yes:
        question = (f"add {', '.join(prepared.hosts_names)} to {session.hosts.HOSTS_FILE} "
                    "(removed when dev stops)?")
        if app.can_ask() and not child and click.confirm(question, default=True, err=True):
            pass
        else:
            if not app.can_ask():
                app.say(f"not writing {session.hosts.HOSTS_FILE} without --yes: "
                        f"{', '.join(prepared.hosts_names)} may not resolve")
            prepared.unresolved = list(prepared.hosts_names)
            prepared.hosts_names = []
    if trust_ca:
        certs.install_ca()
        app.say(f"installed mkcert's CA ({prepared.certificate.ca_file}) in this machine's "
                "trust stores")
    if detach and not child:
        _detach(app, prepared, loaded.path, hosts=bool(prepared.hosts_names))
        return
    colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ and not app.json
    session.run(prepared, sys.stdout, colour=colour, say=app.say,
                on_ready=lambda table: app.emit(table, lambda data: _print_table(data)))


def _detach(app: AppContext, prepared: Any, config_path: Path, *, hosts: bool) -> None:
    """Start the session in its own process session, wait until it is ready (or
    failed), print its table."""
    from stagecraft.dev import session
    from stagecraft.errors import CommandFailed

    paths, plan = prepared.paths, prepared.plan
    argv = [sys.executable, "-m", "stagecraft", "dev", "--child",
            "--env", plan.environment, "--config", str(config_path),
            "--https-port", str(plan.https_port), "--http-port", str(plan.http_port),
            "--yes" if hosts else "--no-hosts"]
    paths.logs.mkdir(parents=True, exist_ok=True)
    log_path = paths.logs / "dev.log"
    with open(log_path, "ab") as log:
        child = subprocess.Popen(argv, cwd=prepared.project_dir, stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                 env={**os.environ, "NO_COLOR": "1"})
    app.say(f"dev session started in the background (pid {child.pid}); output in {log_path}")
    deadline = time.monotonic() + DETACH_TIMEOUT
    while time.monotonic() < deadline:
        state = session.read_state(paths)
        if state is not None and state.get("pid") == child.pid:
            if state.get("status") == "ready":
                app.emit(state["table"], lambda data: _print_table(data))
                return
            if state.get("status") == "failed":
                break
        if child.poll() is not None:
            break
        time.sleep(0.2)
    else:
        session.stop_session(paths, app.say)
        raise CommandFailed(f"the dev session was not ready within {DETACH_TIMEOUT:g} s",
                            hint=f"its output is in {log_path}")
    child.wait(timeout=60)
    tail = "\n".join(log_path.read_text(errors="replace").strip().splitlines()[-15:])
    raise CommandFailed(f"the dev session stopped before it was ready:\n{tail}",
                        hint=f"its whole output is in {log_path}")


def _print_table(data: dict[str, Any]) -> None:
    rows = data["rows"]
    headers = ("service", "URL", "runs", "log")
    cells = [(r["service"], " ".join(r["urls"]) or "-", r["runs"], r["log"]) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    for line in [headers, *cells]:
        click.echo("  ".join(text.ljust(widths[i]) for i, text in enumerate(line)).rstrip())
    click.echo(f"HTTPS certificates from mkcert's CA {data['ca_file']} "
               "(trusted once `stagecraft dev --trust-ca` or `mkcert -install` ran)")
    if data.get("unresolved"):
        click.echo(f"not in /etc/hosts (may not resolve): {', '.join(data['unresolved'])}")
    if data.get("skipped"):
        click.echo(f"not run in dev: {', '.join(data['skipped'])} (`dev: skip`)")


@subcommand("status")
def status(app: AppContext) -> None:
    """The running dev session of this project: what runs where, and whether it is alive."""
    from stagecraft.dev import session

    paths = session.Paths.of(app.load().project_dir)
    state = session.read_state(paths)
    if state is None:
        app.emit({"running": False}, "no dev session runs for this project")
        return
    alive = session.pid_alive(state.get("pid"))
    groups = {name: session.pid_alive(int(pid)) for name, pid in (state.get("groups") or {}).items()}
    data = {"running": alive, "status": state.get("status") if alive else "gone",
            "pid": state.get("pid"), "processes": groups, "table": state.get("table")}

    def text(data: dict[str, Any]) -> None:
        click.echo(f"dev session pid {data['pid']}: {data['status']}"
                   + ("" if data["running"] else " (run `stagecraft dev down` to clean up)"))
        for name, up in sorted(data["processes"].items()):
            click.echo(f"  {name}: {'running' if up else 'not running'}")
        if data.get("table"):
            _print_table(data["table"])

    app.emit(data, text)


@subcommand("down")
def down(app: AppContext) -> None:
    """Stop the dev session of this project (a detached one, or what a crashed one
    left: processes, infra containers, /etc/hosts lines)."""
    from stagecraft.dev import session

    paths = session.Paths.of(app.load().project_dir)
    stopped = session.stop_session(paths, app.say)
    app.emit({"stopped": stopped},
             "dev session stopped" if stopped else "no dev session runs for this project")


command.add_command(status)
command.add_command(down)
