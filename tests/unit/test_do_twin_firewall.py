"""The nftables ruleset the DigitalOcean twin writes into a droplet for its cloud firewall:
what rules become (sources resolved from droplet ids and tags, ports, ICMP, IPv6), and
that nftables' own parser takes it (when nft and root are here). No Docker needed: the
ruleset is made from the machines' record alone."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from stagecraft_twins.digitalocean.docker_machines import DockerMachines
from stagecraft_twins.digitalocean.machines import FirewallRule, MachineError, Machines


def _machines(tmp_path: Path, firewall: list[dict] | None) -> DockerMachines:
    droplets = {
        "1": {"name": "web", "public_ipv4": "198.18.5.3", "private_ipv4": "10.1.0.3",
              "firewall": firewall},
        "2": {"name": "db", "public_ipv4": "198.18.5.4", "private_ipv4": "10.1.0.4",
              "firewall": None},
        "3": {"name": "cache", "public_ipv4": "198.18.5.5", "private_ipv4": "10.1.0.5",
              "firewall": None},
    }
    (tmp_path / "machines.json").write_text(json.dumps({"droplets": droplets, "volumes": {}}))
    return DockerMachines(tmp_path, "unit")


def _rules(*rules: FirewallRule) -> list[dict]:
    return [{"protocol": r.protocol, "ports": r.ports, "addresses": list(r.addresses),
             "droplet_ids": list(r.droplet_ids), "tags": list(r.tags)} for r in rules]


RULES = _rules(
    FirewallRule("tcp", "22", ("0.0.0.0/0", "::/0")),
    FirewallRule("tcp", "8000-9000", ("203.0.113.0/24", "203.0.113.7")),
    FirewallRule("udp", "all", droplet_ids=(2,)),
    FirewallRule("tcp", "5432", tags=("cache",)),
    FirewallRule("icmp", "0", ("0.0.0.0/0",)),
)


def test_rules_become_one_table_replaced_in_one_transaction(tmp_path: Path) -> None:
    machines = _machines(tmp_path, RULES)
    machines.tag_resolver = lambda tag: [3] if tag == "cache" else []
    text = machines.firewall_ruleset(1)
    lines = [line.strip() for line in text.splitlines()]
    assert lines[:3] == ["table inet do_cloud_firewall", "delete table inet do_cloud_firewall",
                         "table inet do_cloud_firewall {"]
    assert "type filter hook prerouting priority -150; policy accept;" in lines
    assert "ct state established,related accept" in lines
    assert "ip saddr { 0.0.0.0/0 } tcp dport 22 accept" in lines
    assert "ip6 saddr { ::/0 } tcp dport 22 accept" in lines
    # Overlapping sources are merged (nft refuses overlapping elements).
    assert "ip saddr { 203.0.113.0/24 } tcp dport 8000-9000 accept" in lines
    # A droplet id admits both of its addresses; a tag the droplets carrying it.
    assert "ip saddr { 10.1.0.4/32, 198.18.5.4/32 } meta l4proto udp accept" in lines
    assert "ip saddr { 10.1.0.5/32, 198.18.5.5/32 } tcp dport 5432 accept" in lines
    assert "ip saddr { 0.0.0.0/0 } meta l4proto icmp accept" in lines
    assert lines[-3:] == ["drop", "}", "}"]


def test_tags_admit_nobody_without_a_resolver(tmp_path: Path) -> None:
    text = _machines(tmp_path, RULES).firewall_ruleset(1)
    assert "5432" not in text


def test_no_firewall_only_deletes_the_table(tmp_path: Path) -> None:
    assert _machines(tmp_path, None).firewall_ruleset(1) == (
        "table inet do_cloud_firewall\ndelete table inet do_cloud_firewall\n")


def test_bad_rules_are_machine_errors(tmp_path: Path) -> None:
    for rule, message in ((FirewallRule("sctp", "1", ("0.0.0.0/0",)), "protocol"),
                          (FirewallRule("tcp", "22,23", ("0.0.0.0/0",)), "ports"),
                          (FirewallRule("tcp", "22", ("example.com",)), "not an address")):
        with pytest.raises(MachineError, match=message):
            _machines(tmp_path, _rules(rule)).firewall_ruleset(1)


@pytest.mark.skipif(shutil.which("nft") is None or os.geteuid() != 0,
                    reason="needs nft and root (nft -c asks the kernel, applying nothing)")
def test_the_ruleset_passes_nft_check(tmp_path: Path) -> None:
    machines = _machines(tmp_path, RULES)
    machines.tag_resolver = lambda tag: [3]
    # -c checks without applying; the `delete` of a table that is not there is fine
    # because the same transaction declares it first.
    proc = subprocess.run(["nft", "-c", "-f", "-"], input=machines.firewall_ruleset(1),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_docker_machines_has_every_method_of_the_protocol() -> None:
    for name, member in vars(Machines).items():
        if name.startswith("_") or not callable(member):
            continue
        ours = getattr(DockerMachines, name)
        assert inspect.signature(ours) == inspect.signature(member), name
    assert DockerMachines.kind == "docker"
