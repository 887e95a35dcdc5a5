"""A `stagecraft dev` session: prepare (plan, ports, certificate, files), run (infra,
Traefik, dev processes, until stopped), and tear down; and what `dev status` and
`dev down` read of it (``.stagecraft/dev/state.json``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from stagecraft.config.schema import ResolvedEnvironment
from stagecraft.dev import certs, hosts
from stagecraft.dev.compose import infra_compose
from stagecraft.dev.plan import LOOPBACK, DevPlan, command_argv, plan_dev
from stagecraft.dev.supervisor import ProcessSpec, Supervisor, stop_groups
from stagecraft.dev.traefik import ROUTES_FILE, STATIC_FILE, routes_config, static_config
from stagecraft.errors import CommandFailed, EnvironmentMissing, StagecraftError, StateError
from stagecraft.identity import process_alive

READY_TIMEOUT = 180.0
DOCKER_HINT = "start Docker Engine (`make docker`, or scripts/ensure-docker.sh)"


@dataclass(frozen=True)
class Paths:
    root: Path

    @classmethod
    def of(cls, project_dir: Path) -> "Paths":
        # Absolute: Traefik and the dev processes run in other directories.
        return cls(project_dir.resolve() / ".stagecraft" / "dev")

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def traefik(self) -> Path:
        return self.root / "traefik"

    @property
    def compose(self) -> Path:
        return self.root / "compose.yml"

    @property
    def env_dir(self) -> Path:
        return self.root / "env"


@dataclass
class Prepared:
    env: ResolvedEnvironment
    project_dir: Path
    paths: Paths
    plan: DevPlan
    certificate: certs.DevCertificate
    hosts_names: list[str]  # names to write to /etc/hosts (empty: none or --no-hosts)
    unresolved: list[str]  # names that will not resolve (--no-hosts)
    traefik_binary: str


# ------------------------------------------------------------------------ state


def read_state(paths: Paths) -> dict[str, Any] | None:
    try:
        return json.loads(paths.state.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateError(f"cannot read {paths.state}: {exc}",
                         hint=f"remove {paths.state} after checking nothing of it runs") from None


def write_state(paths: Paths, state: dict[str, Any]) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    temporary = paths.state.with_name(f".{paths.state.name}.tmp")
    temporary.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, paths.state)


def pid_alive(pid: int | None) -> bool:
    return bool(pid) and process_alive(int(pid))


# ------------------------------------------------------------------------ ports


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return True
    return False


def check_ports(plan: DevPlan, taken: Callable[[int], bool] = port_taken) -> None:
    """Refuse ports another program holds, before anything starts."""
    wanted = [(item.port, f"service {item.service} (infra, published at its own port)")
              for item in plan.infra if item.port is not None]
    wanted += [(plan.https_port, "Traefik's HTTPS entrypoint"),
               (plan.http_port, "Traefik's HTTP entrypoint")]
    seen: dict[int, str] = {}
    for port, what in wanted:
        if port in seen:
            raise EnvironmentMissing(f"port {port} is wanted twice: by {seen[port]} and {what}",
                                     hint="give one of them another port")
        seen[port] = what
        if taken(port):
            raise EnvironmentMissing(
                f"port {port} on {LOOPBACK} is taken by another program; {what} needs it",
                hint=f"stop that program (`ss -ltnp 'sport = :{port}'` shows it)"
                     + (", or pick another with --https-port / --http-port"
                        if "Traefik" in what else ""))


# --------------------------------------------------------------------- prepare


def prepare(env: ResolvedEnvironment, project_dir: Path, secrets: dict[str, str], *,
            https_port: int | None, http_port: int | None, write_hosts: bool) -> Prepared:
    """Everything before a process starts: refuses a running session, plans, checks
    ports and tools, makes the certificate and writes the session's files."""
    from stagecraft.paths import traefik_binary

    paths = Paths.of(project_dir)
    state = read_state(paths)
    if state is not None and pid_alive(state.get("pid")):
        raise StateError(
            f"a dev session of {env.project.name} already runs (pid {state['pid']})",
            hint="`stagecraft dev status` shows it; `stagecraft dev down` stops it")
    if state is not None:
        cleanup(paths, state, say=lambda _: None)
    plan = plan_dev(env, project_dir, secrets, free_port, https_port=https_port,
                    http_port=http_port)
    if plan.infra and shutil.which("docker") is None:
        raise EnvironmentMissing("docker is not installed; `stagecraft dev` runs the infra "
                                 f"services ({', '.join(i.service for i in plan.infra)}) with it",
                                 hint=DOCKER_HINT)
    check_ports(plan)
    binary = str(traefik_binary())
    route_hosts = list(plan.route_hosts) or ["localhost"]
    certificate = certs.ensure_certificate(paths.certs, route_hosts)
    needing = hosts.names_to_add(plan.route_hosts)
    prepared = Prepared(env=env, project_dir=project_dir, paths=paths, plan=plan,
                        certificate=certificate,
                        hosts_names=needing if write_hosts else [],
                        unresolved=[] if write_hosts else needing, traefik_binary=binary)
    _write_files(prepared, secrets)
    return prepared


def _write_files(prepared: Prepared, secrets: dict[str, str]) -> None:
    paths, plan = prepared.paths, prepared.plan
    (paths.traefik / "dynamic").mkdir(parents=True, exist_ok=True)
    _write(paths.traefik / STATIC_FILE, yaml.safe_dump(static_config(plan, paths.traefik),
                                                       sort_keys=False))
    _write(paths.traefik / ROUTES_FILE, yaml.safe_dump(
        routes_config(plan, prepared.certificate.cert_file, prepared.certificate.key_file),
        sort_keys=False))
    if plan.infra:
        document, env_files = infra_compose(prepared.env, plan, prepared.project_dir,
                                            paths.env_dir, secrets)
        paths.env_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for path, content in env_files.items():
            _write(Path(path), content, mode=0o600)
        _write(paths.compose, yaml.safe_dump(document, sort_keys=False))


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


# ------------------------------------------------------------------------- run


def compose_argv(paths: Paths, plan: DevPlan, *args: str) -> list[str]:
    return ["docker", "compose", "-f", str(paths.compose), "-p", plan.compose_project, *args]


def _compose(paths: Paths, plan: DevPlan, *args: str, what: str, timeout: float = 900) -> None:
    try:
        proc = subprocess.run(compose_argv(paths, plan, *args), capture_output=True, text=True,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        raise EnvironmentMissing("docker is not installed", hint=DOCKER_HINT) from None
    except subprocess.TimeoutExpired:
        raise CommandFailed(f"cannot {what}: docker compose took over {timeout:g} s",
                            hint=f"look at `docker compose -p {plan.compose_project} logs`"
                            ) from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise CommandFailed(f"cannot {what}: docker compose exited {proc.returncode}:\n{tail}",
                            hint=f"`docker compose -p {plan.compose_project} logs` shows the "
                                 "services' output")


def process_specs(prepared: Prepared) -> list[ProcessSpec]:
    plan, paths = prepared.plan, prepared.paths
    base = dict(os.environ)
    specs = [ProcessSpec("traefik", [prepared.traefik_binary,
                                     f"--configFile={paths.traefik / STATIC_FILE}"],
                         paths.traefik, base)]
    for process in plan.processes:
        specs.append(ProcessSpec(process.name, command_argv(process.command), process.cwd,
                                 {**base, **process.env}))
    return specs


def run(prepared: Prepared, out: TextIO, *, colour: bool, say: Callable[[str], None],
        on_ready: Callable[[dict[str, Any]], None],
        stop_event: threading.Event | None = None) -> None:
    """Start everything, call ``on_ready`` with the session's table, supervise until
    SIGINT/SIGTERM/SIGHUP (or ``stop_event``), then tear everything down."""
    from stagecraft.log import redactor

    stop = stop_event or threading.Event()
    previous = _trap_signals(stop)
    paths, plan = prepared.paths, prepared.plan
    state: dict[str, Any] = {
        "pid": os.getpid(), "status": "starting", "project": plan.project,
        "environment": plan.environment, "compose_project": plan.compose_project if plan.infra
        else None, "compose_file": str(paths.compose) if plan.infra else None,
        "hosts_file": str(hosts.HOSTS_FILE), "hosts_names": prepared.hosts_names,
        "groups": {}, "started_at": time.time()}
    write_state(paths, state)
    supervisor: Supervisor | None = None
    try:
        if prepared.hosts_names:
            hosts.update(hosts.HOSTS_FILE,
                         lambda text: hosts.with_block(text, plan.project, prepared.hosts_names))
            say(f"added {', '.join(prepared.hosts_names)} to {hosts.HOSTS_FILE}")
        if plan.infra:
            say(f"starting infra: {', '.join(i.service for i in plan.infra)} "
                f"(compose project {plan.compose_project})")
            _compose(paths, plan, "up", "-d", "--build", "--wait", "--remove-orphans",
                     what=f"start the infra services of {plan.project}")
            if stop.is_set():
                return
        supervisor = Supervisor(process_specs(prepared), paths.logs, out, colour=colour,
                                redact=redactor().text)
        supervisor.start()
        state["groups"] = supervisor.pids()
        write_state(paths, state)
        _wait_ready(prepared, supervisor, stop)
        if stop.is_set():
            return
        state.update(status="ready", groups=supervisor.pids(), table=table(prepared, supervisor.pids()))
        write_state(paths, state)
        on_ready(state["table"])
        while not stop.is_set():
            supervisor.check()
            pids = supervisor.pids()
            if pids != state["groups"]:
                state["groups"] = pids
                write_state(paths, state)
            stop.wait(0.2)
    except StagecraftError as exc:
        state.update(status="failed", error=exc.message, hint=exc.hint)
        write_state(paths, state)
        raise
    finally:
        state["status"] = "stopping"
        write_state(paths, state)
        if supervisor is not None:
            supervisor.stop()
        teardown(paths, state, say=say)
        _restore_signals(previous)


def _wait_ready(prepared: Prepared, supervisor: Supervisor, stop: threading.Event) -> None:
    """Until Traefik answers /ping and every dev process accepts connections on its
    port; a process that keeps exiting fails the start with its last lines."""
    plan = prepared.plan
    waiting = {"traefik": f"http://{LOOPBACK}:{plan.api_port}/ping"}
    waiting.update({p.name: f"tcp://{LOOPBACK}:{p.port}" for p in plan.processes})
    deadline = time.monotonic() + READY_TIMEOUT
    while waiting and not stop.is_set():
        supervisor.check()
        for name, target in list(waiting.items()):
            if _answers(target):
                del waiting[name]
            elif supervisor.running[name].restarts >= 3:
                raise CommandFailed(
                    f"dev process {name} exited {supervisor.running[name].restarts + 1} times "
                    f"before it answered at {target}",
                    hint=f"its output is in {prepared.paths.logs / (name + '.log')}")
        if time.monotonic() > deadline:
            raise CommandFailed(f"{', '.join(sorted(waiting))} did not answer within "
                                f"{READY_TIMEOUT:g} s",
                                hint=f"their output is in {prepared.paths.logs}")
        stop.wait(0.2)


def _answers(target: str) -> bool:
    if target.startswith("tcp://"):
        host, port = target[6:].rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return True
        except OSError:
            return False
    try:
        with urllib.request.urlopen(target, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def table(prepared: Prepared, pids: dict[str, int]) -> dict[str, Any]:
    """What runs where: one row per routed or infra service, plus Traefik."""
    plan, paths = prepared.plan, prepared.paths
    rows = []
    routes_of: dict[str, list[str]] = {}
    for route in plan.routes:
        path = "" if route.path == "/" else route.path
        routes_of.setdefault(route.service, []).append(plan.url(route.host) + path)
    for process in plan.processes:
        for service in process.services:
            rows.append({"service": service, "urls": routes_of.get(service, []),
                         "runs": f"{process.name} process (pid {pids.get(process.name, '-')}, "
                                 f"port {process.port})",
                         "log": str(paths.logs / f"{process.name}.log")})
    for item in plan.infra:
        where = f"127.0.0.1:{item.port}" if item.port else "not published"
        rows.append({"service": item.service, "urls": routes_of.get(item.service, []),
                     "runs": f"container {plan.compose_project}-{item.service}-1 ({where})",
                     "log": f"docker compose -p {plan.compose_project} logs {item.service}"})
    rows.append({"service": "traefik", "urls": [plan.url(h) for h in plan.route_hosts],
                 "runs": f"traefik (pid {pids.get('traefik', '-')}, https {plan.https_port}, "
                         f"http {plan.http_port})",
                 "log": str(paths.logs / "traefik.log")})
    return {"rows": rows, "ca_file": str(prepared.certificate.ca_file),
            "unresolved": prepared.unresolved,
            "skipped": sorted(name for name, role in plan.roles.items() if role == "skip")}


# -------------------------------------------------------------------- teardown


def teardown(paths: Paths, state: dict[str, Any], *, say: Callable[[str], None]) -> None:
    """Stop the infra and remove the hosts block; then the state file."""
    errors = []
    if state.get("compose_project") and state.get("compose_file"):
        argv = ["docker", "compose", "-f", state["compose_file"], "-p", state["compose_project"],
                "down", "--remove-orphans", "--timeout", "5"]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
            if proc.returncode != 0:
                errors.append(f"`{' '.join(argv)}` exited {proc.returncode}: "
                              f"{(proc.stderr.strip().splitlines() or [''])[-1]}")
            else:
                say(f"stopped infra (compose project {state['compose_project']}; volumes kept)")
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(f"`{' '.join(argv)}`: {exc}")
    if state.get("hosts_names"):
        project = state.get("project", "")
        try:
            if hosts.update(Path(state.get("hosts_file") or hosts.HOSTS_FILE),
                            lambda text: hosts.without_block(text, project)):
                say(f"removed stagecraft's lines from {state.get('hosts_file')}")
        except StagecraftError as exc:
            errors.append(exc.message)
    if errors:
        state.update(status="failed", error="; ".join(errors))
        write_state(paths, state)
        raise CommandFailed("the dev session did not stop cleanly: " + "; ".join(errors),
                            hint="run `stagecraft dev down` again")
    paths.state.unlink(missing_ok=True)


def cleanup(paths: Paths, state: dict[str, Any], *, say: Callable[[str], None]) -> None:
    """What `dev down` does for a session whose supervisor is gone: stop its process
    groups, then tear down."""
    stop_groups([int(pid) for pid in (state.get("groups") or {}).values()])
    teardown(paths, state, say=say)


def stop_session(paths: Paths, say: Callable[[str], None], timeout: float = 60.0) -> bool:
    """`dev down`: stop a running session (its supervisor cleans up) or clean up after
    one that is gone. False when there was none."""
    state = read_state(paths)
    if state is None:
        return False
    pid = state.get("pid")
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            raise CommandFailed(f"the dev session (pid {pid}) did not stop within {timeout:g} s",
                                hint=f"kill it (`kill -9 {pid}`), then run `stagecraft dev "
                                     "down` again")
        state = read_state(paths)
        if state is None:
            return True
    say("the dev session is gone; cleaning up what it left")
    cleanup(paths, state, say=say)
    return True


# -------------------------------------------------------------------- signals


def _trap_signals(stop: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
