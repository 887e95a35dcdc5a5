"""The firewall endpoints of the twin.

A change to a firewall (made, changed, removed; droplets, tags or rules added or
removed) records the new firewall at once, marks it ``waiting`` and has the machines of
every droplet it applies to (by id or tag, before and after the change) enforce their
rules again on the twin's firewall worker; then the firewall is ``succeeded``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable

from stagecraft_twins.digitalocean.api import Request, Response, Twin, paginate, tag_names
from stagecraft_twins.digitalocean.state import new_uuid, not_found, now, unprocessable

FIREWALL_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9.-]+$")
PORTS = re.compile(r"^(all|\d{1,5}|\d{1,5}-\d{1,5})$")
SOURCE_KEYS = ("addresses", "droplet_ids", "load_balancer_uids", "kubernetes_ids", "tags")


class FirewallsApi:
    """Cloud firewalls: their rules, droplets and tags."""

    def __init__(self, twin: Twin) -> None:
        self.twin = twin
        self.state = twin.state

    def routes(self) -> list[tuple[str, str, Callable[[Request], Response]]]:
        return [
            ("GET", "/v2/firewalls", self.list_firewalls),
            ("POST", "/v2/firewalls", self.create_firewall),
            ("GET", "/v2/firewalls/{firewall_id}", self.get_firewall),
            ("PUT", "/v2/firewalls/{firewall_id}", self.update_firewall),
            ("DELETE", "/v2/firewalls/{firewall_id}", self.delete_firewall),
            ("POST", "/v2/firewalls/{firewall_id}/droplets", self.firewall_droplets),
            ("DELETE", "/v2/firewalls/{firewall_id}/droplets", self.firewall_droplets),
            ("POST", "/v2/firewalls/{firewall_id}/tags", self.firewall_tags),
            ("DELETE", "/v2/firewalls/{firewall_id}/tags", self.firewall_tags),
            ("POST", "/v2/firewalls/{firewall_id}/rules", self.firewall_rules),
            ("DELETE", "/v2/firewalls/{firewall_id}/rules", self.firewall_rules),
        ]


    def list_firewalls(self, request: Request) -> Response:
        return paginate(request, "firewalls",
                        self.state.copy(list(self.state.firewalls.values())))

    def _firewall(self, request: Request) -> dict[str, Any]:
        firewall = self.state.firewalls.get(request.params["firewall_id"])
        if firewall is None:
            raise not_found()
        return firewall

    def get_firewall(self, request: Request) -> Response:
        with self.state.lock:
            return Response(200, {"firewall": self.state.copy(self._firewall(request))})

    def _firewall_fields(self, body: dict[str, Any]) -> dict[str, Any]:
        """The validated, normalised fields of a firewall body (422 if not valid)."""
        name = body.get("name")
        if not isinstance(name, str) or not FIREWALL_NAME.match(name) or len(name) > 255:
            raise unprocessable("name: must be made of letters, numbers, dots and dashes, "
                                "starting with a letter or number")
        return {
            "name": name,
            "inbound_rules": self._rules(body.get("inbound_rules"), "sources"),
            "outbound_rules": self._rules(body.get("outbound_rules"), "destinations"),
            "droplet_ids": self._droplet_ids(body.get("droplet_ids")),
            "tags": tag_names(body.get("tags")),
        }

    def _rules(self, rules: Any, side: str) -> list[dict[str, Any]]:
        if rules is None:
            return []
        if not isinstance(rules, list):
            raise unprocessable("rules must be a list")
        normalised = []
        for rule in rules:
            if not isinstance(rule, dict):
                raise unprocessable("each rule must be an object")
            protocol = rule.get("protocol") or "tcp"
            if protocol not in ("tcp", "udp", "icmp"):
                raise unprocessable(f"protocol {protocol!r} is not one of tcp, udp, icmp")
            ports = rule.get("ports")
            if protocol == "icmp" and ports in (None, ""):
                ports = "0"
            if not isinstance(ports, str) or not PORTS.match(ports):
                raise unprocessable(f"ports {ports!r} is not valid: a port, a range or all")
            endpoints = rule.get(side)
            if not isinstance(endpoints, dict):
                raise unprocessable(f"{side} is required in every rule")
            cleaned: dict[str, Any] = {}
            for key in SOURCE_KEYS:
                values = endpoints.get(key)
                if not values:
                    continue
                if key == "droplet_ids":
                    values = self._droplet_ids(values)
                elif key == "tags":
                    values = tag_names(values)
                elif key == "addresses":
                    values = [self._address(a) for a in values]
                cleaned[key] = values
            if not cleaned:
                raise unprocessable(f"{side} must name at least one address, droplet or tag")
            normalised.append({"protocol": protocol, "ports": ports, side: cleaned})
        return normalised

    @staticmethod
    def _address(value: Any) -> str:
        try:
            ipaddress.ip_network(value, strict=False)
        except (TypeError, ValueError):
            raise unprocessable(f"address {value!r} is not a valid IP address or CIDR") from None
        return str(value)

    def _droplet_ids(self, values: Any) -> list[int]:
        if values is None:
            return []
        if not isinstance(values, list):
            raise unprocessable("droplet_ids must be a list of integers")
        ids = []
        for value in values:
            try:
                droplet_id = int(value)
            except (TypeError, ValueError):
                raise unprocessable(f"droplet id {value!r} is not an integer") from None
            if str(droplet_id) not in self.state.droplets:
                raise unprocessable(f"droplet {droplet_id} was not found")
            ids.append(droplet_id)
        return list(dict.fromkeys(ids))

    def _pending(self, firewall: dict[str, Any]) -> None:
        firewall["status"] = "waiting"
        firewall["pending_changes"] = [
            {"droplet_id": d, "removing": False, "status": "waiting"}
            for d in sorted(self.state.firewall_members(firewall))]

    def create_firewall(self, request: Request) -> Response:
        body = request.json_object()
        with self.state.lock:
            fields = self._firewall_fields(body)
            self.state.ensure_tags(fields["tags"])
            firewall_id = new_uuid()
            firewall = {"id": firewall_id, "status": "waiting", "created_at": now(),
                        "pending_changes": [], **fields}
            self._pending(firewall)
            self.state.firewalls[firewall_id] = firewall
            self.state.save()
            answer = self.state.copy(firewall)
            members = self.state.firewall_members(firewall)
        self.twin.apply_firewalls(members, firewall_id)
        return Response(202, {"firewall": answer})

    def update_firewall(self, request: Request) -> Response:
        body = request.json_object()
        with self.state.lock:
            firewall = self._firewall(request)
            before = self.state.firewall_members(firewall)
            fields = self._firewall_fields(body)
            self.state.ensure_tags(fields["tags"])
            firewall.update(fields)
            self._pending(firewall)
            self.state.save()
            answer = self.state.copy(firewall)
            after = self.state.firewall_members(firewall)
        self.twin.apply_firewalls(before | after, firewall["id"])
        return Response(200, {"firewall": answer})

    def delete_firewall(self, request: Request) -> Response:
        with self.state.lock:
            firewall = self._firewall(request)
            members = self.state.firewall_members(firewall)
            del self.state.firewalls[firewall["id"]]
            self.state.save()
        self.twin.apply_firewalls(members)
        return Response(204)

    def firewall_droplets(self, request: Request) -> Response:
        body = request.json_object()
        with self.state.lock:
            firewall = self._firewall(request)
            if not body.get("droplet_ids"):
                raise unprocessable("droplet_ids is required")
            ids = self._droplet_ids(body.get("droplet_ids"))
            before = self.state.firewall_members(firewall)
            if request.method == "POST":
                firewall["droplet_ids"] = list(dict.fromkeys(firewall["droplet_ids"] + ids))
            else:
                firewall["droplet_ids"] = [i for i in firewall["droplet_ids"] if i not in ids]
            self._pending(firewall)
            self.state.save()
            after = self.state.firewall_members(firewall)
        self.twin.apply_firewalls(before | after, firewall["id"])
        return Response(204)

    def firewall_tags(self, request: Request) -> Response:
        body = request.json_object()
        with self.state.lock:
            firewall = self._firewall(request)
            tags = tag_names(body.get("tags"))
            if not tags:
                raise unprocessable("tags is required")
            before = self.state.firewall_members(firewall)
            if request.method == "POST":
                self.state.ensure_tags(tags)
                firewall["tags"] = list(dict.fromkeys(firewall["tags"] + tags))
            else:
                firewall["tags"] = [t for t in firewall["tags"] if t not in tags]
            self._pending(firewall)
            self.state.save()
            after = self.state.firewall_members(firewall)
        self.twin.apply_firewalls(before | after, firewall["id"])
        return Response(204)

    def firewall_rules(self, request: Request) -> Response:
        body = request.json_object()
        with self.state.lock:
            firewall = self._firewall(request)
            inbound = self._rules(body.get("inbound_rules"), "sources")
            outbound = self._rules(body.get("outbound_rules"), "destinations")
            if not inbound and not outbound:
                raise unprocessable("inbound_rules or outbound_rules is required")
            for key, rules in (("inbound_rules", inbound), ("outbound_rules", outbound)):
                if request.method == "POST":
                    firewall[key] = firewall[key] + [r for r in rules if r not in firewall[key]]
                else:
                    firewall[key] = [r for r in firewall[key] if r not in rules]
            self._pending(firewall)
            self.state.save()
            members = self.state.firewall_members(firewall)
        self.twin.apply_firewalls(members, firewall["id"])
        return Response(204)
