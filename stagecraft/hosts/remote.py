"""Short commands on an environment's hosts over SSH, outside Ansible.

Used where starting a playbook would cost more than the work: taking and
releasing the deploy lock, probing what a host runs. Same key, same pinned
host keys and the same control sockets as the Ansible runs, so the connection
made here is reused by the playbook that follows.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from stagecraft.errors import CommandFailed, StateError
from stagecraft.execs import Completed, run
from stagecraft.hosts import ssh
from stagecraft.providers.cloud.base import HostRecord, SshAccess

T = TypeVar("T")


@dataclass(frozen=True)
class RemoteHost:
    """One host as the controller reaches it."""

    name: str
    address: str
    port: int
    user: str
    access: SshAccess
    private_key: Path | None = None  # this host's own key; None: the access's
    proxy: str | None = None  # the bastion, user@address:port
    route: ssh.Route | None = None  # the whole way (over the tailnet), in place of proxy

    @property
    def key(self) -> Path | None:
        """The private key this host is reached with (None: ssh's defaults and agent)."""
        return self.private_key or self.access.private_key

    def ssh_argv(self, command: str | None, *, flags: Sequence[str] = ()) -> list[str]:
        """``ssh`` argv that runs ``command`` (a shell string; None: a login shell) on
        the host; ``flags`` go right after ``ssh``."""
        return ssh.ssh_argv(private_key=self.key,
                            known_hosts=self.access.known_hosts, address=self.address,
                            port=self.port, user=self.user, command=command, flags=flags,
                            proxy=self.proxy, route=self.route)

    def run(self, command: str, *, input: str | None = None, timeout: float = 60,
            check: bool = True, what: str | None = None,
            on_line: Callable[[str, str], None] | None = None) -> Completed:
        """Run ``command`` on the host as root (through ``sudo -n`` when logged in as
        another user, as the playbooks become root); CommandFailed names the host when
        it fails. ``on_line`` takes each output line in place of the debug log (pass a
        no-op for output that must never be logged, such as env files)."""
        ssh.make_control_dir()
        if self.user != "root":
            command = f"sudo -n -- sh -c {shlex.quote(command)}"
        try:
            return run(self.ssh_argv(command), input=input, timeout=timeout, check=check,
                       on_line=on_line, hint=f"check that host {self.name} is up: stagecraft infra status")
        except CommandFailed as exc:
            exc.message = f"host {self.name}: {what or 'command'} failed: {exc.message}"
            raise


def remote_hosts(records: Mapping[str, HostRecord], access: SshAccess,
                 names: Iterable[str]) -> dict[str, RemoteHost]:
    """RemoteHost for each of ``names`` (use :meth:`Fleet.remotes`: its records are the
    ones that count)."""
    wanted = list(names)
    hosts: dict[str, RemoteHost] = {}
    for name in wanted:
        record = records.get(name)
        if record is None or record.ssh_host is None:
            raise StateError(f"host {name} has no address in the host list",
                             hint="create the hosts first: stagecraft infra up")
        hosts[name] = RemoteHost(name=name, address=record.ssh_host,
                                 port=record.ssh_port or 22, user=record.ssh_user or access.user,
                                 access=access,
                                 private_key=Path(record.ssh_key) if record.ssh_key else None,
                                 proxy=record.ssh_proxy, route=route_of(record))
    return hosts


def route_of(record: HostRecord) -> ssh.Route:
    """The way to a host beyond its address: its bastion, or the tailnet's."""
    return ssh.Route(proxy=record.ssh_proxy, proxy_command=record.proxy_command,
                     host_key_alias=record.host_key_alias)


def in_parallel(hosts: Iterable[RemoteHost], fn: Callable[[RemoteHost], T]) -> dict[str, T]:
    """``fn(host)`` for every host at once; results by host name (first error re-raised)."""
    hosts = list(hosts)
    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        futures = {h.name: pool.submit(fn, h) for h in hosts}
        return {name: future.result() for name, future in futures.items()}


def quote(path: str | Path) -> str:
    return shlex.quote(str(path))
