"""The ``digitalocean`` cloud provider (PROVIDER_CLOUD_DO): droplets, volumes, VPC and
cloud firewalls, made by the role `digitalocean` (community.digitalocean modules).

``plan`` reads what the API has and says what ``up`` (or ``down``) would change;
``up`` runs exactly that plan through the Ansible driver, then reads the droplets
back, pins each new droplet's host key at first contact and writes hosts.json.
hosts.json is written only after a run succeeded, and every resource is found again
by its name or tag, so a run that failed half-way is continued by the next ``up``.
The token never enters Ansible: the modules talk to a relay on 127.0.0.1 that adds it
(relay.py). See spec/providers/cloud-digitalocean.md.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from stagecraft import steps
from stagecraft.doctor.model import Check, missing, ok
from stagecraft.errors import PlanError, ProviderError, RunFailed, StagecraftError
from stagecraft.fsutil import write_atomic
from stagecraft.hosts.ssh import sshd_answers
from stagecraft.providers.cloud.base import (
    ABSENT,
    CREATED,
    CREATING,
    MISSING,
    ORPHANED,
    REMOVED,
    RUNNING,
    STARTED,
    STOPPED,
    UNCHANGED,
    CloudCapabilities,
    CloudResources,
    Confirm,
    DownResult,
    FleetSpec,
    HostRecord,
    Log,
    Provisioner,
    RegistryAccess,
    SshAccess,
    StateFiles,
    host_key_names,
    hosts_lock,
    known_hosts_text,
    read_hosts_file,
    remove_files,
    write_hosts_file,
)
from stagecraft.providers.cloud.digitalocean import failures, names, report
from stagecraft.providers.cloud.digitalocean.api import DEFAULT_API_URL, DigitalOceanAPI
from stagecraft.providers.cloud.digitalocean.plan import (
    Found,
    InfraPlan,
    Settings,
    fingerprint,
    plan_down,
    plan_up,
)
from stagecraft.providers.cloud.digitalocean.relay import relay
from stagecraft.providers.cloud.keys import ensure_key_pair

KIND = "digitalocean"
SCOPE = "controller"
PLAYBOOK = "digitalocean.yml"
SSH_USER = "root"  # a fresh droplet's only user; bootstrap adds the deploy user
#: hosts.json extras: host name -> deploy user (after bootstrap); -> pinned droplet id.
DEPLOY_USERS = "deploy_users"
PINNED = "pinned_droplets"
#: Seconds a new droplet's sshd has to answer after the API says it is active.
SSH_READY_TIMEOUT = 300.0

Secret = str | Callable[[], str]


def _quiet(_: str) -> None:
    pass


class DigitalOceanCloud:
    """Droplets on DigitalOcean. See spec/providers/cloud-digitalocean.md."""

    kind = KIND

    def __init__(self, token: Secret, region: str, image: str = "debian-13-x64",
                 size: str = "s-1vcpu-2gb", vpc: str | None = None,
                 api_url: str = DEFAULT_API_URL, docker_source: str = "docker-ce",
                 wait_timeout: float = 300, rehearsal: bool = False) -> None:
        """``token``: the API token, or a function that returns it (read when the API
        is first called). ``wait_timeout``: seconds a droplet has to become active (the
        droplet module's, whole seconds). ``rehearsal``: the API is the twin on this
        machine, whose droplets are containers that need the quirks of
        containers-as-hosts at bootstrap."""
        self._token = token
        self.settings = Settings(region=region, image=image, size=size, vpc=vpc)
        self.api_url = api_url
        self.docker_source = docker_source
        self.wait_timeout = max(1, math.ceil(wait_timeout))
        self.container_hosts = rehearsal
        self.capabilities = CloudCapabilities(
            deploy_user_logins=True,
            # No public CA reaches a rehearsal's droplets.
            default_tls="local" if rehearsal else "acme")

    # ------------------------------------------------------------- helpers

    def token(self) -> str:
        from stagecraft.log import add_secrets

        value = self._token() if callable(self._token) else self._token
        add_secrets(value)
        return value

    def api(self, log: Log | None = None) -> DigitalOceanAPI:
        return DigitalOceanAPI(self.api_url, self.token(), on_retry=log)

    # ----------------------------------------------------------- what it offers

    def ssh_access(self, spec: FleetSpec, state_dir: Path) -> SshAccess:
        files = StateFiles(Path(state_dir))
        return SshAccess(user=SSH_USER, private_key=files.private_key,
                         known_hosts=files.known_hosts)

    def bootstrap_vars(self, spec: FleetSpec, state_dir: Path) -> dict[str, Any]:
        """Where Docker comes from; droplets that are containers (a rehearsal) get what
        containers-as-hosts need (dockerd's IPv6 switch, Debian's docker.io, growing
        ext4 offline)."""
        variables: dict[str, Any] = {"bootstrap_docker_source": self.docker_source}
        if self.container_hosts:
            variables.update({
                "bootstrap_docker_environment": {"DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE": "1"},
                "bootstrap_docker_source": "distro",
                "volumes_grow_offline": True,
            })
        return variables

    def volume_device(self, spec: FleetSpec, host: str, volume: str) -> str | None:
        """Where the droplet sees the volume: DigitalOcean's by-id path of its name."""
        return names.volume_device(spec.project, spec.environment, host, volume)

    def controller_checks(self) -> list[Check]:
        checks = []
        for tool in ("ssh", "ssh-keygen", "ssh-keyscan"):
            path = shutil.which(tool)
            name = f"digitalocean cloud: {tool}"
            checks.append(ok(SCOPE, name, path) if path else missing(
                SCOPE, name, f"{tool} is not installed", "apt-get install openssh-client"))
        return checks

    def prepare_controller(self, log: Log) -> list[str]:
        return []

    def registry_access(self, spec: FleetSpec, state_dir: Path) -> RegistryAccess:
        raise ProviderError("cloud `digitalocean` runs no registry",
                            hint="set project.registry in stagecraft.yml (e.g. DigitalOcean's "
                            "container registry), or leave it out: images then go to the "
                            "hosts over SSH")

    def publish_traefik_image(self, spec: FleetSpec, state_dir: Path, *,
                              log: Log | None = None) -> str:
        raise ProviderError("cloud `digitalocean` publishes no Traefik image")

    def ensure_base_image(self, name: str, log: Log | None = None) -> str:
        raise ProviderError(f"cloud `digitalocean` builds no base image (asked for {name})",
                            hint="start the Dockerfile FROM a public image")

    # ---------------------------------------------------------------- reading

    def read_found(self, spec: FleetSpec, api: DigitalOceanAPI,
                   public_key: str | None) -> Found:
        """What the API has that belongs to the environment (by its tag and names);
        the SSH key is looked up by ``public_key``'s fingerprint."""
        project, env = spec.project, spec.environment
        env_tag = names.env_tag(project, env)
        droplets = api.list("droplets", "droplets", tag_name=env_tag)
        volumes = self._volumes(spec, api, droplets)
        firewalls = self._firewalls(spec, api)
        vpc_name = names.vpc_name(project, env, self.settings.vpc)
        vpc = next((v for v in api.list("vpcs", "vpcs") if v["name"] == vpc_name), None)
        ssh_key = None
        if public_key:
            ssh_key = next((k for k in api.list("account/keys", "ssh_keys")
                            if k.get("fingerprint") == fingerprint(public_key)), None)
        tags = [t["name"] for t in api.list("tags", "tags")
                if t["name"] == env_tag or t["name"].startswith(env_tag + "--")]
        account = (api.get("account") or {}).get("account") or {}
        total = ((api.get("droplets", per_page=1) or {}).get("meta") or {}).get("total", 0)
        return Found(droplets=droplets, volumes=volumes, firewalls=firewalls, vpc=vpc,
                     ssh_key=ssh_key, tags=tags, account_droplets=int(total or 0),
                     droplet_limit=account.get("droplet_limit"))

    def _volumes(self, spec: FleetSpec, api: DigitalOceanAPI,
                 droplets: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The environment's volumes: tagged with its tag, named as one of its hosts'
        volumes, or attached to one of its ``droplets``."""
        project, env = spec.project, spec.environment
        env_tag = names.env_tag(project, env)
        ours = {names.volume_name(project, env, h.name, v) for h in spec.hosts for v in h.volumes}
        droplet_ids = {d["id"] for d in droplets}
        return [v for v in api.list("volumes", "volumes", region=self.settings.region)
                if env_tag in (v.get("tags") or []) or v["name"] in ours
                or droplet_ids & set(v.get("droplet_ids") or [])]

    def _firewalls(self, spec: FleetSpec, api: DigitalOceanAPI) -> list[dict[str, Any]]:
        """The environment's cloud firewalls, by their names."""
        wanted = {names.firewall_name(spec.project, spec.environment),
                  names.firewall_name(spec.project, spec.environment, "edge")}
        return [f for f in api.list("firewalls", "firewalls") if f["name"] in wanted]

    # ------------------------------------------------------------------- plan

    def plan(self, spec: FleetSpec, state_dir: Path, *, prune: bool = False,
             down: bool = False, log: Log | None = None) -> InfraPlan:
        """What ``up`` (``down``: ``down``) would change now. Changes nothing."""
        self._check_spec(spec)
        files = StateFiles(Path(state_dir))
        public_key = _read_public_key(files.state_dir)
        found = self.read_found(spec, self.api(log), public_key)
        if down:
            return plan_down(spec, self.settings, found)
        return plan_up(spec, self.settings, found, public_key or _placeholder_key(),
                       prune=prune)

    def _check_spec(self, spec: FleetSpec) -> None:
        for host in spec.hosts:
            if len(names.droplet_name(spec.project, spec.environment, host.name)) > 255:
                raise PlanError(f"host {host.name}: the droplet's name would be too long")

    # --------------------------------------------------------------------- up

    def up(self, spec: FleetSpec, state_dir: Path, *, log: Log | None = None,
           confirm: Confirm | None = None, prune: bool = False,
           provisioner: Provisioner | None = None) -> list[HostRecord]:
        """Make the plan's changes, then record the droplets (pinning new host keys).

        With ``prune`` the droplets the environment no longer lists are deleted (the
        caller asked first: `infra up --prune` names them). ``confirm`` is not used:
        a new droplet's host key is pinned at first contact.
        """
        log = log or _quiet
        files = StateFiles(Path(state_dir))
        files.state_dir.mkdir(parents=True, exist_ok=True)
        with hosts_lock(files, log):
            started = time.monotonic()
            public_key = ensure_key_pair(files, f"stagecraft {spec.project}/{spec.environment}")
            api = self.api(log)
            found = self.read_found(spec, api, public_key)
            plan = plan_up(spec, self.settings, found, public_key, prune=prune)
            for change in plan.changes:
                log(f"{change.action} {change.kind} {change.name}"
                    + (f": {change.detail}" if change.detail else ""))
            if plan.changed:
                try:
                    self._apply(plan.variables, files, log, provisioner)
                except RunFailed as failed:
                    waited = self._waited_too_long(spec, api, failed)
                    if waited is None:
                        raise
                    raise waited from failed
                found = self.read_found(spec, api, public_key)
            # Nothing is recorded while a droplet the spec lists is still being created.
            creating = [d for d in found.droplets if d.get("status") == failures.NEW
                        and spec.host(names.host_of(spec.project, spec.environment,
                                                    d["name"]) or "") is not None]
            if creating:
                raise failures.stuck_error(creating, project=spec.project,
                                           environment=spec.environment,
                                           wait_timeout=self.wait_timeout)
            before = _read_own(files)
            records = self._records(spec, found, before, created={
                c.name for c in plan.changes if c.kind == "droplet" and c.action == "create"})
            records = self._pin(spec, files, records, before, log)
            log(f"{sum(r.in_spec for r in records)} droplet(s) ready in "
                f"{steps.format_seconds(time.monotonic() - started)}")
            return records

    def _apply(self, variables: Mapping[str, Any], files: StateFiles, log: Log,
               provisioner: Provisioner | None) -> None:
        """Run the role with ``variables`` through the relay; a failed run becomes the
        API's refusal of a named resource when there was one."""
        if provisioner is None:
            raise ProviderError("cloud `digitalocean` needs a provisioner to run its playbook",
                                hint="run it through `stagecraft infra up` / `infra down`")
        with relay(self.api_url, self.token(), on_retry=log) as server:
            try:
                provisioner(PLAYBOOK, {**variables, "digitalocean_api_url": server.url,
                                       "digitalocean_wait_timeout": self.wait_timeout},
                            files.state_dir, log)
            except RunFailed as failed:
                refusal = server.first_refusal()
                if refusal is None:
                    raise
                error = refusal.error()
                error.hint = f"{error.hint} ({failed.hint})" if failed.hint else error.hint
                raise error from failed

    def _waited_too_long(self, spec: FleetSpec, api: DigitalOceanAPI,
                         failed: RunFailed) -> StagecraftError | None:
        """The error for a run the droplet module ended because a droplet did not become
        active in time, naming it (read from the API now); None for another failure."""
        if not failures.waited_too_long(failed.message):
            return None
        try:
            droplets = api.list("droplets", "droplets",
                                tag_name=names.env_tag(spec.project, spec.environment))
        except StagecraftError:
            droplets = []
        error = failures.wait_timeout_error(
            failed.message, droplets, project=spec.project, environment=spec.environment,
            wait_timeout=self.wait_timeout)
        if error is not None and failed.hint:
            error.hint = f"{error.hint} ({failed.hint})"
        return error

    def _records(self, spec: FleetSpec, found: Found, before: dict[str, Any] | None,
                 created: set[str]) -> list[HostRecord]:
        deploy_users = dict((before or {}).get(DEPLOY_USERS) or {})
        by_host = {}
        for droplet in found.droplets:
            host = names.host_of(spec.project, spec.environment, droplet["name"])
            if host is not None:
                by_host[host] = droplet
        records = []
        for host in spec.hosts:
            droplet = by_host.get(host.name)
            if droplet is None:
                records.append(HostRecord(
                    name=host.name, roles=host.roles, state=MISSING, ssh_host=None,
                    ssh_port=None, ssh_user=SSH_USER, private_ip=None, provider_id=None,
                    provider=KIND, change=None))
                continue
            name = names.droplet_name(spec.project, spec.environment, host.name)
            change = CREATED if name in created else UNCHANGED
            records.append(_record(droplet, host.name, host.roles,
                                   deploy_users.get(host.name, SSH_USER), change, True))
        for host_name, droplet in by_host.items():
            if spec.host(host_name) is None:
                records.append(_record(droplet, host_name, tuple(
                    t.rsplit("--", 1)[1] for t in droplet.get("tags") or [] if "--" in t),
                    deploy_users.get(host_name, SSH_USER), ORPHANED, False))
        return records

    def _pin(self, spec: FleetSpec, files: StateFiles, records: list[HostRecord],
             before: dict[str, Any] | None, log: Log) -> list[HostRecord]:
        """Pin the host key of each droplet not pinned yet (a new droplet, or one made
        anew under the same name) at first contact; keep the others' pins."""
        pinned_ids = dict((before or {}).get(PINNED) or {})
        known = _known_lines(files.known_hosts)
        entries: list[tuple[list[str], str]] = []
        fresh = [r for r in records if r.state == RUNNING and r.ssh_host
                 and pinned_ids.get(r.name) != r.provider_id]
        with steps.step(log, f"reading the host keys of {', '.join(r.name for r in fresh)}"
                        if fresh else "host keys pinned before"):
            scanned = _in_parallel(fresh, _scan_host_key)
        for record, key in zip(fresh, scanned, strict=True):
            if isinstance(key, StagecraftError):
                raise key
            log(f"pinned the host key of {record.name} ({record.ssh_host}) at first contact: "
                f"{_fingerprint_of(key)}")
            pinned_ids[record.name] = record.provider_id
            known[record.name] = key
        for record in records:
            if record.ssh_host and record.name in known:
                entries.append((host_key_names(record.ssh_host, record.ssh_port or 22,
                                               record.private_ip), known[record.name]))
        header = (f"Host keys of {spec.project}/{spec.environment} (cloud digitalocean), "
                  "pinned by `stagecraft infra up` when each droplet was first reached.\n"
                  "# name: lines carry the host name; do not edit.")
        lines = known_hosts_text(header, entries)
        names_line = "".join(f"# name: {n} {k}\n" for n, k in sorted(known.items())
                             if any(r.name == n for r in records))
        write_atomic(files.known_hosts, lines + names_line)
        kept_ids = {n: i for n, i in pinned_ids.items() if any(r.name == n for r in records)}
        write_hosts_file(files, provider=KIND, spec=spec,
                         records=[r for r in records if r.state != MISSING],
                         ssh=self.ssh_access(spec, files.state_dir),
                         extra={DEPLOY_USERS: dict((before or {}).get(DEPLOY_USERS) or {}),
                                PINNED: kept_ids})
        return records

    # ----------------------------------------------------------- bootstrapped

    def bootstrapped(self, spec: FleetSpec, state_dir: Path, names_: Sequence[str],
                     deploy_user: str) -> None:
        """Hosts ``names_`` now have ``deploy_user``: their records reach them as it."""
        files = StateFiles(Path(state_dir))
        with hosts_lock(files, _quiet):
            document = _read_own(files)
            if document is None:
                return
            done = set(names_)
            records = [replace(r, ssh_user=deploy_user) if r.name in done else r
                       for r in document["hosts"]]
            users = {**(document.get(DEPLOY_USERS) or {}), **{n: deploy_user for n in done}}
            write_hosts_file(files, provider=KIND, spec=spec, records=records,
                             ssh=self.ssh_access(spec, files.state_dir),
                             extra={DEPLOY_USERS: users, PINNED: document.get(PINNED) or {}})

    # ---------------------------------------------------------------- status

    def status(self, spec: FleetSpec, state_dir: Path) -> list[HostRecord]:
        """Every host of the spec as the API has it now (running: `active`; creating:
        `new`; stopped: `off`; missing), then droplets of the environment it no longer
        lists."""
        files = StateFiles(Path(state_dir))
        found = self.read_found(spec, self.api(), _read_public_key(files.state_dir))
        records = self._records(spec, found, _read_own(files), created=set())
        return [replace(r, change=None) for r in records]

    def resources(self, spec: FleetSpec, state_dir: Path) -> CloudResources:
        """The environment's volumes (size, the droplet each is attached to) and cloud
        firewalls (status, droplets, inbound rules), as the API has them now."""
        api = self.api()
        droplets = api.list("droplets", "droplets",
                            tag_name=names.env_tag(spec.project, spec.environment))
        return CloudResources(
            volumes=report.volume_statuses(spec, self._volumes(spec, api, droplets), droplets),
            firewalls=report.firewall_statuses(self._firewalls(spec, api), droplets))

    # ------------------------------------------------------------------ down

    def down(self, spec: FleetSpec, state_dir: Path, *, log: Log | None = None,
             provisioner: Provisioner | None = None) -> DownResult:
        """Delete every droplet and volume with the environment's tag, its firewalls,
        VPC, SSH key and tags; then forget the hosts. Idempotent."""
        log = log or _quiet
        files = StateFiles(Path(state_dir))
        files.state_dir.mkdir(parents=True, exist_ok=True)
        with hosts_lock(files, log):
            found = self.read_found(spec, self.api(log), _read_public_key(files.state_dir))
            plan = plan_down(spec, self.settings, found)
            for change in plan.changes:
                log(f"delete {change.kind} {change.name}")
            if plan.changed:
                self._apply(plan.variables, files, log, provisioner)
            removed = remove_files([files.hosts, files.known_hosts])
        hosts = []
        deleted = {d["name"] for d in found.droplets}
        for host in spec.hosts:
            name = names.droplet_name(spec.project, spec.environment, host.name)
            hosts.append(HostRecord(
                name=host.name, roles=host.roles, state=MISSING, ssh_host=None, ssh_port=None,
                ssh_user=SSH_USER, private_ip=None, provider_id=None, provider=KIND,
                change=REMOVED if name in deleted else ABSENT))
        other = [c for c in plan.changes if c.kind != "droplet"]
        return DownResult(hosts=tuple(hosts),
                          removed=tuple([f"{c.kind} {c.name}" for c in other]
                                        + [f"file {p}" for p in removed]))


# ---------------------------------------------------------------------- helpers


def _record(droplet: dict[str, Any], host: str, roles: Sequence[str], user: str,
            change: str | None, in_spec: bool) -> HostRecord:
    v4 = (droplet.get("networks") or {}).get("v4") or []
    public = next((n["ip_address"] for n in v4 if n.get("type") == "public"), None)
    private = next((n["ip_address"] for n in v4 if n.get("type") == "private"), None)
    status = droplet.get("status")
    state = RUNNING if status == "active" else CREATING if status == failures.NEW else STOPPED
    if change == UNCHANGED and status != "active":
        change = STARTED
    return HostRecord(
        name=host, roles=tuple(roles), state=state, ssh_host=public, ssh_port=22,
        ssh_user=user, private_ip=private, provider_id=str(droplet.get("id")), provider=KIND,
        size=droplet.get("size_slug"), public_ip=public, change=change, in_spec=in_spec)


def _read_own(files: StateFiles) -> dict[str, Any] | None:
    document = read_hosts_file(files)
    if document is not None and document.get("provider") != KIND:
        from stagecraft.errors import StateError

        other = document.get("provider")
        raise StateError(
            f"{files.hosts} was written by cloud {other!r}, not `digitalocean`",
            hint=f"remove those hosts with cloud {other!r} first (`stagecraft infra down` "
            f"before changing providers.cloud), or delete {files.state_dir} if they are gone")
    return document


def _read_public_key(state_dir: Path) -> str | None:
    path = StateFiles(state_dir).public_key
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _placeholder_key() -> str:
    """A plan made before the environment's key exists: any valid key blob (the key's
    own fingerprint only decides whether the plan shows "create ssh key")."""
    return ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA "
            "not-made-yet")


def _known_lines(path: Path) -> dict[str, str]:
    """host name -> pinned key, from the ``# name:`` lines of the environment's
    known_hosts (written by :meth:`DigitalOceanCloud._pin`)."""
    result: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return result
    for line in text.splitlines():
        if line.startswith("# name: "):
            parts = line[len("# name: "):].split()
            if len(parts) >= 3:
                result[parts[0]] = " ".join(parts[1:3])
    return result



def _scan_host_key(record: HostRecord) -> str:
    """The droplet's ed25519 host key, read when its sshd first answers."""
    assert record.ssh_host is not None
    deadline = time.monotonic() + SSH_READY_TIMEOUT
    while not sshd_answers(record.ssh_host, record.ssh_port or 22, timeout=3):
        if time.monotonic() > deadline:
            raise ProviderError(
                f"droplet of host {record.name} ({record.ssh_host}) is active but its sshd "
                f"did not answer within {SSH_READY_TIMEOUT:g} s",
                hint="open the droplet's console in DigitalOcean's control panel; "
                "`stagecraft infra up` tries again")
        time.sleep(2)
    proc = subprocess.run(
        ["ssh-keyscan", "-T", "10", "-t", "ed25519", "-p", str(record.ssh_port or 22),
         record.ssh_host], capture_output=True, text=True, timeout=60, check=False)
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "ssh-ed25519":
            return f"{parts[1]} {parts[2]}"
    raise ProviderError(
        f"host {record.name} ({record.ssh_host}) offers no ed25519 host key "
        f"({(proc.stderr or 'no answer').strip()[:200]})",
        hint="`stagecraft infra up` tries again; the image must run OpenSSH")


def _fingerprint_of(key: str) -> str:
    proc = subprocess.run(["ssh-keygen", "-lf", "-"], input=f"x {key}\n", capture_output=True,
                          text=True, check=False)
    parts = proc.stdout.split()
    return parts[1] if len(parts) > 1 else key[:40]


def _in_parallel(items: Sequence[HostRecord], fn: Callable[[HostRecord], str]) -> list[Any]:
    from stagecraft.providers.cloud.ssh.adopt import in_parallel

    return in_parallel(items, fn)



