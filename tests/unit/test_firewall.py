"""The firewall's variables per host, the ruleset rendered from the role's template
(checked by nftables' own parser when `nft` is on this machine), and the role's
lock-out check script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stagecraft.infra import firewall
from stagecraft.infra.bootstrap import bootstrap_request
from stagecraft.config import load_config_text
from stagecraft.hosts.fleet import Fleet, fleet_spec
from stagecraft.paths import HOST_ROOT, roles_dir
from stagecraft.providers.cloud import HostRecord, SshAccess, StateFiles
from stagecraft.providers.cloud.base import write_hosts_file

REPO = Path(__file__).resolve().parents[2]
SESSION_CHECK = roles_dir() / "firewall" / "files" / "session_allowed.py"

CONFIG = """
version: 1
project: {{ name: acme }}
providers: {{ network: {{ kind: {network}{auth} }} }}
services:
  web: {{ image: nginx, on: [app] }}
  db: {{ image: postgres, port: 5432, stateful: true, on: [db] }}
firewall: {{ public: [443, 80, 8443], ssh: private }}
environments:
  prod:
    firewall: {{ ssh: {ssh} }}
    hosts:
      - {{ name: edge-1, roles: [edge] }}
      - {{ name: app-1, roles: [app] }}
      - {{ name: db-1, roles: [db] }}
"""


def environment(*, ssh: str = "private", network: str = "none"):
    auth = ", auth_key: '${secret:TS_KEY}'" if network == "tailscale" else ""
    text = CONFIG.format(ssh=ssh, network=network, auth=auth)
    return load_config_text(text).environments["prod"]


def test_host_vars_follow_the_firewall_section_and_the_host_roles():
    env = environment(ssh="public")
    edge, app, _db = env.hosts
    edge_vars = firewall.host_vars(env, edge, ["10.0.0.0/24", "10.0.0.0/24"])
    assert edge_vars == {
        "firewall_public_ports": [80, 443, 8443],
        "firewall_ssh": "public",
        "firewall_private_cidrs": ["10.0.0.0/24"],
        "firewall_private_interfaces": [],
        # Traefik's private entrypoint and the database, published on db-1's private address.
        "firewall_private_ports": [5432, 8000],
        "firewall_edge": True,
    }
    assert firewall.host_vars(env, app, [])["firewall_edge"] is False


@pytest.mark.usefixtures("stand_in_providers")  # tailscale has no provider yet
def test_a_tailnet_makes_its_interface_private():
    env = environment(network="tailscale")
    assert firewall.environment_vars(env, [])["firewall_private_interfaces"] == ["tailscale0"]


def test_without_a_cloud_network_the_private_side_is_the_hosts():
    assert firewall.hosts_private_cidrs(["10.0.0.11", None, "10.0.0.10", "10.0.0.10"]) == [
        "10.0.0.10/32", "10.0.0.11/32"]


def test_the_cloud_names_the_private_side_else_the_hosts_do():
    assert firewall.private_cidrs({"firewall_private_cidrs": ["10.9.0.0/24"]}, ["10.9.0.10"]) == [
        "10.9.0.0/24"]
    assert firewall.private_cidrs({}, ["10.9.0.10"]) == ["10.9.0.10/32"]


def _rules(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_edge_ruleset_opens_the_public_ports_and_private_ssh():
    env = environment()
    rules = _rules(firewall.render_ruleset(firewall.host_vars(env, env.hosts[0], ["10.9.0.0/24"])))
    assert 'tcp dport { 80, 443, 8443 } accept comment "public ports (edge)"' in rules
    assert ('ct status dnat meta l4proto tcp ct original proto-dst { 80, 443, 8443 } accept '
            'comment "public ports (edge)"') in rules
    assert "ip saddr { 10.9.0.0/24 } jump private_input" in rules
    assert 'tcp dport 22 accept comment "SSH from the private side"' in rules
    assert not any("SSH from anywhere" in r for r in rules)
    assert "type filter hook input priority filter; policy drop;" in rules
    assert rules.count("delete table inet stagecraft") == 1


def test_non_edge_ruleset_keeps_public_ports_closed_and_public_ssh_opens_ssh():
    env = environment(ssh="public")
    text = firewall.render_ruleset(firewall.host_vars(env, env.hosts[1], ["10.9.0.0/24"]))
    assert "public ports" not in text
    assert 'tcp dport 22 accept comment "SSH from anywhere"' in text
    assert "SSH from the private side" not in text
    # Published ports still meet the policy: only the private port passes, from the private side.
    assert ("ip saddr { 10.9.0.0/24 } ct status dnat meta l4proto tcp ct original proto-dst "
            "{ 5432, 8000 } accept") in text
    assert 'counter drop comment "published but not allowed"' in text


@pytest.mark.skipif(shutil.which("nft") is None or os.geteuid() != 0,
                    reason="needs nft and root (nft -c asks the kernel, applying nothing)")
@pytest.mark.usefixtures("stand_in_providers")  # tailscale has no provider yet
def test_rendered_rulesets_pass_nft_check(tmp_path):
    env = environment(network="tailscale")
    for host in env.hosts:
        path = tmp_path / f"{host.name}.nft"
        path.write_text(firewall.render_ruleset(firewall.host_vars(env, host, ["10.9.0.0/24"])))
        result = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def session_check(connection: str, *, ssh: str = "private", port: int = 22,
                  cidrs: tuple[str, ...] = (), interfaces: tuple[str, ...] = ()) -> dict:
    args = {"ssh_connection": connection, "ssh": ssh, "ssh_port": port,
            "private_cidrs": list(cidrs), "private_interfaces": list(interfaces)}
    result = subprocess.run([sys.executable, str(SESSION_CHECK), json.dumps(args)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_session_check_allows_a_session_from_the_private_network():
    assert session_check("10.9.0.1 40000 10.9.0.10 22", cidrs=("10.9.0.0/24",))["allowed"]


def test_session_check_refuses_a_session_from_outside_when_ssh_is_private():
    verdict = session_check("203.0.113.7 40000 10.9.0.10 22", cidrs=("10.9.0.0/24",),
                            interfaces=("tailscale0",))
    assert not verdict["allowed"]
    assert "203.0.113.7" in verdict["reason"] and "not on the private side" in verdict["reason"]


def test_session_check_allows_anything_on_the_ssh_port_when_ssh_is_public():
    assert session_check("203.0.113.7 40000 10.9.0.10 22", ssh="public")["allowed"]


def test_session_check_refuses_a_session_on_another_port():
    verdict = session_check("10.9.0.1 40000 10.9.0.10 2222", ssh="public",
                            cidrs=("10.9.0.0/24",))
    assert not verdict["allowed"] and "port 2222" in verdict["reason"]


class FakeCloud:
    """Stands in for a cloud provider: names a private network like the local cloud."""

    def __init__(self, state_dir: Path, cidrs: list[str]) -> None:
        self.state_dir = state_dir
        self.cidrs = cidrs

    def ssh_access(self, spec, state_dir):
        return SshAccess(user="root", private_key=state_dir / "id_ed25519",
                         known_hosts=state_dir / "known_hosts")

    def bootstrap_vars(self, spec, state_dir):
        return {"firewall_private_cidrs": list(self.cidrs)} if self.cidrs else {}


@pytest.mark.parametrize("cidrs, expected", [
    (["10.9.0.0/24"], ["10.9.0.0/24"]),
    ([], ["10.9.0.10/32", "10.9.0.11/32", "10.9.0.12/32"]),
])
def test_bootstrap_passes_the_firewall_section_and_the_private_side(tmp_path, cidrs, expected):
    env = environment(ssh="public")
    spec = fleet_spec(env)
    records = [HostRecord(name=h.name, roles=tuple(h.roles), state="running", ssh_host="127.0.0.1",
                          ssh_port=22000 + i, ssh_user="root", private_ip=f"10.9.0.{10 + i}",
                          provider_id=None)
               for i, h in enumerate(env.hosts)]
    write_hosts_file(StateFiles(tmp_path), provider="local", spec=spec, records=records,
                     ssh=SshAccess(user="root", private_key=tmp_path / "id_ed25519",
                                   known_hosts=tmp_path / "known_hosts"))
    fleet = Fleet(env=env, project_dir=tmp_path, state_dir=tmp_path,
                  cloud=FakeCloud(tmp_path, cidrs), spec=spec,
                  records={r.name: r for r in records})
    request = bootstrap_request(fleet)
    extravars = request.extravars
    assert extravars["firewall_ssh"] == "public"
    assert extravars["firewall_public_ports"] == [80, 443, 8443]
    assert extravars["firewall_private_cidrs"] == expected
    # Per host, from the inventory's roles: an extra variable would outrank the playbook's.
    assert "firewall_edge" not in extravars
    # stagecraft's root on the hosts, for the layout the bootstrap role makes.
    assert extravars["stagecraft_root"] == HOST_ROOT
