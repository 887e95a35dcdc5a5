"""`stagecraft logs`: a service's container logs from every host that runs it.

Without --follow, one SSH round trip per host prints every container's last
lines with docker's timestamps, each prefixed with the container's name; the
lines of all hosts are then merged by those timestamps. With --follow, one SSH
process per container streams until the user stops it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from stagecraft.hosts import ssh
from stagecraft.hosts.remote import RemoteHost, in_parallel, quote

# `docker logs --timestamps`: RFC 3339 with nanoseconds, then one space.
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d) ")


@dataclass(frozen=True)
class LogLine:
    host: str
    container: str
    timestamp: str  # as docker printed it ("" when the line had none)
    text: str

    @property
    def sort_key(self) -> tuple[str, str]:
        """Sortable time: the fraction padded, so `.5Z` does not sort after `.49Z`."""
        match = _STAMP.match(self.timestamp + " ")
        if not match:
            return ("", "")
        return (match.group(1), (match.group(2) or "").ljust(9, "0"))

    def render(self, *, timestamps: bool, width: int = 0) -> str:
        prefix = f"{self.host} {self.container}".ljust(width)
        stamp = f"{self.timestamp} " if timestamps and self.timestamp else ""
        return f"{prefix} | {stamp}{self.text}"


def docker_logs_command(container: str, *, lines: int | None, since: str | None,
                        follow: bool, timestamps: bool = True) -> str:
    """The `docker logs` command line for one container (stderr merged into stdout)."""
    words = ["docker", "logs"]
    if timestamps:
        words.append("--timestamps")
    if follow:
        words.append("--follow")
    if lines is not None:
        words += ["--tail", str(lines)]
    if since:
        words += ["--since", since]
    words.append(container)
    return " ".join(quote(w) for w in words) + " 2>&1"


def host_logs_script(containers: Iterable[str], *, lines: int | None, since: str | None) -> str:
    """One script printing each container's lines as `<container> <timestamp> <text>`."""
    parts = []
    for name in containers:
        # The name has no spaces (docker names are [a-zA-Z0-9_.-]); sed puts it first.
        command = docker_logs_command(name, lines=lines, since=since, follow=False)
        parts.append(f"{command} | sed -e {quote('s/^/' + name + ' /')}")
    return "\n".join(parts) + "\n"


def parse_host_logs(host: str, text: str) -> list[LogLine]:
    """Lines of ``host_logs_script``'s output."""
    result = []
    for raw in text.splitlines():
        container, _, rest = raw.partition(" ")
        result.append(split_line(host, container, rest))
    return result


def split_line(host: str, container: str, rest: str) -> LogLine:
    match = _STAMP.match(rest)
    if match:
        return LogLine(host, container, rest[:match.end() - 1], rest[match.end():])
    return LogLine(host, container, "", rest)


def merge_lines(per_host: Iterable[list[LogLine]]) -> list[LogLine]:
    """Every host's lines in time order (stable: a host's own order is kept on ties)."""
    merged = [line for lines in per_host for line in lines]
    return sorted(merged, key=lambda line: line.sort_key)


def collect(hosts: list[tuple[RemoteHost, list[str]]], *, lines: int | None,
            since: str | None) -> list[LogLine]:
    """The containers' last lines from every host, merged by time."""
    by_name = {h.name: (h, containers) for h, containers in hosts}

    def fetch(host: RemoteHost) -> list[LogLine]:
        containers = by_name[host.name][1]
        proc = host.run(host_logs_script(containers, lines=lines, since=since),
                        timeout=120, what="docker logs")
        return parse_host_logs(host.name, proc.stdout)

    fetched = in_parallel([h for h, _ in by_name.values()], fetch)
    return merge_lines(fetched.values())


def follow_argv(host: RemoteHost, container: str, *, lines: int | None,
                since: str | None, timestamps: bool) -> list[str]:
    """ssh argv streaming one container's log. ``-tt``: a terminal on the host, so
    `docker logs --follow` gets a hangup and ends when we close the connection;
    LogLevel=ERROR: no "Shared connection closed" line in the log, errors still shown."""
    return host.ssh_argv(docker_logs_command(container, lines=lines, since=since, follow=True,
                                             timestamps=timestamps),
                         flags=["-tt", "-o", "LogLevel=ERROR"])


def follow(streams: list[tuple[RemoteHost, str]], *, lines: int | None, since: str | None,
           timestamps: bool, write: Callable[[str], None] | None = None) -> int:
    """Stream every (host, container) log until they all end (exit 0) or Ctrl-C (130)."""
    ssh.make_control_dir()
    out = write or _write_stdout
    width = max(len(f"{h.name} {c}") for h, c in streams)
    printing = threading.Lock()
    procs: list[subprocess.Popen] = []

    def pump(host: RemoteHost, container: str, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = split_line(host.name, container, raw.rstrip("\r\n"))
            with printing:
                out(line.render(timestamps=timestamps, width=width))

    threads = []
    for host, container in streams:
        proc = subprocess.Popen(
            follow_argv(host, container, lines=lines, since=since, timestamps=timestamps),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace", start_new_session=True)  # Ctrl-C is ours to handle
        procs.append(proc)
        thread = threading.Thread(target=pump, args=(host, container, proc), daemon=True)
        thread.start()
        threads.append(thread)
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()


def _write_stdout(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
