"""What a host runs right now, read in one SSH round trip.

One shell script prints sections (current release, the compose project's
containers, Traefik, the deploy lock, optionally Traefik's routers) and
``parse_probe_output`` reads them. Nothing but sh, readlink, cat and docker runs
on the host for the default probe: deploy probes every host before it decides
there is nothing to do, so this has to stay cheap.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from stagecraft.errors import StagecraftError
from stagecraft.hosts.lock import LockInfo, base_dir
from stagecraft.hosts.remote import RemoteHost, in_parallel, quote

if TYPE_CHECKING:
    from stagecraft.hosts.fleet import Fleet

MARK = "@@stagecraft-probe:"
TRAEFIK_CONTAINER = "stagecraft-traefik"
TRAEFIK_API = "http://127.0.0.1:8080/api/http/routers"
# The firewall role's rules file (stagecraft/infra/firewall.py RULES_FILE; not imported:
# that module loads jinja2 and the role's template).
FIREWALL_RULES = "/etc/nftables.d/stagecraft-firewall.nft"

# One JSON object per container, built by docker's template (labels read one by one:
# `{{.Labels}}` joins them with commas, and label values may contain commas).
_CONTAINER_FORMAT = (
    '{"name":{{json .Names}},"state":{{json .State}},"status":{{json .Status}},'
    '"image":{{json .Image}},'
    '"service":{{json (.Label "com.docker.compose.service")}},'
    '"config_hash":{{json (.Label "stagecraft.config-hash")}},'
    '"strategy":{{json (.Label "stagecraft.strategy")}},'
    '"release":{{json (.Label "stagecraft.release")}}}'
)


@dataclass(frozen=True)
class ContainerFacts:
    name: str
    service: str
    state: str  # docker state: running, exited, restarting, created, ...
    health: str  # healthy | unhealthy | starting | "" (no healthcheck)
    image: str
    config_hash: str  # label stagecraft.config-hash ("" if absent)
    strategy: str  # label stagecraft.strategy
    release: str  # label stagecraft.release if the compose files set one, else ""


@dataclass(frozen=True)
class TailnetFacts:
    """What the host's tailscaled says of itself (``tailscale status --json``)."""

    state: str  # tailscaled's BackendState: Running, NeedsLogin, Stopped, ...
    ipv4: str | None
    dns_name: str | None
    online: bool  # as the control server sees it

    @property
    def connected(self) -> bool:
        return self.state == "Running" and self.online


@dataclass(frozen=True)
class HostFacts:
    host: str
    reachable: bool
    error: str = ""
    current_release: str | None = None  # the release id <base>/current points at
    containers: tuple[ContainerFacts, ...] = ()  # of compose project <project>-<env>
    traefik_running: bool = False
    lock: LockInfo | None = None
    routes: tuple[dict, ...] = ()  # Traefik's HTTP routers, only when probed with routes=True
    firewall_hash: str | None = None  # sha256 of the firewall role's rules file, if any
    mounts: Mapping[str, str] = field(default_factory=dict)  # mount point under /mnt -> fstype
    tailnet: TailnetFacts | None = None  # the host's tailscaled, when it has one

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "reachable": self.reachable,
            "error": self.error,
            "current_release": self.current_release,
            "containers": [asdict(c) for c in self.containers],
            "traefik_running": self.traefik_running,
            "lock": self.lock.to_dict() if self.lock is not None else None,
            "routes": [dict(r) for r in self.routes],
            "firewall_hash": self.firewall_hash,
            "mounts": dict(self.mounts),
            "tailnet": asdict(self.tailnet) if self.tailnet is not None else None,
        }

    def service_containers(self, service: str) -> list[ContainerFacts]:
        return [c for c in self.containers if c.service == service]


def probe_script(project: str, environment: str, *, routes: bool = False) -> str:
    """The shell script that prints every section ``parse_probe_output`` reads."""
    base = base_dir(project, environment)
    compose_project = f"{project}-{environment}"
    lines = [
        f"base={quote(base)}",
        f"echo '{MARK}current'",
        'readlink "$base/current" 2>/dev/null',
        f"echo '{MARK}containers'",
        # One-off containers (`docker compose run`, `stagecraft exec --one-off`) are not
        # the service's containers.
        (f"docker ps -a --no-trunc --filter {quote('label=com.docker.compose.project=' + compose_project)}"
         " --filter label=com.docker.compose.oneoff=False"
         f" --format {quote(_CONTAINER_FORMAT)} 2>&1"),
        f"echo '{MARK}traefik'",
        f"docker inspect --format '{{{{.State.Running}}}}' {TRAEFIK_CONTAINER} 2>/dev/null",
        f"echo '{MARK}lock'",
        ('if [ -d "$base/lock" ]; then cat "$base/lock/info.json" 2>/dev/null || echo "{}"; '
         'else echo none; fi'),
        # What bootstrap's firewall and volumes roles left: for `plan`.
        f"echo '{MARK}firewall'",
        f"sha256sum {FIREWALL_RULES} 2>/dev/null",
        f"echo '{MARK}mounts'",
        "findmnt -rn -o TARGET,FSTYPE 2>/dev/null | grep '^/mnt/'",
        # Only on hosts that joined a tailnet (role tailscale); one JSON document.
        f"echo '{MARK}tailnet'",
        ("command -v tailscale >/dev/null 2>&1 && "
         "tailscale status --json --peers=false 2>/dev/null | tr -d '\\n'; echo"),
    ]
    if routes:
        # The API is published on the host's loopback only; curl or wget, whichever
        # the host has, else the same request from inside the Traefik container.
        lines += [
            f"echo '{MARK}routes'",
            (f"curl -fsS --max-time 5 {TRAEFIK_API} 2>/dev/null"
             f" || wget -qO- -T 5 {TRAEFIK_API} 2>/dev/null"
             f" || docker exec {TRAEFIK_CONTAINER} wget -qO- -T 5 {TRAEFIK_API} 2>/dev/null"),
        ]
    lines += [f"echo '{MARK}end'", "exit 0"]
    return "\n".join(lines) + "\n"


def split_sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(MARK):
            current = sections.setdefault(line[len(MARK):].strip(), [])
        elif current is not None:
            current.append(line)
    return sections


def health_of(status: str) -> str:
    """The health word in docker's status text: ``Up 3 minutes (healthy)``."""
    if "(healthy)" in status:
        return "healthy"
    if "(unhealthy)" in status:
        return "unhealthy"
    if "(health: starting)" in status:
        return "starting"
    return ""


def _container(data: dict[str, Any]) -> ContainerFacts:
    def text(key: str) -> str:
        value = data.get(key)
        return "" if value is None else str(value)

    return ContainerFacts(name=text("name"), service=text("service"), state=text("state"),
                          health=health_of(text("status")), image=text("image"),
                          config_hash=text("config_hash"), strategy=text("strategy"),
                          release=text("release"))


def lock_from_lines(lines: list[str]) -> LockInfo | None:
    text = "\n".join(lines).strip()
    if not text or text == "none":
        return None
    if text == "{}":  # the directory exists, info.json is not written yet
        return LockInfo(holder="unknown", pid=0, time=_now(), release="", message="being taken")
    try:
        return LockInfo.from_json(text)
    except StagecraftError:
        return LockInfo(holder="unknown", pid=0, time=_now(), release="",
                        message="lock/info.json is unreadable")


def _routes(lines: list[str]) -> tuple[dict, ...]:
    try:
        routers = json.loads("\n".join(lines) or "[]")
    except ValueError:
        return ()
    if not isinstance(routers, list):
        return ()
    return tuple({"name": r.get("name", ""), "rule": r.get("rule", ""),
                  "status": r.get("status", ""), "service": r.get("service", ""),
                  "entrypoints": list(r.get("entryPoints") or []),
                  "provider": r.get("provider", "")}
                 for r in routers if isinstance(r, dict))


def parse_probe_output(text: str, host: str = "") -> HostFacts:
    """HostFacts from what ``probe_script`` printed (reachable; errors in ``error``)."""
    sections = split_sections(text)
    problems: list[str] = []
    if "end" not in sections:
        problems.append("the probe's output is incomplete")
    current = next((line.strip() for line in sections.get("current", []) if line.strip()), "")
    containers: list[ContainerFacts] = []
    for line in sections.get("containers", []):
        line = line.strip()
        if not line:
            continue
        try:
            containers.append(_container(json.loads(line)))
        except ValueError:
            problems.append(f"docker: {line}")  # e.g. permission denied on the socket
    traefik = any(line.strip() == "true" for line in sections.get("traefik", []))
    firewall_hash = next((line.split()[0] for line in sections.get("firewall", [])
                          if line.strip()), None)
    mounts = {}
    for line in sections.get("mounts", []):
        parts = line.split()
        if len(parts) == 2:
            mounts[parts[0]] = parts[1]
    return HostFacts(
        host=host,
        reachable=True,
        tailnet=tailnet_facts("".join(sections.get("tailnet", []))),
        error="; ".join(problems),
        current_release=current.rstrip("/").rpartition("/")[2] or None,
        containers=tuple(sorted(containers, key=lambda c: (c.service, c.name))),
        traefik_running=traefik,
        lock=lock_from_lines(sections.get("lock", [])),
        routes=_routes(sections.get("routes", [])),
        firewall_hash=firewall_hash,
        mounts=mounts,
    )


def tailnet_facts(text: str) -> TailnetFacts | None:
    """TailnetFacts from ``tailscale status --json`` (None: no tailscale, or no answer)."""
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    me = data.get("Self") or {}
    addresses = [a for a in me.get("TailscaleIPs") or [] if ":" not in a]
    dns_name = str(me.get("DNSName") or "").rstrip(".") or None
    return TailnetFacts(state=str(data.get("BackendState") or ""),
                        ipv4=addresses[0] if addresses else None, dns_name=dns_name,
                        online=bool(me.get("Online")))


def probe_host(host: RemoteHost, project: str, environment: str, *, routes: bool = False,
               timeout: float = 15) -> HostFacts:
    """Facts of one host; an unreachable host gives reachable=False, never an exception."""
    script = probe_script(project, environment, routes=routes)
    try:
        proc = host.run(script, timeout=timeout, check=False, what="probe")
    except StagecraftError as exc:  # timed out, or ssh missing
        return HostFacts(host=host.name, reachable=False, error=exc.message)
    if MARK + "current" not in proc.stdout:
        # ssh exits 255 when it cannot connect; anything else failed before the script ran
        error = proc.stderr.strip().splitlines()[-1:] or [f"ssh exited with {proc.returncode}"]
        return HostFacts(host=host.name, reachable=False, error=error[0])
    return parse_probe_output(proc.stdout, host.name)


def probe_hosts(fleet: Fleet, names: Iterable[str] | None = None, *,
                routes: bool = False) -> dict[str, HostFacts]:
    """Facts of the environment's hosts (or ``names``), all hosts at once, by host name
    in the environment's order."""
    env = fleet.env
    wanted = list(names) if names is not None else fleet.host_names
    hosts = fleet.remotes(wanted)
    facts = in_parallel(hosts.values(), lambda h: probe_host(h, env.project.name, env.name,
                                                             routes=routes))
    return {name: facts[name] for name in wanted}


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
