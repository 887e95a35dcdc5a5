"""What `infra up` and `infra down` would change in DigitalOcean: pure functions from the
environment's spec and what the API has now to a list of changes and the variables of
the role `digitalocean` that makes exactly those changes.

A plan never deletes a droplet the environment no longer lists unless asked
(``prune``), never shrinks a volume (a filesystem on it cannot survive that) and
never moves a droplet to another region. Firewall rules are compared the way the
firewall module compares them, so a plan without changes is a run that changes
nothing.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stagecraft.errors import PlanError
from stagecraft.providers.cloud.base import CloudChange, CloudPlan, FleetSpec
from stagecraft.providers.cloud.digitalocean import names

#: GiB of a volume whose size stagecraft.yml does not give.
DEFAULT_VOLUME_GB = 10
#: The host role whose droplets take public traffic.
EDGE_ROLE = "edge"
ANYWHERE = ("0.0.0.0/0", "::/0")
#: "0": every port of a protocol, as the API writes it back (ICMP always has "0").
ALL_PORTS = "0"

CREATE, RESIZE, UPDATE, DELETE, ATTACH, START, WAIT = (
    "create", "resize", "update", "delete", "attach", "start", "wait")


@dataclass(frozen=True)
class Settings:
    """providers.cloud of stagecraft.yml, as the plan needs it."""

    region: str
    image: str = "debian-13-x64"
    size: str = "s-1vcpu-2gb"
    vpc: str | None = None


@dataclass(frozen=True)
class Found:
    """What the API has now that belongs to the environment (see :func:`read_found`)."""

    droplets: Sequence[Mapping[str, Any]] = ()  # tagged with the environment's tag
    volumes: Sequence[Mapping[str, Any]] = ()  # named or tagged as the environment's
    firewalls: Sequence[Mapping[str, Any]] = ()  # named as the environment's
    vpc: Mapping[str, Any] | None = None
    ssh_key: Mapping[str, Any] | None = None
    tags: Sequence[str] = ()  # the environment's tags that exist
    account_droplets: int = 0  # droplets in the whole account
    droplet_limit: int | None = None


Change = CloudChange
InfraPlan = CloudPlan


def fingerprint(public_key: str) -> str:
    """DigitalOcean's fingerprint of an OpenSSH public key: the MD5 of its blob, in
    colon-separated hex."""
    blob = base64.b64decode(public_key.split()[1])
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


# ------------------------------------------------------------------ rules


def _rule(protocol: str, ports: str, side: str, **where: Sequence[str]) -> dict[str, Any]:
    return {"protocol": protocol, "ports": ports,
            side: {key: list(value) for key, value in where.items()}}


def firewalls(spec: FleetSpec) -> list[dict[str, Any]]:
    """The environment's cloud firewalls: one for every droplet (all traffic between
    the environment's droplets, SSH from ``spec.ssh_from``), one for edge droplets
    (the public ports from anywhere). Outbound is open."""
    env_tag = names.env_tag(spec.project, spec.environment)
    outbound = [_rule(p, ALL_PORTS, "destinations", addresses=ANYWHERE)
                for p in ("tcp", "udp", "icmp")]
    inside = [_rule(p, ALL_PORTS, "sources", tags=[env_tag]) for p in ("tcp", "udp", "icmp")]
    ssh = [_rule("tcp", "22", "sources", addresses=spec.ssh_from)] if spec.ssh_from else []
    result = [{"name": names.firewall_name(spec.project, spec.environment),
               "tags": [env_tag], "inbound_rules": inside + ssh, "outbound_rules": outbound}]
    if any(EDGE_ROLE in h.roles for h in spec.hosts):
        public = [_rule("tcp", str(port), "sources", addresses=ANYWHERE)
                  for port in sorted(set(spec.public_ports))]
        result.append({
            "name": names.firewall_name(spec.project, spec.environment, EDGE_ROLE),
            "tags": [names.role_tag(spec.project, spec.environment, EDGE_ROLE)],
            "inbound_rules": public, "outbound_rules": outbound})
    return result


def _comparable_rules(rules: Any, side: str) -> list[tuple]:
    """Rules as the firewall module compares them: defaults filled, lists sorted."""
    result = []
    for rule in rules or []:
        where = rule.get(side) or {}
        result.append((
            rule.get("protocol") or "tcp",
            str(rule.get("ports") or ALL_PORTS),
            tuple(sorted(where.get("addresses") or [])),
            tuple(sorted(str(i) for i in where.get("droplet_ids") or [])),
            tuple(sorted(where.get("load_balancer_uids") or [])),
            tuple(sorted(where.get("tags") or [])),
        ))
    return sorted(result)


def firewall_differs(wanted: Mapping[str, Any], found: Mapping[str, Any]) -> bool:
    """Whether the firewall module would update ``found`` to ``wanted``."""
    return (
        _comparable_rules(wanted.get("inbound_rules"), "sources")
        != _comparable_rules(found.get("inbound_rules"), "sources")
        or _comparable_rules(wanted.get("outbound_rules"), "destinations")
        != _comparable_rules(found.get("outbound_rules"), "destinations")
        or sorted(wanted.get("tags") or []) != sorted(found.get("tags") or [])
        or sorted(str(i) for i in wanted.get("droplet_ids") or [])
        != sorted(str(i) for i in found.get("droplet_ids") or [])
    )


# ------------------------------------------------------------------ up


def droplet_tags(spec: FleetSpec, roles: Sequence[str]) -> list[str]:
    """The tags of a droplet with host roles ``roles``."""
    return [names.COMMON_TAG, names.env_tag(spec.project, spec.environment),
            *(names.role_tag(spec.project, spec.environment, r) for r in roles)]


def plan_up(spec: FleetSpec, settings: Settings, found: Found, public_key: str, *,
            prune: bool = False) -> InfraPlan:
    """What `infra up` changes. Raises PlanError for what no run can do (a volume
    smaller than it is, a droplet in another region)."""
    project, env = spec.project, spec.environment
    changes: list[Change] = []
    kept: list[str] = []
    by_name = {d["name"]: d for d in found.droplets}

    key_name = names.ssh_key_name(project, env)
    if found.ssh_key is None:
        changes.append(Change("ssh key", key_name, CREATE, fingerprint(public_key)))
    vpc = names.vpc_name(project, env, settings.vpc)
    if found.vpc is None:
        changes.append(Change("vpc", vpc, CREATE, f"in {settings.region}"))

    droplets = []
    tag_changes = []
    created = 0
    for host in spec.hosts:
        name = names.droplet_name(project, env, host.name)
        size = host.size or settings.size
        tags = droplet_tags(spec, host.roles)
        item: dict[str, Any] = {"name": name, "host": host.name, "size": size, "tags": tags}
        droplet = by_name.get(name)
        if droplet is None:
            created += 1
            changes.append(Change("droplet", name, CREATE,
                                  f"{size}, {settings.image}, in {settings.region}"))
        else:
            region = (droplet.get("region") or {}).get("slug")
            if region and region != settings.region:
                raise PlanError(
                    f"droplet {name} is in {region}, stagecraft.yml says {settings.region}: "
                    "a droplet cannot move to another region",
                    hint=f"keep providers.cloud.region: {region}, or rename host "
                    f"{host.name} so a new droplet is made (then `infra up --prune` "
                    "removes the old one)")
            if droplet.get("size_slug") != size:
                item["resize_from"] = droplet.get("size_slug")
                changes.append(Change("droplet", name, RESIZE,
                                      f"{droplet.get('size_slug')} → {size} (powered off "
                                      "for the resize; the disk is kept)"))
            elif droplet.get("status") == "off":
                changes.append(Change("droplet", name, START, "powered off: power it on"))
            elif droplet.get("status") == "new":
                changes.append(Change("droplet", name, WAIT, "status new: DigitalOcean is "
                                      "still creating it; wait until it is active"))
            have = set(droplet.get("tags") or [])
            for tag in tags:
                if tag not in have:
                    tag_changes.append({"tag": tag, "droplet": name, "state": "present"})
            for tag in sorted(have - set(tags)):
                if tag.startswith(names.env_tag(project, env) + "--"):
                    tag_changes.append({"tag": tag, "droplet": name, "state": "absent"})
            if any(t["droplet"] == name for t in tag_changes):
                added = [t["tag"] for t in tag_changes if t["droplet"] == name
                         and t["state"] == "present"]
                removed = [t["tag"] for t in tag_changes if t["droplet"] == name
                           and t["state"] == "absent"]
                detail = ", ".join([*(f"+{t}" for t in added), *(f"-{t}" for t in removed)])
                changes.append(Change("droplet", name, UPDATE, f"tags {detail}"))
        droplets.append(item)

    if found.droplet_limit is not None and found.account_droplets + created > found.droplet_limit:
        raise PlanError(
            f"creating {created} droplet(s) would exceed the account's droplet limit "
            f"({found.account_droplets} of {found.droplet_limit} in use)",
            hint="raise the limit (cloud.digitalocean.com → Settings, or ask support), "
            "or remove droplets you do not need")

    listed = {d["name"] for d in droplets}
    unlisted = tuple(sorted(n for n in by_name if n not in listed))
    for name in unlisted:
        if prune:
            changes.append(Change("droplet", name, DELETE, "not listed in the environment"))
        else:
            kept.append(f"droplet {name} is not listed in the environment: `infra up "
                        "--prune` deletes it")

    volumes = _plan_volumes(spec, found, changes, kept)

    wanted_firewalls = firewalls(spec)
    found_firewalls = {f["name"]: f for f in found.firewalls}
    for wanted in wanted_firewalls:
        current = found_firewalls.get(wanted["name"])
        if current is None:
            changes.append(Change("firewall", wanted["name"], CREATE, _rules_text(wanted)))
        elif firewall_differs(wanted, current):
            changes.append(Change("firewall", wanted["name"], UPDATE, _rules_text(wanted)))

    variables = {
        "digitalocean_state": "present",
        "digitalocean_region": settings.region,
        "digitalocean_image": settings.image,
        "digitalocean_vpc_name": vpc,
        "digitalocean_vpc_description": f"stagecraft: {project}/{env}",
        "digitalocean_ssh_key_name": key_name,
        "digitalocean_ssh_public_key": public_key,
        "digitalocean_ssh_key_fingerprint": fingerprint(public_key),
        "digitalocean_tags": sorted({t for d in droplets for t in d["tags"]}),
        "digitalocean_droplets": droplets,
        "digitalocean_droplet_tags": tag_changes,
        "digitalocean_volumes": volumes,
        "digitalocean_volume_tags": [names.COMMON_TAG, names.env_tag(project, env)],
        "digitalocean_firewalls": wanted_firewalls,
        "digitalocean_prune": list(unlisted) if prune else [],
    }
    return InfraPlan(tuple(changes), variables, unlisted, tuple(kept))


def _plan_volumes(spec: FleetSpec, found: Found, changes: list[Change],
                  kept: list[str]) -> list[dict[str, Any]]:
    project, env = spec.project, spec.environment
    env_tag = names.env_tag(project, env)
    by_name = {v["name"]: v for v in found.volumes}
    droplet_ids = {d["name"]: d.get("id") for d in found.droplets}
    volumes = []
    for host in spec.hosts:
        droplet = names.droplet_name(project, env, host.name)
        for volume in host.volumes:
            name = names.volume_name(project, env, host.name, volume)
            size = spec.volume_sizes.get(volume, DEFAULT_VOLUME_GB)
            current = by_name.get(name)
            item = {"name": name, "volume": volume, "droplet": droplet, "size_gb": size,
                    "tag": current is None or env_tag not in (current.get("tags") or [])}
            if current is None:
                changes.append(Change("volume", name, CREATE,
                                      f"{size} GiB for {volume}, attached to {droplet}"))
            else:
                have = int(current.get("size_gigabytes") or 0)
                if size < have:
                    raise PlanError(
                        f"volume {volume} of host {host.name} ({name}) is {have} GiB; "
                        f"stagecraft.yml asks for {size} GiB, and a volume never shrinks",
                        hint=f"set volumes.{volume}.size_gb to {have} or more")
                if size > have:
                    changes.append(Change("volume", name, RESIZE,
                                          f"{have} → {size} GiB (the filesystem grows at "
                                          "the next bootstrap)"))
                attached = current.get("droplet_ids") or []
                if droplet_ids.get(droplet) not in attached:
                    changes.append(Change("volume", name, ATTACH, f"to {droplet}"))
                if item["tag"]:
                    changes.append(Change("volume", name, UPDATE, f"tag {env_tag}"))
            volumes.append(item)
    wanted = {v["name"] for v in volumes}
    for name in sorted(by_name):
        if name not in wanted:
            kept.append(f"volume {name} is not used by the environment; it keeps its data "
                        "until `infra down`")
    return volumes


def _rules_text(firewall: Mapping[str, Any]) -> str:
    parts = []
    for rule in firewall["inbound_rules"]:
        sources = rule["sources"]
        who = ", ".join(sources.get("addresses") or sources.get("tags") or [])
        ports = "all" if rule["ports"] == ALL_PORTS else rule["ports"]
        parts.append(f"{rule['protocol']} {ports} from {who}")
    return "; ".join(parts)


# ------------------------------------------------------------------ down


def plan_down(spec: FleetSpec, settings: Settings, found: Found) -> InfraPlan:
    """What `infra down` removes: every droplet and volume with the environment's tag
    (or a volume name of its hosts), its firewalls, VPC, SSH key and tags."""
    project, env = spec.project, spec.environment
    changes = [Change("droplet", d["name"], DELETE, f"id {d.get('id')}")
               for d in found.droplets]
    changes += [Change("volume", v["name"], DELETE, f"{v.get('size_gigabytes')} GiB, its "
                       "data is lost") for v in found.volumes]
    changes += [Change("firewall", f["name"], DELETE) for f in found.firewalls]
    # A VPC stagecraft.yml names may be shared: only the environment's own one goes.
    vpc = found.vpc if found.vpc is not None and settings.vpc is None else None
    if vpc is not None:
        changes.append(Change("vpc", vpc["name"], DELETE))
    if found.ssh_key is not None:
        changes.append(Change("ssh key", found.ssh_key["name"], DELETE))
    changes += [Change("tag", t, DELETE) for t in found.tags]
    variables = {
        "digitalocean_state": "absent",
        "digitalocean_region": settings.region,
        "digitalocean_droplet_ids": [d["id"] for d in found.droplets],
        "digitalocean_volume_names": [v["name"] for v in found.volumes],
        "digitalocean_firewall_names": [f["name"] for f in found.firewalls],
        "digitalocean_vpc_name": vpc["name"] if vpc else "",
        "digitalocean_ssh_key_fingerprint": (found.ssh_key or {}).get("fingerprint", ""),
        "digitalocean_tags": list(found.tags),
    }
    return InfraPlan(tuple(changes), variables)
