"""`stagecraft ssh`/`exec`: the ssh argv and the remote commands."""

from __future__ import annotations

import pytest

from stagecraft.config.loader import load_config_text
from stagecraft.errors import UsageError
from stagecraft.ops.shell import (
    docker_exec_command,
    one_off_command,
    remote_command,
    ssh_session_argv,
)
from stagecraft.ops.targets import check_host, check_service, placed_hosts
from stagecraft.providers.cloud.base import SshAccess
from stagecraft.hosts.remote import RemoteHost

HOST = RemoteHost("h1", "127.0.0.1", 2201, "deploy",
                  SshAccess(user="deploy", private_key="/state/id", known_hosts="/state/kh"))

CONFIG = """
version: 1
project: {name: shop}
services:
  web: {image: example/web:1, port: 8080, on: [app], routes: [{host: shop.localhost}],
        healthcheck: {path: /up}}
  worker: {image: example/web:1, on: [worker]}
environments:
  local:
    hosts: [{name: h1, roles: [edge, app]}, {name: h2, roles: [app, worker]}]
"""


def test_login_shell_uses_the_pinned_keys_and_a_terminal() -> None:
    argv = ssh_session_argv(HOST, None, tty=True)
    assert argv[:2] == ["ssh", "-t"]
    assert argv[-1] == "127.0.0.1"
    joined = " ".join(argv)
    for option in ("IdentityFile=/state/id", "UserKnownHostsFile=/state/kh",
                   "StrictHostKeyChecking=yes", "-p 2201", "-l deploy"):
        assert option in joined


def test_command_without_terminal() -> None:
    argv = ssh_session_argv(HOST, remote_command(["ls", "-la", "$HOME"]), tty=False)
    assert "-t" not in argv
    assert argv[-2:] == ["127.0.0.1", "ls -la $HOME"]


def test_docker_exec_quotes_each_word() -> None:
    assert docker_exec_command("p-web-1", ["sh", "-c", "echo $APP_VERSION"], tty=False) == (
        "docker exec p-web-1 sh -c 'echo $APP_VERSION'")
    assert docker_exec_command("p-web-1", ["bash"], tty=True) == "docker exec -i -t p-web-1 bash"


def test_one_off_runs_from_the_current_release_and_takes_no_traffic() -> None:
    command = one_off_command("shop", "local", "web", ["printenv", "APP_VERSION"], tty=False)
    assert command == ("docker compose -p shop-local -f /opt/stagecraft/shop/local/current/"
                       "compose.yml run --rm --no-deps --label traefik.enable=false -T web "
                       "printenv APP_VERSION")
    assert " -T " not in one_off_command("shop", "local", "web", ["sh"], tty=True)


def test_unknown_host_and_service_list_the_known_ones() -> None:
    env = load_config_text(CONFIG).environment("local")
    assert check_host(env, "h2") == "h2"
    with pytest.raises(UsageError) as error:
        check_host(env, "h9")
    assert "h9" in error.value.message and error.value.hint == "its hosts: h1, h2"
    with pytest.raises(UsageError) as error:
        check_service(env, "db")
    assert error.value.hint == "its services: web, worker"
    assert placed_hosts(env, "web") == ["h1", "h2"]
    assert placed_hosts(env, "worker") == ["h2"]
