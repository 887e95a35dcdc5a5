"""The ``ssh`` cloud provider (PROVIDER_CLOUD_SSH): servers that exist already.

``up`` adopts each host of the spec: it pins the host key the server offers (known
before, vouched for by the user's known_hosts, or confirmed by the user; a changed
key is refused), logs in as the host's user with its key, and records what it
found (OS, architecture, addresses). It never creates or changes anything on a
server. ``down`` forgets the hosts (hosts.json and known_hosts) and never connects.
After bootstrap, ``bootstrapped`` records that the deploy user reaches the hosts.
See spec/providers/cloud-ssh.md.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from stagecraft import steps
from stagecraft.doctor.model import Check, missing, ok
from stagecraft.errors import HostKeyChanged, ProviderError, StagecraftError, StateError
from stagecraft.execs import run
from stagecraft.fsutil import write_atomic
from stagecraft.hosts.ssh import (
    CONNECT_TIMEOUT,
    Route,
    close_shared_argv,
    split_destination,
    ssh_argv,
)
from stagecraft.providers.cloud.base import (
    ABSENT,
    CREATED,
    HOSTS_LOCK_FILE,
    MISSING,
    ORPHANED,
    REMOVED,
    RUNNING,
    UNCHANGED,
    UNREACHABLE,
    CloudCapabilities,
    CloudChange,
    CloudPlan,
    Confirm,
    DownResult,
    FleetSpec,
    HostRecord,
    Log,
    Provisioner,
    RegistryAccess,
    SshAccess,
    StateFiles,
    hosts_lock,
    known_hosts_text,
    read_hosts_file,
    remove_files,
    write_hosts_file,
)
from stagecraft.providers.cloud.ssh.adopt import (
    Adoption,
    in_parallel,
    ip_of,
    plan_endpoints,
    raise_first,
)
from stagecraft.providers.cloud.ssh.keys import deploy_keys
from stagecraft.providers.cloud.ssh.probe import Endpoint, Facts

KIND = "ssh"
SCOPE = "controller"
#: Seconds ``status`` gives each host to answer `ssh true`.
STATUS_CONNECT_TIMEOUT = 5
#: hosts.json extra: host name -> the deploy user bootstrap made (set by ``bootstrapped``).
DEPLOY_USERS = "deploy_users"


def _quiet(_: str) -> None:
    pass


def _close_shared_connections(records: Iterable[HostRecord]) -> None:
    for record in records:
        if record.ssh_host and record.ssh_user:
            run(close_shared_argv(record.ssh_host, record.ssh_port or 22, record.ssh_user,
                                  Route(record.ssh_proxy, record.proxy_command,
                                        record.host_key_alias)),
                check=False, timeout=CONNECT_TIMEOUT)


class SshCloud:
    """Servers you rent or own, reached over SSH. See spec/providers/cloud-ssh.md."""

    kind = KIND
    # Nothing besides the hosts: the registry is stagecraft.yml's (without one, images
    # go to the hosts over SSH), Traefik the public image, and the servers hold what
    # users cannot lose by mistake. After bootstrap it connects as the deploy user.
    capabilities = CloudCapabilities(deploy_user_logins=True)

    def __init__(self, user: str = "root", ssh_key: str | None = None,
                 docker_source: str = "docker-ce") -> None:
        """``user`` and ``ssh_key``: for hosts that name none (None: the agent and
        ~/.ssh). ``docker_source``: where bootstrap installs Docker from (docker-ce:
        Docker's apt repository; distro: the distribution's packages)."""
        self.user = user
        self.ssh_key = str(Path(ssh_key).expanduser()) if ssh_key else None
        self.docker_source = docker_source

    # ----------------------------------------------------------- what it offers

    def ssh_access(self, spec: FleetSpec, state_dir: Path) -> SshAccess:
        """The cloud's user and key, and the environment's pinned known_hosts (each
        record names its own user, key and bastion)."""
        return SshAccess(user=self.user,
                         private_key=Path(self.ssh_key) if self.ssh_key else None,
                         known_hosts=StateFiles(Path(state_dir)).known_hosts)

    def bootstrap_vars(self, spec: FleetSpec, state_dir: Path) -> dict[str, Any]:
        """Where Docker comes from, and the keys the deploy user accepts: the public
        halves of the keys that reach the hosts (so stagecraft can switch to it)."""
        keys = [host.ssh_key or self.ssh_key for host in spec.hosts] or [self.ssh_key]
        return {"bootstrap_docker_source": self.docker_source,
                "bootstrap_deploy_authorized_keys": deploy_keys(keys)}

    def controller_checks(self) -> list[Check]:
        """ssh and ssh-keygen (OpenSSH's client) on this machine."""
        checks = []
        for tool in ("ssh", "ssh-keygen"):
            path = shutil.which(tool)
            name = f"ssh cloud: {tool}"
            checks.append(ok(SCOPE, name, path) if path else missing(
                SCOPE, name, f"{tool} is not installed",
                "apt-get install openssh-client"))
        return checks

    def prepare_controller(self, log: Log) -> list[str]:
        """Nothing to make: the servers exist already."""
        return []

    def registry_access(self, spec: FleetSpec, state_dir: Path) -> RegistryAccess:
        raise ProviderError("cloud `ssh` runs no registry",
                            hint="set project.registry in stagecraft.yml")

    def publish_traefik_image(self, spec: FleetSpec, state_dir: Path, *,
                              log: Log | None = None) -> str:
        raise ProviderError("cloud `ssh` publishes no Traefik image: hosts pull the public one")

    def ensure_base_image(self, name: str, log: Log | None = None) -> str:
        raise ProviderError(f"cloud `ssh` builds no base image (asked for {name})",
                            hint="start the Dockerfile FROM a public image")

    # ------------------------------------------------------------------- up

    def plan(self, spec: FleetSpec, state_dir: Path, *, prune: bool = False,
             down: bool = False, log: Log | None = None) -> CloudPlan:
        """Hosts ``up`` would adopt (or ``down`` forget), from the recorded ones."""
        document = _read_own(StateFiles(Path(state_dir)), spec)
        recorded = {r.name: r for r in document["hosts"]} if document else {}
        if down:
            return CloudPlan(tuple(CloudChange("host", n, "forget", "the server is left as it is")
                                   for n in recorded))
        changes = [CloudChange("host", h.name, "adopt", f"{h.address}:{h.port or 22}")
                   for h in spec.hosts if h.name not in recorded]
        unlisted = tuple(n for n in recorded if spec.host(n) is None)
        changes += [CloudChange("host", n, "forget", "not listed in the environment")
                    for n in unlisted if prune]
        return CloudPlan(tuple(changes), unlisted=unlisted)

    def volume_device(self, spec: FleetSpec, host: str, volume: str) -> str | None:
        """A server's disks have no stable name stagecraft could know: the config's."""
        return None

    def up(self, spec: FleetSpec, state_dir: Path, *, log: Log | None = None,
           confirm: Confirm | None = None, prune: bool = False,
           provisioner: Provisioner | None = None) -> list[HostRecord]:
        """Adopt every host of ``spec``: pin its host key, log in, record what it runs.

        Hosts reached directly (and bastions outside the environment) are pinned
        first, then the hosts behind them; the logins run at once. known_hosts and
        hosts.json are written only when every host succeeded. Records of hosts the
        spec no longer lists come last, ``orphaned`` (kept in hosts.json).
        """
        log = log or _quiet
        files = StateFiles(Path(state_dir))
        with _made_if_missing(files.state_dir), hosts_lock(files, log):
            started = time.monotonic()
            document = _read_own(files, spec)
            before = {r.name: r for r in document["hosts"]} if document else {}
            deploy_users = dict((document or {}).get(DEPLOY_USERS) or {})
            endpoints = plan_endpoints(spec, self.user, self.ssh_key, deploy_users)
            with tempfile.TemporaryDirectory(prefix=".adopting-", dir=files.state_dir) as work:
                adoption = Adoption(files.known_hosts, Path(work), log=log, confirm=confirm)
                try:
                    adoption.pin(endpoints.direct())
                    adoption.pin(endpoints.proxied())
                except HostKeyChanged:
                    # A connection opened before the key changed would still be
                    # shared by the next command: close them all.
                    _close_shared_connections(before.values())
                    raise
                hosts = list(endpoints.hosts.values())
                with steps.step(log, f"logging in to {', '.join(endpoints.hosts)}"):
                    found = in_parallel(hosts, adoption.detect)
                raise_first(found, log)
                facts = {e.name: f for e, f in zip(hosts, found, strict=True)
                         if isinstance(f, Facts)}
                pinned_text = adoption.known_hosts.read_text()
            records = [self._record(spec, endpoint, facts[name], before.get(name))
                       for name, endpoint in endpoints.hosts.items()]
            orphans = [replace(r, in_spec=False, change=ORPHANED)
                       for name, r in before.items() if spec.host(name) is None]
            if prune:  # forgetting a server is all `ssh` does to one: no question to ask
                for orphan in orphans:
                    log(f"forgot host {orphan.name}; the server itself is left as it is")
                orphans = []
            for record in records:
                where = f"{record.ssh_user}@{record.ssh_host}:{record.ssh_port}"
                if record.change == CREATED:
                    log(f"adopted host {record.name}: {record.os}, {record.arch}, {where}")
            for orphan in orphans:
                log(f"host {orphan.name} is not in the environment any more; stagecraft "
                    "forgets it at `stagecraft infra down` (the server is left as it is)")
            write_atomic(files.known_hosts, _known_hosts_file(spec, pinned_text))
            kept = {n: u for n, u in deploy_users.items()
                    if n in endpoints.hosts or n in {o.name for o in orphans}}
            self._write(files, spec, records + orphans, kept)
            adopted = sum(r.change == CREATED for r in records)
            log(f"{len(records)} host(s) ready ({adopted} adopted) in "
                f"{steps.format_seconds(time.monotonic() - started)}")
            return records + orphans

    def _record(self, spec: FleetSpec, endpoint: Endpoint, facts: Facts,
                before: HostRecord | None) -> HostRecord:
        host = spec.host(endpoint.name or "")
        assert host is not None
        ip = ip_of(endpoint.address, endpoint.port)
        same = (before is not None and before.in_spec and before.ssh_host == endpoint.address
                and before.ssh_port == endpoint.port)
        return HostRecord(
            name=host.name, roles=host.roles, state=RUNNING, ssh_host=endpoint.address,
            ssh_port=endpoint.port, ssh_user=endpoint.user, private_ip=ip, public_ip=ip,
            provider_id=None, provider=KIND, size=None, ssh_key=endpoint.key,
            ssh_proxy=endpoint.proxy, os=facts.os, arch=facts.arch,
            change=UNCHANGED if same else CREATED)

    def _write(self, files: StateFiles, spec: FleetSpec, records: list[HostRecord],
               deploy_users: dict[str, str]) -> None:
        write_hosts_file(files, provider=KIND, spec=spec, records=records,
                         ssh=self.ssh_access(spec, files.state_dir),
                         extra={DEPLOY_USERS: deploy_users})

    # ------------------------------------------------------------ bootstrapped

    def bootstrapped(self, spec: FleetSpec, state_dir: Path, names: Sequence[str],
                     deploy_user: str) -> None:
        """Hosts ``names`` now have ``deploy_user``: their records reach them as that
        user, and so do the ProxyCommands that go through one of them."""
        files = StateFiles(Path(state_dir))
        with hosts_lock(files, _quiet):
            document = _read_own(files, spec)
            if document is None:
                return
            records: list[HostRecord] = document["hosts"]
            done = {r.name for r in records if r.name in set(names)}
            bastions = {(r.ssh_host, r.ssh_port) for r in records if r.name in done}
            updated = []
            for record in records:
                if record.name in done:
                    record = replace(record, ssh_user=deploy_user)
                if record.ssh_proxy:
                    _, address, port = split_destination(record.ssh_proxy, self.user)
                    if (address, port) in bastions:
                        record = replace(record, ssh_proxy=f"{deploy_user}@{address}:{port}")
                updated.append(record)
            deploy_users = {**(document.get(DEPLOY_USERS) or {}),
                            **{name: deploy_user for name in done}}
            self._write(files, spec, updated, deploy_users)

    # --------------------------------------------------------------- status

    def status(self, spec: FleetSpec, state_dir: Path) -> list[HostRecord]:
        """The recorded hosts (running when `ssh true` gets in within a few seconds,
        else unreachable), spec hosts without a record (missing), then orphans."""
        files = StateFiles(Path(state_dir))
        document = _read_own(files, spec)
        recorded = {r.name: r for r in document["hosts"]} if document else {}
        access = self.ssh_access(spec, state_dir)
        rows: list[HostRecord] = []
        for host in spec.hosts:
            record = recorded.get(host.name)
            if record is None:
                rows.append(HostRecord(
                    name=host.name, roles=host.roles, state=MISSING, ssh_host=host.address,
                    ssh_port=host.port or 22, ssh_user=host.user or self.user,
                    private_ip=None, provider_id=None, provider=KIND, ssh_key=host.ssh_key))
            else:
                rows.append(replace(record, roles=host.roles, in_spec=True))
        rows += [replace(r, in_spec=False) for n, r in recorded.items() if spec.host(n) is None]
        known = [r for r in rows if r.state != MISSING]
        answers = in_parallel(known, lambda r: _answers(r, access))
        states = {r.name: RUNNING if a is True else UNREACHABLE
                  for r, a in zip(known, answers, strict=True)}
        return [replace(r, state=states.get(r.name, r.state), change=None) for r in rows]

    # ----------------------------------------------------------------- down

    def down(self, spec: FleetSpec, state_dir: Path, *, log: Log | None = None,
             provisioner: Provisioner | None = None) -> DownResult:
        """Forget the environment's hosts: remove hosts.json and the pinned known_hosts.
        The servers are left as they are (never contacted). Idempotent."""
        log = log or _quiet
        files = StateFiles(Path(state_dir))
        if not files.state_dir.is_dir():
            return self._forgot(spec, [], [], log)
        with hosts_lock(files, log):
            document = _read_own(files, spec)
            records = list(document["hosts"]) if document else []
            removed = remove_files([files.hosts, files.known_hosts])
        return self._forgot(spec, records, removed, log)

    def _forgot(self, spec: FleetSpec, records: list[HostRecord], removed: list[Path],
                log: Log) -> DownResult:
        hosts = [replace(r, state=MISSING, change=REMOVED, in_spec=spec.host(r.name) is not None)
                 for r in records]
        forgotten = {r.name for r in records}
        hosts += [HostRecord(name=h.name, roles=h.roles, state=MISSING, ssh_host=h.address,
                             ssh_port=h.port or 22, ssh_user=h.user or self.user,
                             private_ip=None, provider_id=None, provider=KIND, change=ABSENT)
                  for h in spec.hosts if h.name not in forgotten]
        for record in records:
            log(f"forgot host {record.name} ({record.ssh_host}); the server itself is "
                "left as it is")
        result = DownResult(hosts=tuple(hosts), removed=tuple(f"file {p}" for p in removed))
        if not result.changed:
            log(f"nothing to forget: environment {spec.environment} of {spec.project} "
                "has no hosts recorded")
        return result


@contextlib.contextmanager
def _made_if_missing(directory: Path) -> Iterator[None]:
    """``directory`` exists while the block runs; the directories made for it go
    again if the block left nothing in them (a refused ``up`` writes nothing)."""
    made = [d for d in (directory, *directory.parents) if not d.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    try:
        yield
    finally:
        if made and [p.name for p in directory.iterdir()] == [HOSTS_LOCK_FILE]:
            (directory / HOSTS_LOCK_FILE).unlink(missing_ok=True)
        for path in made:  # innermost first; rmdir leaves a directory that is not empty
            with contextlib.suppress(OSError):
                path.rmdir()


def _read_own(files: StateFiles, spec: FleetSpec) -> dict[str, Any] | None:
    """hosts.json when cloud `ssh` wrote it; StateError when another cloud did (its
    hosts may still exist: that cloud must remove them first)."""
    document = read_hosts_file(files)
    if document is not None and document.get("provider") != KIND:
        other = document.get("provider")
        raise StateError(
            f"environment {spec.environment}: {files.hosts} was written by cloud "
            f"{other!r}, not `ssh`",
            hint=f"remove those hosts with cloud {other!r} first (`stagecraft infra down` "
            f"before changing providers.cloud), or delete {files.state_dir} if they are "
            "gone")
    return document


def _known_hosts_file(spec: FleetSpec, pinned: str) -> str:
    """The environment's known_hosts: a header, then every pinned line (new ones
    appended, earlier ones kept: bastions, orphans)."""
    header = (f"Host keys of {spec.project}/{spec.environment} (cloud ssh), pinned by "
              "`stagecraft infra up`.\nA changed key is refused; to re-pin one, remove it "
              "with `ssh-keygen -R '[address]:port' -f <this file>`.")
    lines = [line for line in pinned.splitlines() if line.strip() and not line.startswith("#")]
    entries = [(line.split()[:1], " ".join(line.split()[1:])) for line in dict.fromkeys(lines)]
    return known_hosts_text(header, entries)


def _answers(record: HostRecord, access: SshAccess) -> bool:
    """Whether `ssh true` gets into the host within a few seconds, on a connection of
    its own (an open control socket could outlive the server's sshd)."""
    assert record.ssh_host is not None
    argv = ssh_argv(private_key=record.ssh_key or access.private_key,
                    known_hosts=access.known_hosts, address=record.ssh_host,
                    port=record.ssh_port or 22, user=record.ssh_user, command="true",
                    proxy=record.ssh_proxy, share=False, connect_timeout=STATUS_CONNECT_TIMEOUT)
    try:
        return run(argv, check=False, timeout=4 * STATUS_CONNECT_TIMEOUT).ok
    except StagecraftError:
        return False
