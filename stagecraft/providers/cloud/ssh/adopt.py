"""Adopting servers: pin each one's host key, then log in once and look around.

:func:`plan_endpoints` turns the spec into :class:`Endpoint` rows (hosts, and
bastions outside the environment). :class:`Adoption` pins host keys into a working
copy of the environment's known_hosts, first of the servers reached directly, then
of those behind a bastion (their ProxyCommand checks the bastion against that
copy), and runs the detection script on every host. Nothing is written to the state
directory here: the provider writes known_hosts and hosts.json once every host
succeeded.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from stagecraft.errors import CommandFailed, ConfigError, HostKeyChanged, ProviderError, \
    StagecraftError
from stagecraft.execs import run
from stagecraft.hosts.ssh import CONNECT_TIMEOUT, host_key_scan_argv, split_destination, ssh_argv
from stagecraft.providers.cloud.base import Confirm, FleetSpec, Log
from stagecraft.providers.cloud.ssh import hostkeys
from stagecraft.providers.cloud.ssh.hostkeys import HostKey, KnownEntry
from stagecraft.providers.cloud.ssh.probe import (
    DETECT_COMMAND,
    NO_KEY_TYPE,
    Endpoint,
    Facts,
    check_facts,
    classify,
    failure_error,
    parse_facts,
)

T = TypeVar("T")
R = TypeVar("R")

#: Seconds a scan or the detection script may take, the connection included.
SCAN_TIMEOUT = 3 * CONNECT_TIMEOUT
DETECT_TIMEOUT = 90


@dataclass(frozen=True)
class Endpoints:
    """The servers ``up`` connects to: the environment's hosts by name, and the
    bastions outside it that some host is reached through."""

    hosts: Mapping[str, Endpoint]
    bastions: tuple[Endpoint, ...]

    def direct(self) -> list[Endpoint]:
        """What is reached without a bastion: foreign bastions first, then hosts."""
        return [*self.bastions, *(e for e in self.hosts.values() if e.proxy is None)]

    def proxied(self) -> list[Endpoint]:
        return [e for e in self.hosts.values() if e.proxy is not None]


def plan_endpoints(spec: FleetSpec, user: str, key: str | None,
                   deploy_users: Mapping[str, str]) -> Endpoints:
    """Where and as whom to reach each host of ``spec``.

    ``user`` and ``key`` are the cloud's defaults for hosts that name none;
    ``deploy_users`` maps hosts bootstrap already switched to their deploy user.
    A ``proxy_jump`` naming another host of the spec goes through that host as it is
    reached; otherwise it is ``[user@]address[:port]`` (the user defaults to the
    host's). Raises ConfigError for a host without an address, a key file that does
    not exist, a host that is its own bastion, or a bastion behind another bastion.
    """
    where = f"environment {spec.environment}"
    hosts: dict[str, Endpoint] = {}
    for host in spec.hosts:
        if not host.address:
            raise ConfigError(f"{where}: host {host.name} has no address",
                              hint=f"set hosts[].address of {host.name}: cloud `ssh` "
                              "connects to servers that exist already")
        host_key = host.ssh_key or (str(Path(key).expanduser()) if key else None)
        if host_key is not None and not Path(host_key).is_file():
            raise ConfigError(f"{where}: host {host.name}: the ssh_key {host_key} does not exist",
                              hint=f"set ssh_key of host {host.name} (or providers.cloud."
                              "ssh_key) to the private key file that reaches the server")
        hosts[host.name] = Endpoint(
            f"host {host.name}", host.address, host.port or 22,
            deploy_users.get(host.name) or host.user or user, host_key, name=host.name)
    bastions: dict[tuple[str, int], Endpoint] = {}
    for host in spec.hosts:
        if not host.proxy_jump:
            continue
        endpoint = hosts[host.name]
        named = spec.host(host.proxy_jump)
        if named is not None:
            if named.name == host.name:
                raise ConfigError(f"{where}: host {host.name} names itself as its proxy_jump",
                                  hint="name another host, or [user@]address[:port]")
            if named.proxy_jump:
                raise ConfigError(
                    f"{where}: host {host.name} goes through {named.name}, which goes "
                    f"through {named.proxy_jump} itself; stagecraft takes one bastion only",
                    hint=f"set proxy_jump of {host.name} to a host reached directly")
            proxy = hosts[named.name].destination
        else:
            b_user, b_address, b_port = split_destination(host.proxy_jump, endpoint.user)
            proxy = f"{b_user}@{b_address}:{b_port}"
            found = bastions.get((b_address, b_port))
            label = (f"{found.label}, {host.name}" if found is not None
                     else f"bastion of host {host.name}")
            bastions[(b_address, b_port)] = Endpoint(label, b_address, b_port, b_user,
                                                     endpoint.key)
        hosts[host.name] = Endpoint(endpoint.label, endpoint.address, endpoint.port,
                                    endpoint.user, endpoint.key, proxy, endpoint.name)
    return Endpoints(hosts, tuple(bastions.values()))


def in_parallel(items: Sequence[T], fn: Callable[[T], R]) -> list[R | StagecraftError]:
    """``fn(item)`` for every item at once; each result, or the StagecraftError it
    raised, in the order of ``items``. Other exceptions (bugs) propagate."""
    if not items:
        return []

    def guarded(item: T) -> R | StagecraftError:
        try:
            return fn(item)
        except StagecraftError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(guarded, items))


def raise_first(results: Sequence[object], log: Log) -> None:
    """Raise the first StagecraftError of ``results``, after logging the others."""
    errors = [r for r in results if isinstance(r, StagecraftError)]
    for other in errors[1:]:
        log(f"also: {other.message}")
    if errors:
        raise errors[0]


def ip_of(address: str, port: int) -> str | None:
    """``address`` when it is an IP literal, else what it resolves to here (None when
    it does not: a name only the bastion resolves)."""
    with contextlib.suppress(ValueError):
        socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
        return address
    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    except OSError:
        return None
    return str(infos[0][4][0]) if infos else None


class Adoption:
    """One ``up``'s pins and probes, against a working copy of known_hosts."""

    def __init__(self, pinned_file: Path, work_dir: Path, *, log: Log,
                 confirm: Confirm | None) -> None:
        self.pinned_file = pinned_file
        self.log = log
        self.confirm = confirm
        self.work_dir = work_dir
        self.known_hosts = work_dir / "known_hosts"
        text = pinned_file.read_text() if pinned_file.is_file() else ""
        self.known_hosts.write_text(text)
        self.added: list[tuple[Endpoint, HostKey]] = []

    # ---------------------------------------------------------------- host keys

    def pin(self, endpoints: Sequence[Endpoint]) -> None:
        """Learn each endpoint's host key (at once) and decide whether to trust it:
        keys pinned before or vouched for pass; a changed one is refused; new ones
        are asked about, in order. Trusted keys go into the working known_hosts."""
        scanned = in_parallel(endpoints, self._scan_and_judge)
        raise_first(scanned, self.log)
        judged = [r for r in scanned if not isinstance(r, StagecraftError)]
        for endpoint, offered, judgement in judged:
            if judgement.verdict in (hostkeys.CHANGED, hostkeys.REVOKED):
                raise self._refusal(endpoint, offered, judgement)
        new = []
        seen: set[tuple[str, int, HostKey]] = set()  # two hosts on one server: asked once
        for endpoint, offered, judgement in judged:
            if (endpoint.address, endpoint.port, offered) in seen:
                continue
            seen.add((endpoint.address, endpoint.port, offered))
            if judgement.verdict == hostkeys.VOUCHED:
                self._trust(endpoint, offered)
                self.log(f"{endpoint.label}: host key {hostkeys.fingerprint(offered).hash} "
                         f"is in {hostkeys.shown_path(hostkeys.user_known_hosts())}; pinned")
            elif judgement.verdict == hostkeys.NEW:
                new.append((endpoint, offered, hostkeys.fingerprint(offered)))
        if new and self.confirm is None:
            raise hostkeys.not_trusted_error(
                [(e.label, e.address, e.port, fp, key.type) for e, key, fp in new], asked=False)
        for endpoint, offered, fp in new:
            assert self.confirm is not None
            if not self.confirm(hostkeys.question(endpoint.label, endpoint.address,
                                                  endpoint.port, fp)):
                raise hostkeys.not_trusted_error(
                    [(endpoint.label, endpoint.address, endpoint.port, fp, offered.type)],
                    asked=True)
            self._trust(endpoint, offered)
            self.log(f"{endpoint.label}: trusting {fp} from now on")

    def _scan_and_judge(self, endpoint: Endpoint
                        ) -> tuple[Endpoint, HostKey, hostkeys.Judgement]:
        pinned = hostkeys.lookup(self.known_hosts, endpoint.address, endpoint.port)
        vouched = hostkeys.lookup(hostkeys.user_known_hosts(), endpoint.address, endpoint.port)
        known = [e for e in pinned if e.marker is None] or vouched
        try:
            offered = self._scan(endpoint, hostkeys.algorithms_for(known))
        except _NoKnownKeyType:
            # It offers no key of a type known for it: any key it offers differs.
            offered = self._scan(endpoint, [])
        return endpoint, offered, hostkeys.judge(offered, pinned, vouched)

    def _scan(self, endpoint: Endpoint, algorithms: list[str]) -> HostKey:
        fd, name = tempfile.mkstemp(prefix="scan-", dir=self.work_dir)
        os.close(fd)
        collected = Path(name)
        try:
            argv = host_key_scan_argv(
                address=endpoint.address, port=endpoint.port, user=endpoint.user,
                collect_into=collected, algorithms=algorithms, proxy=endpoint.proxy,
                private_key=endpoint.key, known_hosts=self.known_hosts)
            proc = self._run(argv, endpoint, SCAN_TIMEOUT, "reading its host key")
            entries: list[KnownEntry] = hostkeys.parse_entries(collected.read_text())
        finally:
            collected.unlink(missing_ok=True)
        if entries:
            return entries[0].key
        failure = classify(proc.stderr, endpoint)
        if failure.kind == NO_KEY_TYPE and algorithms:
            raise _NoKnownKeyType()
        raise failure_error(failure, endpoint)

    def _trust(self, endpoint: Endpoint, key: HostKey) -> None:
        name = hostkeys.host_key_name(endpoint.address, endpoint.port)
        with self.known_hosts.open("a") as handle:
            handle.write(f"{name} {key.line}\n")
        self.added.append((endpoint, key))

    def _refusal(self, endpoint: Endpoint, offered: HostKey,
                 judgement: hostkeys.Judgement) -> HostKeyChanged:
        fp = hostkeys.fingerprint(offered)
        pinned = judgement.source == hostkeys.PINNED
        file = self.pinned_file if pinned else hostkeys.user_known_hosts()
        if judgement.verdict == hostkeys.REVOKED:
            return HostKeyChanged(
                f"{endpoint.who} offers {fp}, which {hostkeys.shown_path(file)} marks as "
                "revoked; refusing to connect",
                hint="give the server a new host key, then check it and run `stagecraft "
                "infra up` again")
        known = [hostkeys.fingerprint(k) for k in judgement.known]
        return hostkeys.changed_error(endpoint.label, endpoint.address, endpoint.port, fp,
                                      offered.type, known, file, pinned=pinned)

    # ---------------------------------------------------------------- detection

    def detect(self, endpoint: Endpoint) -> Facts:
        """Log in as the endpoint's user with its key (host keys checked against the
        working known_hosts) and run the detection script; the facts, or the
        ProviderError that says why the server cannot be adopted."""
        argv = ssh_argv(private_key=endpoint.key, known_hosts=self.known_hosts,
                        address=endpoint.address, port=endpoint.port, user=endpoint.user,
                        command=DETECT_COMMAND, proxy=endpoint.proxy, share=False)
        proc = self._run(argv, endpoint, DETECT_TIMEOUT, "running the detection script")
        if proc.returncode == 255:  # ssh's own failure
            raise failure_error(classify(proc.stderr, endpoint), endpoint)
        return check_facts(parse_facts(proc.stdout), endpoint, proc.stdout + proc.stderr)

    @staticmethod
    def _run(argv: list[str], endpoint: Endpoint, timeout: float, doing: str):
        try:
            return run(argv, check=False, timeout=timeout,
                       hint="install OpenSSH's client (apt-get install openssh-client)")
        except CommandFailed as exc:  # only a timeout: check=False
            raise ProviderError(
                f"{endpoint.who}: no end to {doing} after {timeout:g} s",
                hint="check that the server is not overloaded, and try again") from exc


class _NoKnownKeyType(Exception):
    """The server offers no host key of the types asked for."""


__all__ = ["Adoption", "Endpoints", "in_parallel", "ip_of", "plan_endpoints", "raise_first"]
