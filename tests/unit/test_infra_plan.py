"""plan's firewall and volume lines, from probe facts (no host needed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from stagecraft.infra import firewall
from stagecraft.config.loader import load_config
from stagecraft.infra.plan import infra_changes
from stagecraft.hosts.probe import HostFacts, parse_probe_output, probe_script

REPO = Path(__file__).resolve().parents[2]
CIDRS = ["10.7.0.0/24"]


def env():
    return load_config(REPO / "examples" / "shop" / "stagecraft.yml").environments["local"]


def applied_hash(environment, host_name: str) -> str:
    host = next(h for h in environment.hosts if h.name == host_name)
    rules = firewall.render_ruleset(firewall.host_vars(environment, host, CIDRS))
    return hashlib.sha256(rules.encode()).hexdigest()


def test_a_fresh_host_needs_its_firewall_and_its_volume() -> None:
    environment = env()
    facts = {h.name: HostFacts(host=h.name, reachable=True) for h in environment.hosts}
    changes = {(c.host, c.kind, c.name) for c in infra_changes(environment, facts, CIDRS)}
    assert changes == {("local-1", "firewall", "rules"), ("local-1", "volume", "pgdata"),
                       ("local-2", "firewall", "rules")}


def test_a_bootstrapped_host_needs_nothing_and_a_changed_config_shows() -> None:
    environment = env()
    facts = {h.name: HostFacts(host=h.name, reachable=True,
                               firewall_hash=applied_hash(environment, h.name),
                               mounts={"/mnt/pgdata": "ext4"} if h.name == "local-1" else {})
             for h in environment.hosts}
    assert infra_changes(environment, facts, CIDRS) == []
    changed = infra_changes(environment, facts, ["10.8.0.0/24"])  # another private side
    assert {(c.host, c.kind) for c in changed} == {("local-1", "firewall"),
                                                   ("local-2", "firewall")}


def test_a_volume_with_another_filesystem_is_reported_not_reformatted() -> None:
    environment = env()
    facts = {h.name: HostFacts(host=h.name, reachable=True,
                               firewall_hash=applied_hash(environment, h.name),
                               mounts={"/mnt/pgdata": "xfs"})
             for h in environment.hosts}
    (change,) = infra_changes(environment, facts, CIDRS)
    assert change.kind == "volume" and "refuses to reformat" in change.detail


def test_unreachable_hosts_are_left_out() -> None:
    environment = env()
    facts = {h.name: HostFacts(host=h.name, reachable=False) for h in environment.hosts}
    assert infra_changes(environment, facts, CIDRS) == []


def test_the_probe_reads_the_rules_hash_and_the_mounts() -> None:
    script = probe_script("shop", "local")
    assert "sha256sum /etc/nftables.d/stagecraft-firewall.nft" in script
    text = ("@@stagecraft-probe:current\n@@stagecraft-probe:containers\n"
            "@@stagecraft-probe:traefik\n@@stagecraft-probe:lock\nnone\n"
            "@@stagecraft-probe:firewall\n" + "ab" * 32 + "  /etc/nftables.d/x.nft\n"
            "@@stagecraft-probe:mounts\n/mnt/pgdata ext4\n@@stagecraft-probe:end\n")
    facts = parse_probe_output(text, "h")
    assert facts.firewall_hash == "ab" * 32
    assert facts.mounts == {"/mnt/pgdata": "ext4"}
