"""What adopting a server finds out, and what its failures mean.

An :class:`Endpoint` is a server the controller connects to: a host of the
environment, or a bastion outside it. :func:`classify` reads what ssh printed when a
connection failed and :func:`failure_error` turns that into an error that names the
host, its address and user, and says what to do. The detection script
(:data:`DETECT_COMMAND`) prints the facts :func:`parse_facts` reads and
:func:`check_facts` judges. Everything here is pure: the provider runs the commands.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from stagecraft.errors import HostKeyChanged, ProviderError
from stagecraft.hosts.ssh import CONNECT_TIMEOUT, split_destination


@dataclass(frozen=True)
class Endpoint:
    """A server the controller connects to, and how."""

    label: str  # "host web-1", "bastion of host db-1"
    address: str
    port: int
    user: str
    key: str | None  # private key file; None: ssh's agent and ~/.ssh
    proxy: str | None = None  # the bastion to go through, user@address:port
    name: str | None = None  # the environment's host; None: a bastion outside it

    @property
    def destination(self) -> str:
        """``user@address:port``: what ssh_proxy and messages write."""
        return f"{self.user}@{self.address}:{self.port}"

    @property
    def who(self) -> str:
        """``host web-1 (root@192.0.2.7:22)``: how messages name it."""
        via = f", through {self.proxy}" if self.proxy else ""
        return f"{self.label} ({self.destination}{via})"

    def key_words(self) -> str:
        return f"the key {self.key}" if self.key else "the keys of your ssh agent and ~/.ssh"


# Kinds of connection failure (:func:`classify`).
REFUSED = "refused"
TIMEOUT = "timeout"
NO_ROUTE = "no-route"
UNRESOLVED = "unresolved"
CLOSED = "closed"
KEY_REFUSED = "key-refused"
KEY_UNPROTECTED = "key-unprotected"
HOST_KEY = "host-key"
NO_KEY_TYPE = "no-key-type"
FORWARD = "forward"  # the bastion could not open a connection to the host
OTHER = "other"


@dataclass(frozen=True)
class Failure:
    """Why a connection failed, and where: at the bastion or at the host itself."""

    kind: str
    detail: str
    at_bastion: bool = False


_CONNECT = re.compile(r"connect to host (\S+) port (\d+): (.+)")
_RESOLVE = re.compile(r"Could not resolve hostname (\S+?): (.+)")
_DENIED = re.compile(r"(\S+)@(\S+): Permission denied \(([^)]*)\)")
_OPEN_FAILED = re.compile(r"open failed: (.+)")
_SOCKET_ERRORS = (
    ("Connection refused", REFUSED),
    ("timed out", TIMEOUT),
    ("No route to host", NO_ROUTE),
    ("Network is unreachable", NO_ROUTE),
    ("Name or service not known", UNRESOLVED),
    ("Temporary failure in name resolution", UNRESOLVED),
    ("nodename nor servname", UNRESOLVED),
)


def _socket_kind(detail: str) -> str:
    return next((kind for words, kind in _SOCKET_ERRORS if words in detail), OTHER)


def classify(stderr: str, endpoint: Endpoint) -> Failure:
    """Why ssh failed to reach ``endpoint``, from what it printed on stderr."""
    bastion = _bastion(endpoint)

    def at_bastion(address: str, port: int | None = None) -> bool:
        return (bastion is not None and address == bastion[1]
                and (port is None or port == bastion[2])
                and (address, port or endpoint.port) != (endpoint.address, endpoint.port))

    if "UNPROTECTED PRIVATE KEY FILE" in stderr or "bad permissions" in stderr:
        return Failure(KEY_UNPROTECTED, "bad permissions")
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or \
            "Host key verification failed" in stderr:
        return Failure(HOST_KEY, "host key verification failed")
    if "no matching host key type found" in stderr:
        return Failure(NO_KEY_TYPE, _line_with(stderr, "no matching host key type"))
    if "stdio forwarding failed" in stderr or "open failed" in stderr:
        found = _OPEN_FAILED.search(stderr)
        detail = found.group(1).strip() if found else "stdio forwarding failed"
        return Failure(FORWARD, detail.removeprefix("connect failed: "))
    found = _CONNECT.search(stderr)
    if found:
        detail = found.group(3).strip()
        return Failure(_socket_kind(detail), detail,
                       at_bastion(found.group(1), int(found.group(2))))
    found = _RESOLVE.search(stderr)
    if found:
        return Failure(UNRESOLVED, found.group(2).strip(), at_bastion(found.group(1)))
    found = _DENIED.search(stderr)
    if found:
        return Failure(KEY_REFUSED, f"Permission denied ({found.group(3)})",
                       at_bastion(found.group(2)))
    if "Too many authentication failures" in stderr:
        return Failure(KEY_REFUSED, "Too many authentication failures")
    if "timed out" in stderr:  # "Connection timed out during banner exchange"
        return Failure(TIMEOUT, _line_with(stderr, "timed out"))
    for words in ("kex_exchange_identification", "Connection closed by",
                  "Connection reset by"):
        if words in stderr:
            return Failure(CLOSED, _line_with(stderr, words))
    return Failure(OTHER, _last_line(stderr) or "ssh failed without a message")


def failure_error(failure: Failure, endpoint: Endpoint) -> ProviderError:
    """The error a user sees for ``failure``: what failed, where, and what to do."""
    target = endpoint
    if failure.at_bastion:
        bastion = _bastion(endpoint)
        assert bastion is not None
        user, address, port = bastion
        target = Endpoint(f"bastion {address}:{port} of {endpoint.label}", address, port,
                          user, endpoint.key)
    who, address, port, user = target.who, target.address, target.port, target.user
    kind, detail = failure.kind, failure.detail
    if kind == REFUSED:
        return ProviderError(
            f"{who}: nothing accepts connections on {address}:{port} ({detail})",
            hint="check the address and port in stagecraft.yml, and that sshd runs on the "
            "server (`systemctl status ssh` on its console)")
    if kind == TIMEOUT:
        return ProviderError(
            f"{who}: no answer from {address}:{port} within {CONNECT_TIMEOUT} s ({detail})",
            hint="check the address and port in stagecraft.yml, that the server is on, and "
            "that no firewall between here and it drops SSH")
    if kind == NO_ROUTE:
        return ProviderError(
            f"{who}: this machine has no route to {address} ({detail})",
            hint="check the address in stagecraft.yml, and this machine's network "
            "(VPN, routes); a server on a private network needs proxy_jump")
    if kind == UNRESOLVED:
        return ProviderError(
            f"{who}: the name {address} does not resolve ({detail})",
            hint="check the address in stagecraft.yml: an IP address, or a DNS name that "
            "this machine resolves")
    if kind == CLOSED:
        return ProviderError(
            f"{who}: {address}:{port} closed the connection before SSH began ({detail})",
            hint="check that this port is sshd's, and that the server does not turn this "
            "machine away (fail2ban, sshd's AllowUsers, a firewall)")
    if kind == KEY_REFUSED:
        key = target.key or "<your key>"
        why = ("stagecraft reaches a bastion with the key of the host behind it: "
               if failure.at_bastion else "")
        return ProviderError(
            f"{who}: the server refused {target.key_words()} for user {user}: {detail}",
            hint=f"{why}authorize the key for {user} on the server (`ssh-copy-id -i {key} "
            f"-p {port} {user}@{address}`), or set `user` and `ssh_key` of the host in "
            "stagecraft.yml to ones the server accepts")
    if kind == KEY_UNPROTECTED:
        return ProviderError(
            f"{who}: ssh will not use the key {target.key}: other users may read it",
            hint=f"chmod 600 {target.key}")
    if kind == HOST_KEY:
        return HostKeyChanged(
            f"{who}: the server's host key no longer matches the one just pinned",
            hint="run `stagecraft infra up` again: it shows both keys and what to check")
    if kind == FORWARD:
        b_user, b_address, b_port = _bastion(endpoint) or (user, "<bastion>", 22)
        return ProviderError(
            f"{who}: bastion {b_user}@{b_address}:{b_port} cannot reach {address}:{port} "
            f"({detail})",
            hint=f"check the host's address and port as the bastion sees them (`ssh -p "
            f"{b_port} {b_user}@{b_address} nc -zv {address} {port}`), and that sshd runs "
            "on the server")
    return ProviderError(
        f"{who}: cannot connect ({detail})",
        hint=f"see what ssh says: `ssh -v -p {port} {user}@{address} true`")


def _bastion(endpoint: Endpoint) -> tuple[str, str, int] | None:
    if endpoint.proxy is None:
        return None
    return split_destination(endpoint.proxy, endpoint.user)


def _line_with(text: str, words: str) -> str:
    return next((line.strip() for line in text.splitlines() if words in line), words)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# ------------------------------------------------------------------------- detection

#: Lines the detection script prints start with this, so a noisy login shell
#: (a .bashrc that echoes) does not confuse :func:`parse_facts`.
MARK = "stagecraft:"

DETECT_SCRIPT = f"""\
echo "{MARK}arch=$(uname -m)"
if [ -r /etc/os-release ]; then
  ( . /etc/os-release
    echo "{MARK}id=${{ID:-}}"; echo "{MARK}version_id=${{VERSION_ID:-}}"
    echo "{MARK}id_like=${{ID_LIKE:-}}"; echo "{MARK}pretty=${{PRETTY_NAME:-}}" )
fi
echo "{MARK}uid=$(id -u)"
if [ "$(id -u)" != 0 ]; then
  if out=$(sudo -n true 2>&1); then echo "{MARK}sudo=yes"
  else echo "{MARK}sudo=no $(printf '%s' "$out" | head -n 1)"; fi
fi
"""
#: The command adoption runs on each server: the script under sh, whatever the
#: user's login shell is.
DETECT_COMMAND = f"sh -c {shlex.quote(DETECT_SCRIPT)}"

#: Distributions the roles support: these, and every distribution like Debian.
SUPPORTED_OS = ("debian", "ubuntu")


@dataclass(frozen=True)
class Facts:
    """What the detection script found on a server."""

    arch: str
    os_id: str
    version_id: str
    id_like: str
    pretty: str
    uid: int
    sudo: bool | None  # None: the user is root (no sudo needed)
    sudo_detail: str = ""

    @property
    def os(self) -> str:
        """``debian 13``, ``ubuntu 24.04``: what HostRecord.os says."""
        return f"{self.os_id} {self.version_id}".strip()


def parse_facts(stdout: str) -> Facts | None:
    """The facts in the detection script's output; None when a fact is missing."""
    values: dict[str, str] = {}
    for line in stdout.splitlines():
        if line.startswith(MARK):
            key, _, value = line[len(MARK):].partition("=")
            values[key] = value.strip()
    if not values.get("arch") or not values.get("uid", "").isdigit():
        return None
    uid = int(values["uid"])
    sudo_word, _, sudo_detail = values.get("sudo", "").partition(" ")
    return Facts(
        arch=values["arch"], os_id=values.get("id", "").lower(),
        version_id=values.get("version_id", ""), id_like=values.get("id_like", "").lower(),
        pretty=values.get("pretty", ""), uid=uid,
        sudo=None if uid == 0 else sudo_word == "yes", sudo_detail=sudo_detail.strip(),
    )


def supported(facts: Facts) -> bool:
    """Debian, Ubuntu, or a distribution whose ID_LIKE names debian."""
    return facts.os_id in SUPPORTED_OS or "debian" in facts.id_like.split()


def check_facts(facts: Facts | None, endpoint: Endpoint, output: str) -> Facts:
    """``facts`` when stagecraft can bootstrap that server as that user; else the
    ProviderError that says why not (no facts at all, OS, sudo)."""
    who, user = endpoint.who, endpoint.user
    if facts is None:
        shown = _last_line(output) or "nothing"
        raise ProviderError(
            f"{who}: the detection script printed no facts (last line: {shown})",
            hint=f"check that `sh -c 'uname -m; id -u'` runs for {user} on the server "
            f"(`ssh -p {endpoint.port} {user}@{endpoint.address}`)")
    if not supported(facts):
        name = facts.pretty or facts.os or "an unknown system (no /etc/os-release)"
        raise ProviderError(
            f"{who}: runs {name}; stagecraft's roles support Debian, Ubuntu and "
            "systems like Debian (ID_LIKE=debian)",
            hint="use a Debian or Ubuntu server for this host, or remove the host from "
            "the environment")
    if facts.sudo is False:
        detail = f": {facts.sudo_detail}" if facts.sudo_detail else ""
        raise ProviderError(
            f"{who}: user {user} has no passwordless sudo (`sudo -n true` failed){detail}",
            hint=f"on the server, as root: `echo '{user} ALL=(ALL) NOPASSWD:ALL' > "
            f"/etc/sudoers.d/{user}`; or adopt the server as root (`user: root`)")
    return facts
