"""Cloud `ssh` (spec/providers/cloud-ssh.md): what ssh's failures mean, what the
detection script found, and where each host is reached (pure functions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagecraft.errors import ConfigError, ExitCode, HostKeyChanged, ProviderError
from stagecraft.providers.cloud.base import FleetSpec, HostSpec
from stagecraft.providers.cloud.ssh.adopt import plan_endpoints
from stagecraft.providers.cloud.ssh.probe import (
    CLOSED,
    DETECT_COMMAND,
    FORWARD,
    HOST_KEY,
    KEY_REFUSED,
    KEY_UNPROTECTED,
    MARK,
    NO_KEY_TYPE,
    NO_ROUTE,
    OTHER,
    REFUSED,
    TIMEOUT,
    UNRESOLVED,
    Endpoint,
    Failure,
    check_facts,
    classify,
    failure_error,
    parse_facts,
)

WEB = Endpoint("host web-1", "192.0.2.7", 22, "root", "/keys/id_web", name="web-1")
DB = Endpoint("host db-1", "10.0.0.9", 2222, "admin", "/keys/id_web",
              proxy="root@192.0.2.7:22", name="db-1")


# ------------------------------------------------------------------ ssh's stderr

@pytest.mark.parametrize(("stderr", "endpoint", "expected"), [
    ("ssh: connect to host 192.0.2.7 port 22: Connection refused", WEB,
     Failure(REFUSED, "Connection refused")),
    ("ssh: connect to host 192.0.2.7 port 22: Connection timed out", WEB,
     Failure(TIMEOUT, "Connection timed out")),
    ("ssh: connect to host 192.0.2.7 port 22: No route to host", WEB,
     Failure(NO_ROUTE, "No route to host")),
    ("ssh: connect to host 192.0.2.7 port 22: Network is unreachable", WEB,
     Failure(NO_ROUTE, "Network is unreachable")),
    ("ssh: Could not resolve hostname web.invalid: Name or service not known", WEB,
     Failure(UNRESOLVED, "Name or service not known")),
    ("ssh: Could not resolve hostname web: Temporary failure in name resolution", WEB,
     Failure(UNRESOLVED, "Temporary failure in name resolution")),
    ("root@192.0.2.7: Permission denied (publickey).", WEB,
     Failure(KEY_REFUSED, "Permission denied (publickey)")),
    ("Received disconnect from 192.0.2.7 port 22:2: Too many authentication failures", WEB,
     Failure(KEY_REFUSED, "Too many authentication failures")),
    ("@@@@@@@@@@@\n@    WARNING: UNPROTECTED PRIVATE KEY FILE!     @\nroot@192.0.2.7: "
     "Permission denied (publickey).", WEB, Failure(KEY_UNPROTECTED, "bad permissions")),
    ("No ED25519 host key is known for 192.0.2.7 and you have requested strict checking.\n"
     "Host key verification failed.", WEB,
     Failure(HOST_KEY, "host key verification failed")),
    ("Unable to negotiate with 192.0.2.7 port 22: no matching host key type found. Their "
     "offer: ssh-ed25519", WEB,
     Failure(NO_KEY_TYPE, "Unable to negotiate with 192.0.2.7 port 22: no matching host key "
             "type found. Their offer: ssh-ed25519")),
    ("kex_exchange_identification: Connection closed by remote host\nConnection closed by "
     "192.0.2.7 port 22", WEB,
     Failure(CLOSED, "kex_exchange_identification: Connection closed by remote host")),
    ("Connection timed out during banner exchange\nConnection to 192.0.2.7 port 22 timed out",
     WEB, Failure(TIMEOUT, "Connection timed out during banner exchange")),
    ("something new\nand odd", WEB, Failure(OTHER, "and odd")),
    ("", WEB, Failure(OTHER, "ssh failed without a message")),
    # Through a bastion: which side failed?
    ("channel 0: open failed: connect failed: Connection refused\nstdio forwarding failed\n"
     "kex_exchange_identification: Connection closed by remote host\nConnection closed by "
     "UNKNOWN port 65535", DB, Failure(FORWARD, "Connection refused")),
    ("ssh: connect to host 192.0.2.7 port 22: Connection refused\nkex_exchange_identification:"
     " Connection closed by remote host", DB,
     Failure(REFUSED, "Connection refused", at_bastion=True)),
    ("root@192.0.2.7: Permission denied (publickey).\nkex_exchange_identification: Connection "
     "closed by remote host", DB,
     Failure(KEY_REFUSED, "Permission denied (publickey)", at_bastion=True)),
    ("admin@10.0.0.9: Permission denied (publickey).", DB,
     Failure(KEY_REFUSED, "Permission denied (publickey)")),
    ("ssh: Could not resolve hostname 192.0.2.7: Name or service not known", DB,
     Failure(UNRESOLVED, "Name or service not known", at_bastion=True)),
])
def test_ssh_failures_are_classified(stderr: str, endpoint: Endpoint, expected: Failure) -> None:
    assert classify(stderr, endpoint) == expected


def test_a_refused_key_names_host_address_user_key_and_what_to_do() -> None:
    error = failure_error(Failure(KEY_REFUSED, "Permission denied (publickey)"), WEB)
    assert error.exit_code == ExitCode.PROVIDER
    assert error.message == ("host web-1 (root@192.0.2.7:22): the server refused the key "
                             "/keys/id_web for user root: Permission denied (publickey)")
    assert error.hint == ("authorize the key for root on the server (`ssh-copy-id -i "
                          "/keys/id_web -p 22 root@192.0.2.7`), or set `user` and `ssh_key` "
                          "of the host in stagecraft.yml to ones the server accepts")


def test_without_a_key_the_agent_and_home_keys_are_named() -> None:
    agent = Endpoint("host web-1", "192.0.2.7", 22, "root", None, name="web-1")
    error = failure_error(Failure(KEY_REFUSED, "Permission denied (publickey)"), agent)
    assert "refused the keys of your ssh agent and ~/.ssh for user root" in error.message


def test_a_failure_at_the_bastion_names_the_bastion_and_the_host_behind_it() -> None:
    error = failure_error(Failure(KEY_REFUSED, "Permission denied (publickey)", True), DB)
    assert error.message.startswith(
        "bastion 192.0.2.7:22 of host db-1 (root@192.0.2.7:22): the server refused the key "
        "/keys/id_web for user root")
    assert error.hint.startswith("stagecraft reaches a bastion with the key of the host "
                                 "behind it: ")
    refused = failure_error(Failure(REFUSED, "Connection refused", True), DB)
    assert refused.message == ("bastion 192.0.2.7:22 of host db-1 (root@192.0.2.7:22): nothing "
                               "accepts connections on 192.0.2.7:22 (Connection refused)")


@pytest.mark.parametrize(("kind", "message", "hint"), [
    (REFUSED, "host web-1 (root@192.0.2.7:22): nothing accepts connections on 192.0.2.7:22 (x)",
     "sshd runs"),
    (TIMEOUT, "host web-1 (root@192.0.2.7:22): no answer from 192.0.2.7:22 within 10 s (x)",
     "firewall"),
    (NO_ROUTE, "host web-1 (root@192.0.2.7:22): this machine has no route to 192.0.2.7 (x)",
     "proxy_jump"),
    (UNRESOLVED, "host web-1 (root@192.0.2.7:22): the name 192.0.2.7 does not resolve (x)",
     "DNS name"),
    (CLOSED, "host web-1 (root@192.0.2.7:22): 192.0.2.7:22 closed the connection before SSH "
     "began (x)", "fail2ban"),
    (KEY_UNPROTECTED, "host web-1 (root@192.0.2.7:22): ssh will not use the key /keys/id_web: "
     "other users may read it", "chmod 600 /keys/id_web"),
    (OTHER, "host web-1 (root@192.0.2.7:22): cannot connect (x)",
     "`ssh -v -p 22 root@192.0.2.7 true`"),
])
def test_every_failure_says_where_and_what_to_do(kind: str, message: str, hint: str) -> None:
    error = failure_error(Failure(kind, "x"), WEB)
    assert type(error) is ProviderError
    assert (error.message, hint in error.hint) == (message, True)


def test_a_host_the_bastion_cannot_reach_names_both() -> None:
    error = failure_error(Failure(FORWARD, "Connection refused"), DB)
    assert error.message == ("host db-1 (admin@10.0.0.9:2222, through root@192.0.2.7:22): "
                             "bastion root@192.0.2.7:22 cannot reach 10.0.0.9:2222 "
                             "(Connection refused)")
    assert "`ssh -p 22 root@192.0.2.7 nc -zv 10.0.0.9 2222`" in error.hint


def test_a_key_changed_during_adoption_is_a_host_key_error() -> None:
    error = failure_error(Failure(HOST_KEY, "host key verification failed"), WEB)
    assert isinstance(error, HostKeyChanged)
    assert error.exit_code == ExitCode.PROVIDER


# -------------------------------------------------------------------- detection

def output(**values: str) -> str:
    lines = ["Welcome! (a noisy .bashrc)"]
    lines += [f"{MARK}{key}={value}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


DEBIAN = dict(arch="x86_64", id="debian", version_id="13", id_like="",
              pretty="Debian GNU/Linux 13 (trixie)")


def test_root_on_debian_needs_no_sudo() -> None:
    facts = check_facts(parse_facts(output(**DEBIAN, uid="0")), WEB, "")
    assert (facts.os, facts.arch, facts.uid, facts.sudo) == ("debian 13", "x86_64", 0, None)


def test_a_sudo_user_on_ubuntu_and_a_debian_derivative_pass() -> None:
    ubuntu = dict(DEBIAN, id="ubuntu", version_id="24.04", id_like="debian")
    facts = check_facts(parse_facts(output(**ubuntu, uid="1000", sudo="yes")), DB, "")
    assert (facts.os, facts.sudo) == ("ubuntu 24.04", True)
    mint = dict(DEBIAN, id="linuxmint", version_id="22", id_like="ubuntu debian")
    assert check_facts(parse_facts(output(**mint, uid="0")), WEB, "").os == "linuxmint 22"


def test_a_user_without_passwordless_sudo_is_refused_with_the_fix() -> None:
    facts = parse_facts(output(**DEBIAN, uid="1000", sudo="no sudo: a password is required"))
    with pytest.raises(ProviderError) as caught:
        check_facts(facts, DB, "")
    assert caught.value.message == (
        "host db-1 (admin@10.0.0.9:2222, through root@192.0.2.7:22): user admin has no "
        "passwordless sudo (`sudo -n true` failed): sudo: a password is required")
    assert "echo 'admin ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/admin" in caught.value.hint
    assert "`user: root`" in caught.value.hint


def test_sudo_that_is_not_installed_counts_as_none() -> None:
    facts = parse_facts(output(**DEBIAN, uid="1000", sudo="no sh: 1: sudo: not found"))
    assert (facts.sudo, facts.sudo_detail) == (False, "sh: 1: sudo: not found")


@pytest.mark.parametrize(("values", "shown"), [
    (dict(DEBIAN, id="rocky", version_id="9.4", id_like="rhel centos fedora",
          pretty="Rocky Linux 9.4 (Blue Onyx)"), "Rocky Linux 9.4 (Blue Onyx)"),
    (dict(arch="aarch64"), "an unknown system (no /etc/os-release)"),
])
def test_other_systems_are_refused(values: dict, shown: str) -> None:
    with pytest.raises(ProviderError) as caught:
        check_facts(parse_facts(output(**values, uid="0")), WEB, "")
    assert caught.value.message == (
        f"host web-1 (root@192.0.2.7:22): runs {shown}; stagecraft's roles support Debian, "
        "Ubuntu and systems like Debian (ID_LIKE=debian)")


def test_output_without_the_facts_is_an_error_that_shows_the_last_line() -> None:
    assert parse_facts("stagecraft:arch=x86_64\n") is None  # no uid
    with pytest.raises(ProviderError, match=r"printed no facts \(last line: fish: Unknown"):
        check_facts(None, WEB, "fish: Unknown command\n")


def test_the_detection_script_runs_under_sh_and_prints_every_fact(tmp_path: Path) -> None:
    # Run it here, under this machine's sh, as a login shell would.
    import subprocess

    proc = subprocess.run(["sh", "-c", DETECT_COMMAND], capture_output=True, text=True,
                          check=True)
    facts = parse_facts(proc.stdout)
    assert facts is not None and facts.arch and facts.os_id
    assert (facts.sudo is None) == (facts.uid == 0)


# ------------------------------------------------------------------- endpoints

KEY = "/keys/id_default"


def spec(*hosts: HostSpec) -> FleetSpec:
    return FleetSpec("shop", "prod", hosts)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    for name in ("id_default", "id_web"):
        (tmp_path / name).write_text("key")
    return tmp_path


def test_hosts_take_the_cloud_defaults_and_a_bastion_by_name(keys: Path) -> None:
    planned = plan_endpoints(spec(
        HostSpec("web-1", ("edge",), address="192.0.2.7", ssh_key=str(keys / "id_web")),
        HostSpec("db-1", ("db",), address="10.0.0.9", port=2222, user="admin",
                 proxy_jump="web-1"),
    ), "root", str(keys / "id_default"), {})
    web, db = planned.hosts["web-1"], planned.hosts["db-1"]
    assert (web.user, web.port, web.key, web.proxy) == ("root", 22, str(keys / "id_web"), None)
    assert (db.user, db.port, db.key, db.proxy) == (
        "admin", 2222, str(keys / "id_default"), "root@192.0.2.7:22")
    assert planned.bastions == ()
    assert planned.direct() == [web] and planned.proxied() == [db]


def test_a_bootstrapped_host_is_reached_as_the_deploy_user_and_so_is_its_bastion(
        keys: Path) -> None:
    planned = plan_endpoints(spec(
        HostSpec("web-1", address="192.0.2.7"),
        HostSpec("db-1", address="10.0.0.9", proxy_jump="web-1"),
    ), "root", str(keys / "id_default"), {"web-1": "deploy"})
    assert planned.hosts["web-1"].user == "deploy"
    assert planned.hosts["db-1"].user == "root"
    assert planned.hosts["db-1"].proxy == "deploy@192.0.2.7:22"


def test_a_bastion_outside_the_environment_is_pinned_once_for_all_its_hosts(keys: Path) -> None:
    planned = plan_endpoints(spec(
        HostSpec("db-1", address="10.0.0.9", user="admin", proxy_jump="jump.example.com:2200"),
        HostSpec("db-2", address="10.0.0.10", proxy_jump="ops@jump.example.com:2200"),
    ), "root", str(keys / "id_default"), {})
    assert planned.hosts["db-1"].proxy == "admin@jump.example.com:2200"  # the host's user
    assert planned.hosts["db-2"].proxy == "ops@jump.example.com:2200"
    (bastion,) = planned.bastions
    assert (bastion.label, bastion.address, bastion.port, bastion.name) == (
        "bastion of host db-1, db-2", "jump.example.com", 2200, None)
    assert planned.direct() == [bastion]


@pytest.mark.parametrize(("hosts", "message"), [
    ((HostSpec("web-1"),), "environment prod: host web-1 has no address"),
    ((HostSpec("web-1", address="192.0.2.7", ssh_key="/nonexistent/id"),),
     "environment prod: host web-1: the ssh_key /nonexistent/id does not exist"),
    ((HostSpec("web-1", address="192.0.2.7", proxy_jump="web-1"),),
     "environment prod: host web-1 names itself as its proxy_jump"),
    ((HostSpec("a", address="192.0.2.7", proxy_jump="jump"),
      HostSpec("b", address="10.0.0.9", proxy_jump="a")),
     "environment prod: host b goes through a, which goes through jump itself; stagecraft "
     "takes one bastion only"),
])
def test_what_cannot_be_reached_is_a_config_error(keys: Path, hosts: tuple, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        plan_endpoints(spec(*hosts), "root", str(keys / "id_default"), {})
    assert caught.value.message == message
