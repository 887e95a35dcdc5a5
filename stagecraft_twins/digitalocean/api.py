"""The endpoints of the twin that need no machine work: account, catalogue, ssh keys,
VPCs and tags; and what every endpoint shares (requests, responses,
pagination, the ``Twin`` the handlers work on).

Handlers take a ``Request`` and return a ``Response`` or raise ``ApiError``; they
validate as DigitalOcean does (422 ``unprocessable_entity`` for a bad body, 404
``not_found``) and ignore keys they do not know, as the real API does.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import hashlib
import ipaddress
import math
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable

from stagecraft_twins.digitalocean.catalog import Catalog
from stagecraft_twins.digitalocean.machines import MachineError, Machines
from stagecraft_twins.digitalocean.state import (ApiError, State, new_uuid, not_found, now,
                                                 unprocessable)

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 200
TAG_NAME = re.compile(r"^[a-zA-Z0-9_\-:]+$")
VPC_NAME = re.compile(r"^[a-zA-Z0-9\-.]+$")


@dataclass
class Request:
    """One API request: its path parameters are filled in by the router."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    base_url: str
    params: dict[str, str] = field(default_factory=dict)

    def arg(self, name: str) -> str | None:
        """The first value of a query parameter, or None."""
        values = self.query.get(name)
        return values[0] if values else None

    def json_object(self) -> dict[str, Any]:
        """The body as an object (an absent body counts as an empty one)."""
        if self.body is None:
            return {}
        if not isinstance(self.body, dict):
            raise ApiError(400, "bad_request", "error parsing request body")
        return self.body


@dataclass
class Response:
    """What a handler answers: a status and a JSON body (None: no body)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def paginate(request: Request, key: str, items: list[Any]) -> Response:
    """One page of ``items`` under ``key`` with ``links.pages`` and ``meta.total``."""
    per_page = _int_arg(request, "per_page", DEFAULT_PER_PAGE)
    per_page = min(max(per_page, 1), MAX_PER_PAGE)
    page = max(_int_arg(request, "page", 1), 1)
    total = len(items)
    last = max(1, math.ceil(total / per_page))
    chunk = items[(page - 1) * per_page: page * per_page]
    pages: dict[str, str] = {}
    if page > 1:
        pages["first"] = _page_url(request, 1, per_page)
        pages["prev"] = _page_url(request, min(page - 1, last), per_page)
    if page < last:
        pages["next"] = _page_url(request, page + 1, per_page)
        pages["last"] = _page_url(request, last, per_page)
    links = {"pages": pages} if pages else {}
    return Response(200, {key: chunk, "links": links, "meta": {"total": total}})


def _int_arg(request: Request, name: str, default: int) -> int:
    value = request.arg(name)
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def _page_url(request: Request, page: int, per_page: int) -> str:
    query = [(k, v) for k, values in request.query.items() if k not in ("page", "per_page")
             for v in values]
    query += [("page", str(page)), ("per_page", str(per_page))]
    return f"{request.base_url}{request.path}?{urllib.parse.urlencode(query)}"


def key_fingerprint(public_key: str) -> str:
    """MD5 of the key blob in colon hex, as DigitalOcean computes it (422 if unreadable)."""
    parts = public_key.split()
    if len(parts) < 2:
        raise unprocessable("Key invalid, key should be of the form 'type key [comment]'")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise unprocessable("Key invalid, key should be of the form 'type key [comment]'") from None
    digest = hashlib.md5(blob).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def tag_names(value: Any, what: str = "tags") -> list[str]:
    """A validated list of tag names (None counts as none)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise unprocessable(f"{what} must be a list of strings")
    for name in value:
        if not TAG_NAME.match(name) or len(name) > 255:
            raise unprocessable(f"tag name {name!r} contains invalid characters: use letters, "
                                "numbers, colons, dashes and underscores (at most 255)")
    return list(dict.fromkeys(value))


class Twin:
    """What the handlers work on: the state, the catalogue and the machines, plus the
    worker threads that do slow machine work off the request threads."""

    def __init__(self, state: State, catalog: Catalog, machines: Machines) -> None:
        self.state = state
        self.catalog = catalog
        self.machines = machines
        # Firewall changes are applied in order, one at a time.
        self.firewall_worker = concurrent.futures.ThreadPoolExecutor(1, "twin-firewalls")
        # The droplet_stuck faults still to take: seconds each next droplet stays
        # ``new`` (math.inf: until it is deleted).
        self.stuck_faults: list[float] = []
        self.fault_lock = threading.Lock()

    def in_background(self, work: Callable[..., None], *args: Any) -> None:
        """Run ``work`` on a worker thread of its own."""
        threading.Thread(target=work, args=args, daemon=True, name="twin-worker").start()

    def add_stuck_faults(self, times: int, seconds: float = math.inf) -> None:
        """The next ``times`` droplets stay ``new`` for ``seconds`` after they are
        created (the droplet_stuck fault; math.inf: until they are deleted)."""
        with self.fault_lock:
            self.stuck_faults += [seconds] * times

    def take_stuck_fault(self) -> float | None:
        """How long the next droplet must stay ``new`` (the droplet_stuck fault), in
        seconds from its creation (math.inf: until it is deleted); None: not held."""
        with self.fault_lock:
            return self.stuck_faults.pop(0) if self.stuck_faults else None

    def ensure_default_vpcs(self) -> None:
        """Every available region has a default VPC, as on DigitalOcean."""
        with self.state.lock:
            for region in self.catalog.available_regions:
                if self.state.default_vpc(region) is None:
                    taken = [v["ip_range"] for v in self.state.vpcs.values()]
                    ip_range = self.machines.vpc_range(None, taken)
                    vpc_id = new_uuid()
                    self.state.vpcs[vpc_id] = {
                        "id": vpc_id, "urn": f"do:vpc:{vpc_id}", "name": f"default-{region}",
                        "description": "", "region": region, "ip_range": ip_range,
                        "default": True, "created_at": now()}
            self.state.save()

    def apply_firewalls(self, droplet_ids: set[int], firewall_id: str | None = None) -> None:
        """Make the machines of these droplets enforce their firewalls (in the background);
        then the firewall ``firewall_id`` is ``succeeded`` (or ``failed``)."""
        self.firewall_worker.submit(self._apply_firewalls, set(droplet_ids), firewall_id)

    def _apply_firewalls(self, droplet_ids: set[int], firewall_id: str | None) -> None:
        succeeded = True
        for droplet_id in sorted(droplet_ids):
            with self.state.lock:
                if str(droplet_id) not in self.state.droplets:
                    continue
                rules = self.state.firewall_rules_for(droplet_id)
            try:
                self.machines.apply_firewall(droplet_id, rules)
            except MachineError:
                succeeded = False
        with self.state.lock:
            firewall = self.state.firewalls.get(firewall_id or "")
            if firewall is not None:
                firewall["status"] = "succeeded" if succeeded else "failed"
                firewall["pending_changes"] = []
                self.state.save()


class ResourcesApi:
    """Account, catalogue, ssh keys, VPCs and tags."""

    def __init__(self, twin: Twin) -> None:
        self.twin = twin
        self.state = twin.state
        self.catalog = twin.catalog

    def routes(self) -> list[tuple[str, str, Callable[[Request], Response]]]:
        return [
            ("GET", "/v2/account", self.get_account),
            ("GET", "/v2/regions", lambda r: paginate(r, "regions", self.catalog.regions())),
            ("GET", "/v2/sizes", lambda r: paginate(r, "sizes", self.catalog.sizes())),
            ("GET", "/v2/images", self.list_images),
            ("GET", "/v2/images/{image_id}", self.get_image),
            ("GET", "/v2/snapshots", lambda r: paginate(r, "snapshots", [])),
            ("GET", "/v2/account/keys", self.list_keys),
            ("POST", "/v2/account/keys", self.create_key),
            ("GET", "/v2/account/keys/{ssh_key_identifier}", self.get_key),
            ("PUT", "/v2/account/keys/{ssh_key_identifier}", self.update_key),
            ("DELETE", "/v2/account/keys/{ssh_key_identifier}", self.delete_key),
            ("GET", "/v2/vpcs", self.list_vpcs),
            ("POST", "/v2/vpcs", self.create_vpc),
            ("GET", "/v2/vpcs/{vpc_id}", self.get_vpc),
            ("PUT", "/v2/vpcs/{vpc_id}", self.update_vpc),
            ("PATCH", "/v2/vpcs/{vpc_id}", self.update_vpc),
            ("DELETE", "/v2/vpcs/{vpc_id}", self.delete_vpc),
            ("GET", "/v2/vpcs/{vpc_id}/members", self.list_vpc_members),
            ("GET", "/v2/tags", self.list_tags),
            ("POST", "/v2/tags", self.create_tag),
            ("GET", "/v2/tags/{tag_id}", self.get_tag),
            ("DELETE", "/v2/tags/{tag_id}", self.delete_tag),
            ("POST", "/v2/tags/{tag_id}/resources", self.tag_resources),
            ("DELETE", "/v2/tags/{tag_id}/resources", self.untag_resources),
        ]

    # ---- account and catalogue ---------------------------------------------------

    def get_account(self, request: Request) -> Response:
        return Response(200, {"account": self.state.copy(self.state.account)})

    def list_images(self, request: Request) -> Response:
        images = self.catalog.images()
        image_type = request.arg("type")
        if request.arg("private") == "true" or image_type == "application":
            images = []  # the twin has no private or 1-click images
        elif image_type not in (None, "", "distribution"):
            images = []
        return paginate(request, "images", images)

    def get_image(self, request: Request) -> Response:
        image = self.catalog.image(request.params["image_id"])
        if image is None:
            raise not_found()
        return Response(200, {"image": image})

    # ---- ssh keys ---------------------------------------------------------------

    def list_keys(self, request: Request) -> Response:
        return paginate(request, "ssh_keys", self.state.copy(list(self.state.keys.values())))

    def create_key(self, request: Request) -> Response:
        body = request.json_object()
        name, public_key = body.get("name"), body.get("public_key")
        if not isinstance(name, str) or not name.strip():
            raise unprocessable("Name is required")
        if not isinstance(public_key, str) or not public_key.strip():
            raise unprocessable("Public Key is required")
        fingerprint = key_fingerprint(public_key)
        with self.state.lock:
            if self.state.key(fingerprint) is not None:
                raise unprocessable("SSH Key is already in use on your account")
            key = {"id": self.state.next_id("key"), "fingerprint": fingerprint,
                   "public_key": public_key.strip(), "name": name}
            self.state.keys[str(key["id"])] = key
            self.state.save()
            return Response(201, {"ssh_key": dict(key)})

    def _key(self, request: Request) -> dict[str, Any]:
        key = self.state.key(request.params["ssh_key_identifier"])
        if key is None:
            raise not_found()
        return key

    def get_key(self, request: Request) -> Response:
        with self.state.lock:
            return Response(200, {"ssh_key": dict(self._key(request))})

    def update_key(self, request: Request) -> Response:
        body = request.json_object()
        with self.state.lock:
            key = self._key(request)
            if "name" in body:
                if not isinstance(body["name"], str) or not body["name"].strip():
                    raise unprocessable("Name is required")
                key["name"] = body["name"]
                self.state.save()
            return Response(200, {"ssh_key": dict(key)})

    def delete_key(self, request: Request) -> Response:
        with self.state.lock:
            key = self._key(request)
            del self.state.keys[str(key["id"])]
            self.state.save()
        return Response(204)

    # ---- VPCs -------------------------------------------------------------------

    def list_vpcs(self, request: Request) -> Response:
        return paginate(request, "vpcs", self.state.copy(list(self.state.vpcs.values())))

    def _vpc(self, request: Request) -> dict[str, Any]:
        vpc = self.state.vpcs.get(request.params["vpc_id"])
        if vpc is None:
            raise not_found()
        return vpc

    def get_vpc(self, request: Request) -> Response:
        with self.state.lock:
            return Response(200, {"vpc": dict(self._vpc(request))})

    def create_vpc(self, request: Request) -> Response:
        body = request.json_object()
        name, region, ip_range = body.get("name"), body.get("region"), body.get("ip_range")
        self._check_vpc_fields(body)
        if not isinstance(name, str) or not name:
            raise unprocessable("name is required")
        if not self.catalog.is_available(region):
            raise unprocessable("region is not a valid region")
        if ip_range is not None:
            ip_range = self._check_ip_range(ip_range)
        with self.state.lock:
            if any(v["name"] == name for v in self.state.vpcs.values()):
                raise unprocessable("name: a VPC with this name already exists")
            taken = [v["ip_range"] for v in self.state.vpcs.values()]
            if ip_range and any(ipaddress.ip_network(ip_range).overlaps(ipaddress.ip_network(t))
                                for t in taken):
                raise unprocessable(f"ip_range {ip_range} overlaps with an existing VPC")
            try:
                ip_range = self.twin.machines.vpc_range(ip_range, taken)
            except MachineError as error:
                raise unprocessable(f"ip_range: {error}") from None
            vpc_id = new_uuid()
            vpc = {"id": vpc_id, "urn": f"do:vpc:{vpc_id}", "name": name,
                   "description": body.get("description") or "", "region": region,
                   "ip_range": ip_range, "default": False, "created_at": now()}
            self.state.vpcs[vpc_id] = vpc
            self.state.save()
            return Response(201, {"vpc": dict(vpc)})

    @staticmethod
    def _check_vpc_fields(body: dict[str, Any]) -> None:
        name = body.get("name")
        if name is not None and (not isinstance(name, str) or not VPC_NAME.match(name)
                                 or len(name) > 255):
            raise unprocessable("name must contain only letters, numbers, dashes and periods")
        description = body.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 255):
            raise unprocessable("description must be a string of at most 255 characters")
        if "default" in body and not isinstance(body["default"], bool):
            raise unprocessable("default must be a boolean")

    @staticmethod
    def _check_ip_range(value: Any) -> str:
        try:
            network = ipaddress.ip_network(value, strict=True)
        except (TypeError, ValueError):
            raise unprocessable(f"ip_range {value!r} is not a valid IPv4 CIDR block") from None
        if network.version != 4 or not network.is_private:
            raise unprocessable("ip_range must be a private IPv4 range (RFC 1918)")
        if not 16 <= network.prefixlen <= 24:
            raise unprocessable("ip_range must be between /16 and /24")
        return str(network)

    def update_vpc(self, request: Request) -> Response:
        body = request.json_object()
        self._check_vpc_fields(body)
        with self.state.lock:
            vpc = self._vpc(request)
            if request.method == "PUT" and not body.get("name"):
                raise unprocessable("name is required")
            if "name" in body and body["name"] != vpc["name"]:
                if any(v["name"] == body["name"] for v in self.state.vpcs.values()):
                    raise unprocessable("name: a VPC with this name already exists")
                vpc["name"] = body["name"]
            if body.get("description") is not None:
                vpc["description"] = body["description"]
            if body.get("default") is True and not vpc["default"]:
                for other in self.state.vpcs.values():
                    if other["region"] == vpc["region"]:
                        other["default"] = False
                vpc["default"] = True
            self.state.save()
            return Response(200, {"vpc": dict(vpc)})

    def delete_vpc(self, request: Request) -> Response:
        with self.state.lock:
            vpc = self._vpc(request)
            if vpc["default"]:
                raise ApiError(403, "forbidden", "Cannot delete the default VPC of a region")
            if self.state.vpc_members(vpc["id"]):
                raise ApiError(403, "forbidden", "Can not delete VPC with members")
            del self.state.vpcs[vpc["id"]]
            self.state.save()
        return Response(204)

    def list_vpc_members(self, request: Request) -> Response:
        with self.state.lock:
            vpc = self._vpc(request)
            members = self.state.vpc_members(vpc["id"])
        resource_type = request.arg("resource_type")
        if resource_type not in (None, "", "droplet"):
            members = []
        return paginate(request, "members", members)

    # ---- tags -------------------------------------------------------------------

    def list_tags(self, request: Request) -> Response:
        with self.state.lock:
            tags = [self.state.tag_object(name, request.base_url) for name in self.state.tags]
        return paginate(request, "tags", tags)

    def create_tag(self, request: Request) -> Response:
        body = request.json_object()
        if not isinstance(body.get("name"), str) or not body["name"]:
            raise unprocessable("name is required")
        name = tag_names([body["name"]])[0]
        with self.state.lock:
            self.state.ensure_tags([name])
            self.state.save()
            return Response(201, {"tag": self.state.tag_object(name, request.base_url)})

    def _tag_name(self, request: Request) -> str:
        name = urllib.parse.unquote(request.params["tag_id"])
        if name not in self.state.tags:
            raise not_found()
        return name

    def get_tag(self, request: Request) -> Response:
        with self.state.lock:
            name = self._tag_name(request)
            return Response(200, {"tag": self.state.tag_object(name, request.base_url)})

    def delete_tag(self, request: Request) -> Response:
        with self.state.lock:
            name = self._tag_name(request)
            affected = {d["id"] for d in self.state.droplets.values() if name in d["tags"]}
            for droplet in self.state.droplets.values():
                droplet["tags"] = [t for t in droplet["tags"] if t != name]
            for volume in self.state.volumes.values():
                volume["tags"] = [t for t in volume["tags"] or [] if t != name]
            for firewall in self.state.firewalls.values():
                firewall["tags"] = [t for t in firewall["tags"] if t != name]
            del self.state.tags[name]
            self.state.save()
        if affected:
            self.twin.apply_firewalls(affected)
        return Response(204)

    def tag_resources(self, request: Request) -> Response:
        return self._change_tagging(request, add=True)

    def untag_resources(self, request: Request) -> Response:
        return self._change_tagging(request, add=False)

    def _change_tagging(self, request: Request, add: bool) -> Response:
        body = request.json_object()
        resources = body.get("resources")
        if not isinstance(resources, list) or not resources:
            raise unprocessable("resources is required")
        with self.state.lock:
            name = self._tag_name(request)
            targets: list[dict[str, Any]] = []
            for resource in resources:
                if not isinstance(resource, dict):
                    raise unprocessable("resources must be a list of objects")
                kind, ident = resource.get("resource_type"), str(resource.get("resource_id", ""))
                if kind == "droplet":
                    targets.append(self.state.droplet(ident))
                elif kind == "volume":
                    volume = self.state.volumes.get(ident)
                    if volume is None:
                        raise not_found()
                    targets.append(volume)
                elif kind in ("image", "volume_snapshot"):
                    raise not_found()  # the twin has no private images or snapshots
                else:
                    raise unprocessable(f"resource_type {kind!r} is not valid")
            affected: set[int] = set()
            for target in targets:
                tags = list(target.get("tags") or [])
                if add and name not in tags:
                    tags.append(name)
                elif not add and name in tags:
                    tags.remove(name)
                else:
                    continue
                target["tags"] = tags
                if "vcpus" in target:
                    affected.add(target["id"])
            self.state.save()
        if affected:
            self.twin.apply_firewalls(affected)
        return Response(204)
