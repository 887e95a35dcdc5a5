"""Checks of an environment's hosts: one SSH round trip per host, all hosts at once.

Per host: reachable, Docker Engine and Compose versions, Traefik running, the clock
against the controller's; on the primary host also the deploy lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from stagecraft.doctor.controller import MIN_COMPOSE, MIN_DOCKER
from stagecraft.doctor.model import Check, missing, ok, todo, version_tuple, wrong
from stagecraft.errors import StagecraftError
from stagecraft.hosts.lock import base_dir
from stagecraft.hosts.probe import (
    MARK,
    TRAEFIK_CONTAINER,
    lock_from_lines,
    split_sections,
    tailnet_facts,
)
from stagecraft.hosts.remote import RemoteHost, in_parallel, quote

#: More than this between a host's clock and the controller's breaks TLS, ACME and
#: the lock's age: the check says wrong.
MAX_CLOCK_SKEW_SECONDS = 2.0


def doctor_script(project: str, environment: str) -> str:
    """The shell script whose sections :func:`host_checks` reads."""
    base = base_dir(project, environment)
    return "\n".join([
        f"echo '{MARK}docker'",
        "docker version --format '{{.Server.Version}}' 2>&1 | head -n 1",
        f"echo '{MARK}compose'",
        "docker compose version --short 2>&1 | head -n 1",
        f"echo '{MARK}traefik'",
        f"docker inspect --format '{{{{.State.Running}}}}' {TRAEFIK_CONTAINER} 2>/dev/null",
        f"echo '{MARK}current'",
        f"readlink {quote(base)}/current 2>/dev/null",
        f"echo '{MARK}lock'",
        (f'if [ -d {quote(base)}/lock ]; then cat {quote(base)}/lock/info.json 2>/dev/null '
         '|| echo "{}"; else echo none; fi'),
        f"echo '{MARK}clock'",
        "date +%s.%N",
        f"echo '{MARK}tailnet'",
        ("command -v tailscale >/dev/null 2>&1 && "
         "tailscale status --json --peers=false 2>/dev/null | tr -d '\\n'; echo"),
        f"echo '{MARK}end'",
        "exit 0",
    ]) + "\n"


@dataclass(frozen=True)
class Answer:
    """What a host printed, and when (controller clock) the question left and came back."""

    output: str
    sent: float
    received: float
    error: str = ""


def ask(host: RemoteHost, project: str, environment: str, timeout: float = 20) -> Answer:
    sent = time.time()
    try:
        proc = host.run(doctor_script(project, environment), timeout=timeout, check=False,
                        what="doctor")
    except StagecraftError as exc:
        return Answer("", sent, time.time(), exc.message)
    received = time.time()
    if f"{MARK}end" not in proc.stdout:
        lines = proc.stderr.strip().splitlines()
        return Answer("", sent, received, lines[-1] if lines else
                      f"ssh exited with {proc.returncode}")
    return Answer(proc.stdout, sent, received)


def _first(sections: dict[str, list[str]], name: str) -> str:
    return next((line.strip() for line in sections.get(name, []) if line.strip()), "")


def host_checks(name: str, answer: Answer, *, env: str, primary: bool,
                mesh: bool = False) -> list[Check]:
    """The checks of one host from its answer (pure: tests feed it recorded answers);
    ``mesh``: the environment's hosts join a tailnet."""
    if answer.error:
        return [missing(name, "reachable", f"no answer over SSH: {answer.error}",
                        f"check the host is up (`stagecraft infra status -e {env}`), then "
                        f"`stagecraft ssh -e {env} {name}`")]
    sections = split_sections(answer.output)
    checks = [ok(name, "reachable", f"answered in {answer.received - answer.sent:.2f} s")]
    bootstrap = f"run `stagecraft bootstrap -e {env}`"

    docker = _first(sections, "docker")
    if not version_tuple(docker):
        checks.append(missing(name, "docker engine", docker or "no answer", bootstrap))
    elif version_tuple(docker) < MIN_DOCKER:
        checks.append(wrong(name, "docker engine", f"{docker} is too old", bootstrap))
    else:
        checks.append(ok(name, "docker engine", docker))

    compose = _first(sections, "compose")
    if not version_tuple(compose):
        checks.append(missing(name, "compose v2 plugin", compose or "no answer", bootstrap))
    elif version_tuple(compose) < MIN_COMPOSE:
        checks.append(wrong(name, "compose v2 plugin", f"{compose} is older than "
                            f"{'.'.join(map(str, MIN_COMPOSE))}", bootstrap))
    else:
        checks.append(ok(name, "compose v2 plugin", compose))

    deployed = bool(_first(sections, "current"))
    if _first(sections, "traefik") == "true":
        checks.append(ok(name, "traefik", "running"))
    elif not deployed:
        checks.append(todo(name, "traefik", "not running: nothing is deployed yet",
                           f"the first `stagecraft deploy -e {env}` starts it"))
    else:
        checks.append(missing(name, "traefik", f"{TRAEFIK_CONTAINER} is not running",
                              f"`stagecraft deploy -e {env}` starts it again; its logs: "
                              f"`stagecraft ssh -e {env} {name} docker logs {TRAEFIK_CONTAINER}`"))

    checks.append(clock_check(name, _first(sections, "clock"), answer))
    if mesh:
        checks.append(tailnet_check(name, "".join(sections.get("tailnet", [])), env))
    if primary:
        checks.append(lock_check(name, sections.get("lock", []), env))
    return checks


def clock_check(name: str, printed: str, answer: Answer) -> Check:
    try:
        host_time = float(printed)
    except ValueError:
        return missing(name, "clock skew", f"cannot read the host's clock ({printed!r})",
                       "the host needs GNU date (coreutils)")
    # The host read its clock somewhere between sent and received.
    middle = (answer.sent + answer.received) / 2
    slack = (answer.received - answer.sent) / 2
    skew = host_time - middle
    detail = f"{skew:+.2f} s (± {slack:.2f} s)"
    if abs(skew) - slack > MAX_CLOCK_SKEW_SECONDS:
        return wrong(name, "clock skew", detail,
                     "turn on time sync on the host (systemd-timesyncd or chrony) or on "
                     "this machine")
    return ok(name, "clock skew", detail)


def tailnet_check(name: str, printed: str, env: str) -> Check:
    """Whether the host is on the environment's tailnet: logged in and online."""
    facts = tailnet_facts(printed)
    if facts is None:
        return missing(name, "tailnet", "tailscale is not installed or tailscaled does not "
                       "answer", f"run `stagecraft bootstrap -e {env}`: it joins the hosts")
    if not facts.connected:
        why = (f"tailscaled says {facts.state}" if facts.state != "Running"
               else "the control server sees it offline")
        return wrong(name, "tailnet", f"{facts.ipv4 or 'no address'}: {why}",
                     f"see `stagecraft ssh -e {env} {name} -- journalctl -u tailscaled`; "
                     f"`stagecraft bootstrap -e {env}` logs it in again")
    return ok(name, "tailnet", f"{facts.ipv4} ({facts.dns_name or 'no MagicDNS name'}), "
                               "connected")


def lock_check(name: str, lines: list[str], env: str) -> Check:
    info = lock_from_lines(lines)
    if info is None:
        return ok(name, "deploy lock", "free")
    if info.stale:
        return wrong(name, "deploy lock", info.describe(),
                     f"the process that held it is gone: `stagecraft lock release -e {env}`")
    return ok(name, "deploy lock", info.describe())


def check_hosts(hosts: dict[str, RemoteHost], project: str, environment: str,
                primary: str, mesh: bool = False) -> list[Check]:
    """Every host's checks, in the order of ``hosts``."""
    answers = in_parallel(hosts.values(), lambda h: ask(h, project, environment))
    checks: list[Check] = []
    for name in hosts:
        checks += host_checks(name, answers[name], env=environment, primary=name == primary,
                              mesh=mesh)
    return checks
