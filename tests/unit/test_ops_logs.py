"""`stagecraft logs`: the docker logs commands and the merge by time."""

from __future__ import annotations

import subprocess

from stagecraft.ops.logs import (
    LogLine,
    docker_logs_command,
    follow_argv,
    host_logs_script,
    merge_lines,
    parse_host_logs,
    split_line,
)
from stagecraft.providers.cloud.base import SshAccess
from stagecraft.hosts.remote import RemoteHost


def test_docker_logs_command() -> None:
    assert docker_logs_command("p-web-1", lines=5, since="10m", follow=False) == (
        "docker logs --timestamps --tail 5 --since 10m p-web-1 2>&1")
    assert docker_logs_command("p-web-1", lines=None, since=None, follow=True,
                               timestamps=False) == "docker logs --follow p-web-1 2>&1"


def test_host_script_prefixes_each_line_with_the_container(tmp_path) -> None:
    # A stand-in `docker` prints what `docker logs --timestamps` prints.
    fake = tmp_path / "docker"
    fake.write_text('#!/bin/sh\nfor last; do :; done\n'
                    'echo "2026-01-01T00:00:01.000000000Z hello from $last"\n'
                    'echo "2026-01-01T00:00:03.000000000Z bye from $last" >&2\n')
    fake.chmod(0o755)
    script = host_logs_script(["p-web-1", "p-web-2"], lines=5, since=None)
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True,
                         env={"PATH": f"{tmp_path}:/usr/bin:/bin"}).stdout
    lines = parse_host_logs("h1", out)
    assert [(x.container, x.text) for x in lines] == [
        ("p-web-1", "hello from p-web-1"), ("p-web-1", "bye from p-web-1"),
        ("p-web-2", "hello from p-web-2"), ("p-web-2", "bye from p-web-2")]
    assert {x.host for x in lines} == {"h1"}
    assert lines[0].timestamp == "2026-01-01T00:00:01.000000000Z"


def test_lines_of_all_hosts_merge_by_time() -> None:
    h1 = parse_host_logs("h1", "c1 2026-01-01T00:00:01.000000000Z a\n"
                               "c1 2026-01-01T00:00:03.000000000Z c\n")
    h2 = parse_host_logs("h2", "c2 2026-01-01T00:00:02.000000000Z b\n"
                               "c2 2026-01-01T00:00:04.5Z d\n"
                               "c2 2026-01-01T00:00:04.45Z before d\n")
    merged = merge_lines([h1, h2])
    assert [x.text for x in merged] == ["a", "b", "c", "before d", "d"]
    assert [x.host for x in merged] == ["h1", "h2", "h1", "h2", "h2"]


def test_render_prefix_and_optional_timestamp() -> None:
    line = split_line("h1", "p-web-1", "2026-01-01T00:00:01.5Z GET /up 200")
    assert line == LogLine("h1", "p-web-1", "2026-01-01T00:00:01.5Z", "GET /up 200")
    assert line.render(timestamps=False) == "h1 p-web-1 | GET /up 200"
    assert line.render(timestamps=True, width=14) == (
        "h1 p-web-1     | 2026-01-01T00:00:01.5Z GET /up 200")
    plain = split_line("h1", "c", "no stamp here")
    assert plain.timestamp == "" and plain.render(timestamps=True) == "h1 c | no stamp here"


def test_follow_asks_for_a_terminal_so_the_remote_end_stops() -> None:
    host = RemoteHost("h1", "10.0.0.1", 22, "deploy",
                      SshAccess(user="deploy", private_key="/k", known_hosts="/kh"))
    argv = follow_argv(host, "p-web-1", lines=10, since=None, timestamps=False)
    assert argv[:2] == ["ssh", "-tt"]
    assert argv[-1] == "docker logs --follow --tail 10 p-web-1 2>&1"
    assert "StrictHostKeyChecking=yes" in argv
