"""The twin's resources and their transitions, kept in ``state.json``.

Every resource is held as the JSON object the API answers with (droplets, actions,
keys, VPCs, volumes, firewalls, tags), so reading is copying. One re-entrant lock guards
all of it: a request handler or a worker thread takes ``state.lock``, changes what it
must and calls ``save()``, which writes the whole state atomically (temporary file and
rename) so a restarted twin serves the same resources.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any

from stagecraft_twins.digitalocean.machines import FirewallRule

STATE_VERSION = 1
DEFAULT_DROPLET_LIMIT = 25
DEFAULT_VOLUME_LIMIT = 100
FIRST_IDS = {"droplet": 500000001, "action": 2000000001, "key": 40000001}


class ApiError(Exception):
    """A request DigitalOcean would refuse: HTTP status, error id and message."""

    def __init__(self, status: int, error_id: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message


def not_found() -> ApiError:
    return ApiError(404, "not_found", "The resource you were accessing could not be found.")


def unprocessable(message: str) -> ApiError:
    return ApiError(422, "unprocessable_entity", message)


def now() -> str:
    """The current time as DigitalOcean writes it (UTC, seconds, ``Z``)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uuid() -> str:
    return str(uuid.uuid4())


def fresh_state(droplet_limit: int) -> dict[str, Any]:
    """The state of a twin that has never run: an account and nothing else."""
    return {
        "version": STATE_VERSION,
        "next_ids": dict(FIRST_IDS),
        "account": {
            "droplet_limit": droplet_limit,
            "floating_ip_limit": 3,
            "volume_limit": DEFAULT_VOLUME_LIMIT,
            "email": "twin@stagecraft.invalid",
            "name": "stagecraft twin",
            "uuid": new_uuid(),
            "email_verified": True,
            "status": "active",
            "status_message": "",
            "team": {"uuid": new_uuid(), "name": "My Team"},
        },
        "droplets": {},
        "actions": {},
        "keys": {},
        "vpcs": {},
        "volumes": {},
        "firewalls": {},
        "tags": {},
        # droplets that must never become active (the droplet_stuck fault)
        "stuck_droplets": [],
        # droplet id -> time (epoch seconds) before which it stays `new` (droplet_stuck
        # with seconds)
        "held_new": {},
    }


class State:
    """All resources of one twin, guarded by ``lock`` and saved to ``path``."""

    def __init__(self, path: Path, droplet_limit: int = DEFAULT_DROPLET_LIMIT) -> None:
        self.path = path
        self.lock = threading.RLock()
        if path.exists():
            self.data: dict[str, Any] = json.loads(path.read_text())
            self.restarted = True
        else:
            self.data = fresh_state(droplet_limit)
            self.restarted = False
            self.save()

    # ---- persistence -------------------------------------------------------------

    def save(self) -> None:
        """Write the whole state atomically; callers hold the lock or own the state."""
        with self.lock:
            text = json.dumps(self.data, indent=1, sort_keys=False)
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            temporary.write_text(text)
            os.replace(temporary, self.path)

    def next_id(self, kind: str) -> int:
        """A new integer id for a droplet, action or ssh key."""
        with self.lock:
            value = self.data["next_ids"][kind]
            self.data["next_ids"][kind] = value + 1
            return int(value)

    # ---- collections -------------------------------------------------------------

    @property
    def account(self) -> dict[str, Any]:
        return self.data["account"]

    @property
    def droplets(self) -> dict[str, dict[str, Any]]:
        return self.data["droplets"]

    @property
    def actions(self) -> dict[str, dict[str, Any]]:
        return self.data["actions"]

    @property
    def keys(self) -> dict[str, dict[str, Any]]:
        return self.data["keys"]

    @property
    def vpcs(self) -> dict[str, dict[str, Any]]:
        return self.data["vpcs"]

    @property
    def volumes(self) -> dict[str, dict[str, Any]]:
        return self.data["volumes"]

    @property
    def firewalls(self) -> dict[str, dict[str, Any]]:
        return self.data["firewalls"]

    @property
    def tags(self) -> dict[str, dict[str, Any]]:
        return self.data["tags"]

    def copy(self, value: Any) -> Any:
        """A deep copy of part of the state, safe to hand out after the lock is released."""
        with self.lock:
            return copy.deepcopy(value)

    # ---- lookups ----------------------------------------------------------------

    def droplet(self, droplet_id: Any) -> dict[str, Any]:
        """The droplet with that id (int or digits), or 404."""
        found = self.droplets.get(str(droplet_id))
        if found is None:
            raise not_found()
        return found

    def key(self, identifier: Any) -> dict[str, Any] | None:
        """The ssh key with that id or fingerprint, or None."""
        text = str(identifier)
        if text in self.keys:
            return self.keys[text]
        for key in self.keys.values():
            if key["fingerprint"] == text:
                return key
        return None

    def default_vpc(self, region: str) -> dict[str, Any] | None:
        for vpc in self.vpcs.values():
            if vpc["region"] == region and vpc["default"]:
                return vpc
        return None

    def volume_by_name(self, name: Any, region: Any) -> dict[str, Any] | None:
        for volume in self.volumes.values():
            if volume["name"] == name and volume["region"]["slug"] == region:
                return volume
        return None

    # ---- actions ----------------------------------------------------------------

    def new_action(self, action_type: str, resource_id: int | None, resource_type: str,
                   region: dict[str, Any] | None) -> dict[str, Any]:
        """Record an ``in-progress`` action and return it."""
        action = {
            "id": self.next_id("action"),
            "status": "in-progress",
            "type": action_type,
            "started_at": now(),
            "completed_at": None,
            "resource_id": resource_id,
            "resource_type": resource_type,
            "region": copy.deepcopy(region),
            "region_slug": region["slug"] if region else None,
        }
        self.actions[str(action["id"])] = action
        return action

    def finish_action(self, action_id: int, succeeded: bool) -> None:
        """Move an action to ``completed`` or ``errored``."""
        action = self.actions.get(str(action_id))
        if action is not None and action["status"] == "in-progress":
            action["status"] = "completed" if succeeded else "errored"
            action["completed_at"] = now()

    # ---- tags -------------------------------------------------------------------

    def ensure_tags(self, names: list[str]) -> None:
        for name in names:
            self.tags.setdefault(name, {"name": name})

    def tag_object(self, name: str, base_url: str) -> dict[str, Any]:
        """The tag as DigitalOcean shows it, with its resources counted by type."""
        droplet_ids = [d["id"] for d in self.droplets.values() if name in d["tags"]]
        volume_ids = [v["id"] for v in self.volumes.values() if name in (v["tags"] or [])]
        droplets: dict[str, Any] = {"count": len(droplet_ids)}
        if droplet_ids:
            droplets["last_tagged_uri"] = f"{base_url}/v2/droplets/{droplet_ids[-1]}"
        volumes: dict[str, Any] = {"count": len(volume_ids)}
        if volume_ids:
            volumes["last_tagged_uri"] = f"{base_url}/v2/volumes/{volume_ids[-1]}"
        resources: dict[str, Any] = {"count": len(droplet_ids) + len(volume_ids)}
        if droplet_ids or volume_ids:
            resources["last_tagged_uri"] = (droplets if droplet_ids else volumes)["last_tagged_uri"]
        resources.update({"droplets": droplets, "images": {"count": 0}, "volumes": volumes,
                          "volume_snapshots": {"count": 0}, "databases": {"count": 0}})
        return {"name": name, "resources": resources}

    # ---- firewalls --------------------------------------------------------------

    def firewall_members(self, firewall: dict[str, Any]) -> set[int]:
        """Ids of the droplets a firewall applies to, by id or by tag."""
        members = {int(i) for i in firewall["droplet_ids"] if str(i) in self.droplets}
        tags = set(firewall["tags"])
        members.update(d["id"] for d in self.droplets.values() if tags & set(d["tags"]))
        return members

    def firewall_rules_for(self, droplet_id: int) -> list[FirewallRule] | None:
        """The union of the inbound rules of every firewall the droplet is in (None: none).

        Sources naming droplets or tags also get those droplets' addresses, so a machine
        can enforce them without knowing the twin's resources."""
        firewalls = [f for f in self.firewalls.values() if droplet_id in self.firewall_members(f)]
        if not firewalls:
            return None
        rules: list[FirewallRule] = []
        for firewall in firewalls:
            for rule in firewall["inbound_rules"]:
                sources = rule.get("sources", {})
                droplet_ids = tuple(int(i) for i in sources.get("droplet_ids") or [])
                tags = tuple(sources.get("tags") or [])
                addresses = list(sources.get("addresses") or [])
                for droplet in self.droplets.values():
                    if droplet["id"] in droplet_ids or set(tags) & set(droplet["tags"]):
                        addresses.extend(n["ip_address"] for n in droplet["networks"]["v4"])
                rules.append(FirewallRule(protocol=rule["protocol"], ports=rule["ports"],
                                          addresses=tuple(addresses), droplet_ids=droplet_ids,
                                          tags=tags))
        return rules

    # ---- droplets ---------------------------------------------------------------

    def remove_droplet(self, droplet_id: int) -> None:
        """Forget a droplet: its volumes are detached, its firewalls no longer name it."""
        self.droplets.pop(str(droplet_id), None)
        for volume in self.volumes.values():
            if droplet_id in volume["droplet_ids"]:
                volume["droplet_ids"] = [i for i in volume["droplet_ids"] if i != droplet_id]
        for firewall in self.firewalls.values():
            firewall["droplet_ids"] = [i for i in firewall["droplet_ids"] if i != droplet_id]
        stuck = self.data["stuck_droplets"]
        if droplet_id in stuck:
            stuck.remove(droplet_id)
        self.hold_new(droplet_id, None)

    def hold_new(self, droplet_id: int, until: float | None) -> None:
        """Keep a droplet ``new`` until ``until`` (epoch seconds); None: no longer."""
        held = self.data.setdefault("held_new", {})
        if until is None:
            held.pop(str(droplet_id), None)
        else:
            held[str(droplet_id)] = until

    def held_new_until(self, droplet_id: int) -> float:
        """Until when a droplet stays ``new`` whatever its machine says (0: it does not)."""
        return float(self.data.get("held_new", {}).get(str(droplet_id), 0))

    def vpc_members(self, vpc_id: str) -> list[dict[str, Any]]:
        return [{"name": d["name"], "urn": f"do:droplet:{d['id']}", "created_at": d["created_at"]}
                for d in self.droplets.values() if d.get("vpc_uuid") == vpc_id]
