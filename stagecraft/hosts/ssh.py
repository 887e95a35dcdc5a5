"""SSH options and argv: the one place that decides how stagecraft reaches a host.

Every connection uses the same settings, whoever makes it: the probe and the
deploy lock (hosts/remote.py), `stagecraft ssh`, `exec` and `logs`, and the
Ansible runs (ansible/bundle.py, render/inventory.py):

- the environment's key only (``IdentityFile`` + ``IdentitiesOnly``);
- its pinned known_hosts only, always checked (``StrictHostKeyChecking=yes``);
- one control socket per host: ``ControlPath=<CONTROL_PATH_DIR>/%C``. ssh
  expands ``%C`` to a hash of the local host name and the remote address, port
  and user, so a playbook run reuses the connection the probe just opened
  (and the other way round) instead of logging in again. A host reached through a
  ProxyCommand (a bastion, a tailnet node) has the way there in the socket's name
  too (:attr:`Route.socket_prefix`): its address alone does not tell it apart.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import socket
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stagecraft.errors import EnvironmentMissing

#: Hex digits of the hash of a route that start its hosts' socket names (and a "-").
ROUTE_HASH_LENGTH = 8
# A socket path must fit in 104 bytes: a route's prefix is 9 characters, %C is 40,
# and ssh adds a 17-character temporary suffix while it sets the socket up.
_SOCKET_PATH_MAX = 104 - 1 - (ROUTE_HASH_LENGTH + 1) - 40 - 17


def _control_path_dir() -> Path:
    """Ansible's own default directory, so plain ansible-playbook runs with this
    repository's ansible.cfg (control_path = %(directory)s/%%C) share the sockets too;
    a short one in /tmp when the home directory's path is too long for sockets."""
    ansible_default = Path.home() / ".ansible" / "cp"
    if len(str(ansible_default)) < _SOCKET_PATH_MAX:
        return ansible_default
    return Path(f"/tmp/stagecraft-cp-{os.getuid()}")


CONTROL_PATH_DIR = _control_path_dir()
# How long an idle connection stays open for the next command (measured: a
# playbook of ten tasks takes 8 s instead of 34 s when it reuses one).
CONTROL_PERSIST = "60s"
CONNECT_TIMEOUT = 10


def host_key_options(known_hosts: Path | str | None) -> list[str]:
    """Host keys are checked, always; given a known_hosts file, only it vouches for hosts."""
    options: list[str] = []
    if known_hosts is not None:
        options += [f"UserKnownHostsFile={known_hosts}", "GlobalKnownHostsFile=/dev/null"]
    options.append("StrictHostKeyChecking=yes")
    return options


def key_options(private_key: Path | str | None) -> list[str]:
    """Offer only this key (an agent's other keys would count against MaxAuthTries)."""
    if private_key is None:
        return []
    return [f"IdentityFile={private_key}", "IdentitiesOnly=yes"]


def sharing_options() -> list[str]:
    """Open one connection per host and keep it for the next command."""
    return ["ControlMaster=auto", f"ControlPersist={CONTROL_PERSIST}"]


def control_path(route: Route | None = None) -> str:
    """The control socket of a host: ``%C`` (address, port, user), after the prefix of
    the route that leads there, if any."""
    return f"{CONTROL_PATH_DIR}/{route.socket_prefix if route else ''}%C"


def control_options(route: Route | None = None) -> list[str]:
    """Share connections through one socket per host (:func:`control_path`)."""
    return [*sharing_options(), f"ControlPath={control_path(route)}"]


def unshared_options() -> list[str]:
    """Neither use nor leave a control socket, whatever ~/.ssh/config says."""
    return ["ControlMaster=no", "ControlPath=none"]


def as_args(options: Iterable[str]) -> list[str]:
    """``["-o", option, ...]`` for an argv."""
    return [word for option in options for word in ("-o", option)]


def connection_options(private_key: Path | str | None,
                       known_hosts: Path | str | None) -> list[str]:
    """``-o`` options of every ssh call outside Ansible, without the control socket.

    BatchMode: never stop to ask for a password or passphrase; fail instead.
    """
    return as_args([*key_options(private_key), *host_key_options(known_hosts),
                    "BatchMode=yes"])


def split_destination(destination: str, default_user: str) -> tuple[str, str, int]:
    """``[user@]address[:port]`` -> (user, address, port); ``[v6]:port`` works too."""
    user, _, rest = destination.rpartition("@")
    address, port = rest, 22
    if rest.startswith("["):
        address, _, tail = rest[1:].partition("]")
        port = int(tail[1:]) if tail.startswith(":") and tail[1:].isdigit() else 22
    elif rest.count(":") == 1:
        head, _, tail = rest.partition(":")
        if tail.isdigit():
            address, port = head, int(tail)
    return user or default_user, address, port


@dataclass(frozen=True)
class Route:
    """How ssh gets to a host besides its address: a bastion (``proxy``,
    ``user@address:port``), or a command that connects to ``%h:%p`` (a tailnet node's
    ``tailscale nc``), and the known_hosts name its key is pinned under when that is
    not the address ssh connects to (``host_key_alias``)."""

    proxy: str | None = None
    proxy_command: str | None = None
    host_key_alias: str | None = None

    @property
    def socket_prefix(self) -> str:
        """How the control sockets of hosts reached this way begin: nothing for a host
        reached at its own address, else a hash of the way there and a dash.

        ``%C`` hashes only the address, port and user ssh connects to, and behind a
        ProxyCommand those are not unique: every Headscale hands out 100.64.0.1 and
        on, VPCs reuse 10.x addresses. With one socket for both, a
        command meant for one environment's host ran on another's, over a connection
        the other environment had left open.
        """
        if self.proxy is None and self.proxy_command is None and self.host_key_alias is None:
            return ""
        way = "\0".join(part or "" for part in (self.proxy, self.proxy_command,
                                                self.host_key_alias))
        return hashlib.sha256(way.encode()).hexdigest()[:ROUTE_HASH_LENGTH] + "-"

    def options(self, private_key: Path | str | None,
                known_hosts: Path | str | None) -> list[str]:
        options = []
        if self.proxy_command is not None:
            # A tailnet path can vanish under a live connection (a logout, tailscaled
            # restarting): notice within 30 s instead of waiting forever.
            options += [f"ProxyCommand={self.proxy_command}", "ServerAliveInterval=10",
                        "ServerAliveCountMax=3"]
        else:
            options += proxy_options(self.proxy, private_key, known_hosts)
        if self.host_key_alias is not None:
            options.append(f"HostKeyAlias={self.host_key_alias}")
        return options


def proxy_options(proxy: str | None, private_key: Path | str | None,
                  known_hosts: Path | str | None) -> list[str]:
    """``ProxyCommand`` through the bastion ``proxy`` (``user@address:port``), checked
    like every other connection: the same key and the same pinned host keys.

    Not ``ProxyJump``: the ssh it starts for the bastion would not get these options.
    """
    if proxy is None:
        return []
    user, address, port = split_destination(proxy, "root")
    inner = ["ssh", *connection_options(private_key, known_hosts),
             "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
             "-W", "%h:%p", "-p", str(port), "-l", user, address]
    return [f"ProxyCommand={shlex.join(inner)}"]


def ssh_argv(*, private_key: Path | str | None, known_hosts: Path | str | None,
             address: str, port: int, user: str, command: str | None = None,
             flags: Sequence[str] = (), proxy: str | None = None, share: bool = True,
             connect_timeout: int = CONNECT_TIMEOUT, route: Route | None = None) -> list[str]:
    """``ssh`` argv to ``user@address:port``, running ``command`` (a shell string) there.

    ``command`` None leaves it out (a login shell). ``flags`` come right after
    ``ssh`` (``-t``, more ``-o`` options). ``proxy``: the bastion to go through
    (``user@address:port``); ``route``: the whole way there (:class:`Route`), in its
    place. ``share`` False: a connection of its own, neither using
    nor leaving a control socket (to find out whether this key and these host keys
    get in, rather than an open connection). Call :func:`make_control_dir` before
    running it.
    """
    route = route or Route(proxy=proxy)
    argv = [
        "ssh", *flags,
        *connection_options(private_key, known_hosts),
        *as_args(route.options(private_key, known_hosts)),
        *as_args(control_options(route) if share else unshared_options()),
        "-o", f"ConnectTimeout={connect_timeout}",
        "-p", str(port), "-l", user, address,
    ]
    if command is not None:
        argv.append(command)
    return argv


def host_key_scan_argv(*, address: str, port: int, user: str, collect_into: Path | str,
                       algorithms: Sequence[str] = (), proxy: str | None = None,
                       private_key: Path | str | None = None,
                       known_hosts: Path | str | None = None) -> list[str]:
    """``ssh`` argv that learns the host key ``address:port`` offers, without logging in.

    Every authentication method is off, so ssh stops with "Permission denied" right
    after the key exchange; by then it has written the key to ``collect_into`` (an
    empty file of the caller's: StrictHostKeyChecking=accept-new, nothing else
    vouches). ``algorithms``: the host key algorithms to ask for (empty: ssh's
    default order). ``proxy``, ``private_key`` and ``known_hosts``: the bastion to go
    through, checked as every connection to it is (:func:`proxy_options`).
    """
    options = [
        f"UserKnownHostsFile={collect_into}", "GlobalKnownHostsFile=/dev/null",
        "StrictHostKeyChecking=accept-new", "HashKnownHosts=no", "CheckHostIP=no",
        "PubkeyAuthentication=no", "PasswordAuthentication=no",
        "KbdInteractiveAuthentication=no", "GSSAPIAuthentication=no",
        "HostbasedAuthentication=no", "BatchMode=yes",
        *unshared_options(), f"ConnectTimeout={CONNECT_TIMEOUT}",
    ]
    if algorithms:
        options.append(f"HostKeyAlgorithms={','.join(algorithms)}")
    options += proxy_options(proxy, private_key, known_hosts)
    return ["ssh", *as_args(options), "-p", str(port), "-l", user, address, "true"]


def close_shared_argv(address: str, port: int, user: str,
                      route: Route | None = None) -> list[str]:
    """``ssh -O exit`` for the shared connection to ``user@address:port`` (reached by
    ``route``), if one is open: the next command then connects, and checks the host
    key, anew."""
    return ["ssh", *as_args(control_options(route)), "-O", "exit", "-p", str(port),
            "-l", user, address]


def ansible_common_args(private_key: Path | str | None, known_hosts: Path | str | None,
                        proxy: str | None = None, route: Route | None = None) -> str:
    """The ``ansible_ssh_common_args`` of a host: pinned host keys, checked, one key,
    and the bastion's ProxyCommand when it has one (``route``: the whole way, in
    place of ``proxy``).

    The key file itself reaches Ansible as ``ansible_ssh_private_key_file``. A host
    behind a route gets the route's control socket here (:func:`control_path`):
    Ansible then adds none of its own.
    """
    route = route or Route(proxy=proxy)
    socket = [f"ControlPath={control_path(route)}"] if route.socket_prefix else []
    return shlex.join(as_args([*ansible_key_options(private_key, known_hosts),
                               *route.options(private_key, known_hosts), *socket]))


def ansible_key_options(private_key: Path | str | None,
                        known_hosts: Path | str | None) -> list[str]:
    """:func:`host_key_options` and ``IdentitiesOnly``; Ansible passes the key file itself."""
    options = host_key_options(known_hosts)
    if private_key is not None:
        options.append("IdentitiesOnly=yes")
    return options


def ansible_env(private_key: Path | str | None, known_hosts: Path | str | None) -> dict[str, str]:
    """The ANSIBLE_* settings that make Ansible's ssh connections match :func:`ssh_argv`.

    The control socket is the same file: Ansible's ``control_path`` is
    %-formatted with ``directory`` before it reaches ssh, so ``%%C`` becomes
    the ``%C`` that ssh expands.
    """
    # Seeing ControlPersist, Ansible adds the ControlPath of ANSIBLE_SSH_CONTROL_PATH.
    ssh_args = [*sharing_options(), *ansible_key_options(private_key, known_hosts)]
    settings = {
        "ANSIBLE_SSH_ARGS": shlex.join(as_args(ssh_args)),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(CONTROL_PATH_DIR),
        "ANSIBLE_SSH_CONTROL_PATH": "%(directory)s/%%C",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_TIMEOUT": str(CONNECT_TIMEOUT),
    }
    if private_key is not None:
        settings["ANSIBLE_PRIVATE_KEY_FILE"] = str(private_key)
    return settings


def make_control_dir() -> Path:
    """Create the control socket directory (0700), refusing one we do not own."""
    try:
        CONTROL_PATH_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = CONTROL_PATH_DIR.lstat()
    except OSError as exc:
        raise EnvironmentMissing(f"cannot create {CONTROL_PATH_DIR}: {exc}") from None
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or info.st_mode & 0o077
    ):
        raise EnvironmentMissing(
            f"{CONTROL_PATH_DIR} is not a private directory owned by you",
            hint=f"remove it (it only holds SSH control sockets): rm -rf {CONTROL_PATH_DIR}",
        )
    return CONTROL_PATH_DIR


def sshd_answers(address: str, port: int = 22, timeout: float = 2.0) -> bool:
    """Whether an sshd greets at ``address:port`` (its ``SSH-`` banner), without logging in."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            return conn.recv(64).startswith(b"SSH-")
    except OSError:
        return False
