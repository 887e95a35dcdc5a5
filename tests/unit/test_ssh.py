"""stagecraft.hosts.ssh: the ssh argv, and Ansible settings that reach the same socket."""

from __future__ import annotations

import shlex
import shutil
import stat
import subprocess
import os
from pathlib import Path

import pytest

from stagecraft.errors import EnvironmentMissing
from stagecraft.hosts import ssh
from stagecraft.hosts.remote import RemoteHost
from stagecraft.providers.cloud.base import SshAccess
from stagecraft.render.inventory import ConnectionSettings, ssh_common_args

KEY, KNOWN_HOSTS = Path("/state/id_ed25519"), Path("/state/known_hosts")
HOST = RemoteHost("h1", "127.0.0.1", 2201, "root", SshAccess("root", KEY, KNOWN_HOSTS))


def options_of(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv) if word == "-o"]


def test_argv_pins_the_key_and_host_keys_and_shares_one_socket_per_host() -> None:
    argv = ssh.ssh_argv(private_key=KEY, known_hosts=KNOWN_HOSTS, address="10.0.0.7",
                        port=2201, user="deploy", command="uptime")
    assert argv[0] == "ssh"
    assert argv[-6:] == ["-p", "2201", "-l", "deploy", "10.0.0.7", "uptime"]
    options = options_of(argv)
    for option in (f"IdentityFile={KEY}", "IdentitiesOnly=yes",
                   f"UserKnownHostsFile={KNOWN_HOSTS}", "GlobalKnownHostsFile=/dev/null",
                   "StrictHostKeyChecking=yes", "BatchMode=yes", "ConnectTimeout=10",
                   "ControlMaster=auto", "ControlPersist=60s",
                   f"ControlPath={ssh.CONTROL_PATH_DIR}/%C"):
        assert option in options
    assert not any("StrictHostKeyChecking=no" in o or "accept-new" in o for o in options)


def test_flags_come_first_and_no_command_means_a_login_shell() -> None:
    argv = HOST.ssh_argv(None, flags=["-t"])
    assert argv[:2] == ["ssh", "-t"]
    assert argv[-1] == "127.0.0.1"
    assert HOST.ssh_argv("true")[-2:] == ["127.0.0.1", "true"]


def test_ssh_access_options_are_the_argv_options_without_the_socket() -> None:
    options = options_of(SshAccess("root", KEY, KNOWN_HOSTS).ssh_options())
    assert set(options) < set(options_of(HOST.ssh_argv("true")))
    assert not any(o.startswith("Control") for o in options)


def test_ansible_gets_the_same_key_host_keys_and_socket_directory() -> None:
    env = ssh.ansible_env(KEY, KNOWN_HOSTS)
    args = options_of(shlex.split(env["ANSIBLE_SSH_ARGS"]))
    assert {"ControlMaster=auto", "ControlPersist=60s", "StrictHostKeyChecking=yes",
            f"UserKnownHostsFile={KNOWN_HOSTS}", "GlobalKnownHostsFile=/dev/null",
            "IdentitiesOnly=yes"} <= set(args)
    assert env["ANSIBLE_PRIVATE_KEY_FILE"] == str(KEY)
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert env["ANSIBLE_TIMEOUT"] == str(ssh.CONNECT_TIMEOUT)
    # Ansible fills in %(directory)s with Python's % operator: the result is
    # exactly the ControlPath of our own argv.
    control_path = env["ANSIBLE_SSH_CONTROL_PATH"] % {
        "directory": env["ANSIBLE_SSH_CONTROL_PATH_DIR"]}
    assert f"ControlPath={control_path}" in options_of(HOST.ssh_argv("true"))


def test_without_a_key_or_known_hosts_ansible_still_checks_host_keys() -> None:
    env = ssh.ansible_env(None, None)
    assert options_of(shlex.split(env["ANSIBLE_SSH_ARGS"])) == [
        "ControlMaster=auto", "ControlPersist=60s", "StrictHostKeyChecking=yes"]
    assert "ANSIBLE_PRIVATE_KEY_FILE" not in env
    assert ssh.ansible_common_args(None, None) == "-o StrictHostKeyChecking=yes"


def test_socket_paths_fit_the_unix_socket_limit() -> None:
    # dir + "/" + a route's prefix + %C (40 hex digits) + the temporary suffix ssh adds
    # (".XXXXXXXXXXXXXXXX")
    prefix = ssh.Route(proxy_command="nc %h %p").socket_prefix
    assert len(prefix) == ssh.ROUTE_HASH_LENGTH + 1
    assert len(str(ssh.CONTROL_PATH_DIR)) + 1 + len(prefix) + 40 + 17 < 104


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the ssh client")
@pytest.mark.filterwarnings("ignore:DSA is deprecated")  # ansible imports it; not ours
def test_ansibles_ssh_plugin_and_our_argv_name_the_same_socket(monkeypatch) -> None:
    """Ansible's own ssh connection plugin builds its command from our settings and
    the host's inventory variables; `ssh -G` (which connects nowhere) says where
    each command would put its control socket: the same file."""
    from ansible.playbook.play_context import PlayContext
    from ansible.plugins.loader import connection_loader

    for name, value in ssh.ansible_env(KEY, KNOWN_HOSTS).items():
        monkeypatch.setenv(name, value)
    connection = connection_loader.get("ssh", PlayContext(), None)
    connection.set_options(var_options={
        "ansible_host": HOST.address, "ansible_port": HOST.port, "ansible_user": HOST.user,
        "ansible_ssh_private_key_file": str(KEY),
        "ansible_ssh_common_args": ssh_common_args(ConnectionSettings(KEY, KNOWN_HOSTS)),
    })
    ansible_argv = [a.decode() for a in connection._build_command("ssh", "ssh", HOST.address)]

    def control_path(argv: list[str]) -> str:
        shown = subprocess.run(["ssh", "-G", *argv[1:]], capture_output=True, text=True,
                               check=True, stdin=subprocess.DEVNULL).stdout
        return next(line.split(" ", 1)[1] for line in shown.splitlines()
                    if line.startswith("controlpath "))

    ours = control_path(HOST.ssh_argv(None))
    assert ours.startswith(f"{ssh.CONTROL_PATH_DIR}/") and "%" not in ours
    assert control_path(ansible_argv) == ours


def ssh_g_control_path(argv: list[str]) -> str:
    """Where ``ssh`` would put the control socket of ``argv`` (``ssh -G`` connects nowhere)."""
    shown = subprocess.run(["ssh", "-G", *argv[1:]], capture_output=True, text=True,
                           check=True, stdin=subprocess.DEVNULL).stdout
    return next(line.split(" ", 1)[1] for line in shown.splitlines()
                if line.startswith("controlpath "))


def tailnet_host(tailnode: str, alias: str) -> RemoteHost:
    """app-1 at 100.64.0.3 (every Headscale's first hosts get the same addresses), reached
    through one environment's tailnet node."""
    return RemoteHost("app-1", "100.64.0.3", 22, "root", SshAccess("root", KEY, KNOWN_HOSTS),
                      route=ssh.Route(proxy_command=f"docker exec -i {tailnode} tailscale nc "
                                                    "%h %p", host_key_alias=alias))


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the ssh client")
def test_hosts_at_one_address_behind_different_routes_share_no_socket() -> None:
    # Two environments' hosts, both 100.64.0.3 on their own tailnets: a socket shared
    # between them ran the first one's commands on the second's host.
    staging = tailnet_host("stagecraft-shop-staging-tailnode", "[127.0.0.1]:22001")
    production = tailnet_host("stagecraft-shop-production-tailnode", "[127.0.0.1]:22002")
    paths = {ssh_g_control_path(host.ssh_argv("true")) for host in (staging, production)}
    assert len(paths) == 2, paths
    # Behind a bastion too (two VPCs both hand out 10.110.0.2).
    behind = [RemoteHost("db", "10.110.0.2", 22, "root", SshAccess("root", KEY, KNOWN_HOSTS),
                         proxy=f"root@{bastion}:22") for bastion in ("192.0.2.1", "192.0.2.2")]
    paths = {ssh_g_control_path(host.ssh_argv("true")) for host in behind}
    assert len(paths) == 2, paths
    # A host reached at its own address keeps the plain per-host socket, and
    # `-O exit` for a routed host names the socket its commands use.
    assert ssh_g_control_path(HOST.ssh_argv("true")) == \
        ssh_g_control_path(ssh.close_shared_argv(HOST.address, HOST.port, HOST.user))
    assert ssh.control_path() == f"{ssh.CONTROL_PATH_DIR}/%C"
    close = ssh.close_shared_argv(staging.address, 22, "root", staging.route)
    assert ssh_g_control_path(close) == ssh_g_control_path(staging.ssh_argv("true"))


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the ssh client")
@pytest.mark.filterwarnings("ignore:DSA is deprecated")  # ansible imports it; not ours
def test_ansible_uses_the_socket_of_the_route_too(monkeypatch) -> None:
    from ansible.playbook.play_context import PlayContext
    from ansible.plugins.loader import connection_loader

    for name, value in ssh.ansible_env(KEY, KNOWN_HOSTS).items():
        monkeypatch.setenv(name, value)
    host = tailnet_host("stagecraft-shop-staging-tailnode", "[127.0.0.1]:22001")
    connection = connection_loader.get("ssh", PlayContext(), None)
    connection.set_options(var_options={
        "ansible_host": host.address, "ansible_port": host.port, "ansible_user": host.user,
        "ansible_ssh_private_key_file": str(KEY),
        "ansible_ssh_common_args": ssh_common_args(ConnectionSettings(KEY, KNOWN_HOSTS),
                                                   route=host.route),
    })
    argv = [a.decode() for a in connection._build_command("ssh", "ssh", host.address)]
    # Ours only: Ansible adds no second ControlPath when the host's arguments name one.
    assert sum(1 for a in argv if a.startswith("ControlPath=")) == 1, argv
    ours = ssh_g_control_path(host.ssh_argv(None))
    assert ours.startswith(f"{ssh.CONTROL_PATH_DIR}/{host.route.socket_prefix}")
    assert ssh_g_control_path(argv) == ours


def test_control_dir_is_made_private(tmp_path, monkeypatch) -> None:
    directory = tmp_path / "cp"
    monkeypatch.setattr(ssh, "CONTROL_PATH_DIR", directory)
    assert ssh.make_control_dir() == directory
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert ssh.make_control_dir() == directory  # a second call is fine


def test_a_control_dir_others_can_enter_is_refused(tmp_path, monkeypatch) -> None:
    directory = tmp_path / "cp"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    monkeypatch.setattr(ssh, "CONTROL_PATH_DIR", directory)
    with pytest.raises(EnvironmentMissing, match="not a private directory"):
        ssh.make_control_dir()


def test_a_host_key_scan_logs_in_with_nothing_and_accepts_only_into_its_own_file() -> None:
    argv = ssh.host_key_scan_argv(address="192.0.2.7", port=2222, user="root",
                                  collect_into="/tmp/scan", algorithms=["ssh-ed25519"])
    assert argv[-6:] == ["-p", "2222", "-l", "root", "192.0.2.7", "true"]
    options = options_of(argv)
    for option in ("UserKnownHostsFile=/tmp/scan", "GlobalKnownHostsFile=/dev/null",
                   "StrictHostKeyChecking=accept-new", "PubkeyAuthentication=no",
                   "PasswordAuthentication=no", "KbdInteractiveAuthentication=no",
                   "GSSAPIAuthentication=no", "HostbasedAuthentication=no", "BatchMode=yes",
                   "ControlPath=none", "HostKeyAlgorithms=ssh-ed25519"):
        assert option in options
    assert not any(o.startswith("ProxyCommand") for o in options)


def test_a_scan_through_a_bastion_checks_the_bastion_with_the_pinned_keys() -> None:
    argv = ssh.host_key_scan_argv(address="10.0.0.9", port=22, user="root",
                                  collect_into="/tmp/scan", proxy="admin@192.0.2.1:2222",
                                  private_key=KEY, known_hosts=KNOWN_HOSTS)
    proxy = next(o for o in options_of(argv) if o.startswith("ProxyCommand="))
    inner = shlex.split(proxy.removeprefix("ProxyCommand="))
    assert f"UserKnownHostsFile={KNOWN_HOSTS}" in inner
    assert "StrictHostKeyChecking=yes" in inner
    assert inner[-5:] == ["-p", "2222", "-l", "admin", "192.0.2.1"]


def test_an_unshared_connection_neither_uses_nor_leaves_a_socket() -> None:
    argv = ssh.ssh_argv(private_key=KEY, known_hosts=KNOWN_HOSTS, address="10.0.0.7",
                        port=22, user="root", command="true", share=False, connect_timeout=3)
    options = options_of(argv)
    assert {"ControlMaster=no", "ControlPath=none", "ConnectTimeout=3"} <= set(options)
    assert "ControlPersist=60s" not in options


def test_a_home_too_long_for_sockets_gets_a_short_control_directory(monkeypatch):
    monkeypatch.setattr(ssh.Path, "home", classmethod(lambda cls: Path("/tmp/x" * 10)))
    assert ssh._control_path_dir() == Path(f"/tmp/stagecraft-cp-{os.getuid()}")
    monkeypatch.setattr(ssh.Path, "home", classmethod(lambda cls: Path("/home/ops")))
    assert ssh._control_path_dir() == Path("/home/ops/.ansible/cp")
