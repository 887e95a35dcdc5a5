"""``python -m stagecraft_twins.digitalocean serve|stop``: run the twin, or stop it and
remove every machine it made (see spec/providers/digitalocean-twin.md)."""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from stagecraft_twins.digitalocean.api import Twin
from stagecraft_twins.digitalocean.catalog import REGION_NAMES, Catalog
from stagecraft_twins.digitalocean.droplets import ComputeApi
from stagecraft_twins.digitalocean.machines import MachineError, Machines, NoMachines
from stagecraft_twins.digitalocean.server import TwinServer
from stagecraft_twins.digitalocean.state import DEFAULT_DROPLET_LIMIT, State

TWIN_FILE = "twin.json"
STATE_FILE = "state.json"
LOCK_FILE = "twin.lock"
STOP_WAIT_SECONDS = 15.0


def twin_id(state_dir: Path) -> str:
    """The label value that marks this twin's machines: a hash of its state directory."""
    return hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]


def make_machines(kind: str, state_dir: Path) -> Machines:
    if kind == "none":
        return NoMachines()
    from stagecraft_twins.digitalocean.docker_machines import DockerMachines  # needs Docker
    return DockerMachines(state_dir, twin_id(state_dir))


def write_json_atomically(path: Path, value: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(value, indent=1) + "\n")
    os.replace(temporary, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def pid_alive(pid: int) -> bool:
    """Whether a process runs with that pid (a zombie has already stopped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def serve(args: argparse.Namespace, out: TextIO) -> int:
    state_dir = Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = open(state_dir / LOCK_FILE, "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        running = read_json(state_dir / TWIN_FILE) or {}
        print(f"error: a twin already serves {state_dir} (pid {running.get('pid', '?')}, "
              f"{running.get('url', 'url unknown')}); stop it first", file=sys.stderr)
        return 1
    try:
        catalog = Catalog(args.region or None)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    machines = make_machines(args.machines, state_dir)
    state = State(state_dir / STATE_FILE, args.droplet_limit or DEFAULT_DROPLET_LIMIT)
    with state.lock:
        if args.droplet_limit is not None:
            state.account["droplet_limit"] = args.droplet_limit
        state.data["machines"] = machines.kind
        state.save()
    twin = Twin(state, catalog, machines)
    try:
        twin.ensure_default_vpcs()
    except MachineError as error:
        print(f"error: no range for the regions' default VPCs: {error}", file=sys.stderr)
        return 1
    compute = ComputeApi(twin)
    compute.resume_after_restart()
    token = args.token or secrets.token_hex(32)
    record = Path(args.record).resolve() if args.record else None
    server = TwinServer(args.port, twin, compute, token, record)
    port = server.server_address[1]

    def stop_serving(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop_serving)
    signal.signal(signal.SIGINT, stop_serving)
    info = {"url": f"http://127.0.0.1:{port}/v2", "control": f"http://127.0.0.1:{port}/_twin",
            "pid": os.getpid(), "token": token, "machines": machines.kind}
    write_json_atomically(state_dir / TWIN_FILE, info)
    print(f"DigitalOcean twin serving {info['url']} (state in {state_dir})", file=out, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        twin.firewall_worker.shutdown(wait=True)
        with state.lock:
            state.save()
        if (read_json(state_dir / TWIN_FILE) or {}).get("pid") == os.getpid():
            (state_dir / TWIN_FILE).unlink(missing_ok=True)
        lock.close()
    return 0


def stop(args: argparse.Namespace, out: TextIO) -> int:
    state_dir = Path(args.state_dir).resolve()
    running = read_json(state_dir / TWIN_FILE) or {}
    pid = running.get("pid")
    if isinstance(pid, int) and pid != os.getpid() and pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            print(f"error: the twin (pid {pid}) did not stop", file=sys.stderr)
            return 1
    saved = read_json(state_dir / STATE_FILE) or {}
    kind = running.get("machines") or saved.get("machines")
    if kind == "docker":
        for removed in make_machines("docker", state_dir).remove_all():
            print(f"removed {removed}", file=out)
    (state_dir / TWIN_FILE).unlink(missing_ok=True)
    print(f"DigitalOcean twin of {state_dir} stopped", file=out)
    return 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m stagecraft_twins.digitalocean",
                                   description="A twin of DigitalOcean's API v2.")
    commands = main.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve the API on 127.0.0.1 (foreground)")
    run.add_argument("--state-dir", required=True, help="where state.json and twin.json live")
    run.add_argument("--port", type=int, default=0, help="port to listen on (0: any free one)")
    run.add_argument("--token", help="the bearer token clients must send (default: random)")
    run.add_argument("--machines", choices=("docker", "none"), default="docker",
                     help="what stands behind droplets and volumes")
    run.add_argument("--record", help="append every exchange to this file, one JSON line each")
    run.add_argument("--droplet-limit", type=int, default=None,
                     help=f"the account's droplet limit (default {DEFAULT_DROPLET_LIMIT})")
    run.add_argument("--region", action="append", choices=list(REGION_NAMES),
                     help="a region where resources can be made (repeat; default: all)")
    halt = commands.add_parser("stop", help="stop the twin and remove every machine it made")
    halt.add_argument("--state-dir", required=True)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve":
        return serve(args, sys.stdout)
    return stop(args, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
