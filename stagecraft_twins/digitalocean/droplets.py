"""The endpoints of droplets, their actions and the account's actions.

Requests validate and record the change; the machine work runs on worker threads and
shows through statuses: a droplet is ``new`` until ``machines.ready()`` says it has
booted, then ``active``; an action is ``in-progress`` until its machine work is done,
then ``completed`` (or ``errored`` when the machine raised ``MachineError``).
"""

from __future__ import annotations

import copy
import ipaddress
import math
import re
import time
from typing import Any, Callable

from stagecraft_twins.digitalocean.api import Request, Response, Twin, paginate, tag_names
from stagecraft_twins.digitalocean.machines import Addresses, MachineError
from stagecraft_twins.digitalocean.state import not_found, now, unprocessable

DROPLET_NAME = re.compile(r"^[a-zA-Z0-9]?[a-z0-9A-Z.\-]*[a-z0-9A-Z]$")
READY_POLL_SECONDS = 0.5
MACHINE_ACTIONS = ("power_off", "shutdown", "power_on", "reboot", "power_cycle", "resize",
                   "rename", "enable_backups", "disable_backups")
UNSUPPORTED_ACTIONS = ("restore", "password_reset", "rebuild", "change_kernel", "enable_ipv6",
                       "snapshot")


class ComputeApi:
    """Droplets, droplet actions and actions."""

    def __init__(self, twin: Twin) -> None:
        self.twin = twin
        self.state = twin.state
        self.catalog = twin.catalog
        self.machines = twin.machines

    def routes(self) -> list[tuple[str, str, Callable[[Request], Response]]]:
        return [
            ("GET", "/v2/droplets", self.list_droplets),
            ("POST", "/v2/droplets", self.create_droplets),
            ("DELETE", "/v2/droplets", self.delete_droplets_by_tag),
            ("GET", "/v2/droplets/{droplet_id}", self.get_droplet),
            ("DELETE", "/v2/droplets/{droplet_id}", self.delete_droplet),
            ("GET", "/v2/droplets/{droplet_id}/actions", self.list_droplet_actions),
            ("POST", "/v2/droplets/{droplet_id}/actions", self.post_droplet_action),
            ("GET", "/v2/droplets/{droplet_id}/actions/{action_id}", self.get_droplet_action),
            ("GET", "/v2/droplets/{droplet_id}/neighbors", self.list_neighbors),
            ("GET", "/v2/reports/droplet_neighbors_ids",
             lambda r: Response(200, {"neighbor_ids": []})),
            ("GET", "/v2/actions", self.list_actions),
            ("GET", "/v2/actions/{action_id}", self.get_action),
        ]

    # ---- droplets ---------------------------------------------------------------

    def list_droplets(self, request: Request) -> Response:
        tag, name = request.arg("tag_name"), request.arg("name")
        with self.state.lock:
            droplets = [d for d in self.state.droplets.values()
                        if (not tag or tag in d["tags"]) and (not name or d["name"] == name)]
            return paginate(request, "droplets", copy.deepcopy(droplets))

    def get_droplet(self, request: Request) -> Response:
        with self.state.lock:
            return Response(200, {"droplet": copy.deepcopy(
                self.state.droplet(request.params["droplet_id"]))})

    def create_droplets(self, request: Request) -> Response:
        body = request.json_object()
        names = self._names(body)
        size = self.catalog.size(body.get("size"))
        if size is None:
            raise unprocessable("You specified an invalid size for Droplet creation.")
        region_slug = body.get("region") or self.catalog.available_regions[0]
        if not self.catalog.is_available(region_slug):
            raise unprocessable("You specified an invalid region for Droplet creation.")
        image = self.catalog.image(body.get("image"))
        if image is None:
            raise unprocessable("You specified an invalid image for Droplet creation.")
        if image["min_disk_size"] > size["disk"]:
            raise unprocessable("The image requires a larger disk than this size has.")
        tags = tag_names(body.get("tags"))
        with self.state.lock:
            public_keys = self._public_keys(body.get("ssh_keys"))
            vpc = self._droplet_vpc(body.get("vpc_uuid"), region_slug)
            volume_ids = self._free_volumes(body.get("volumes"), region_slug, len(names))
            if len(self.state.droplets) + len(names) > self.state.account["droplet_limit"]:
                raise unprocessable("creating this/these droplet(s) will exceed your droplet limit")
            self.state.ensure_tags(tags)
            region = self.catalog.region(region_slug)
            created: list[tuple[dict[str, Any], dict[str, Any], bool]] = []
            for name in names:
                droplet = self._new_droplet(name, size, image, region, tags, vpc["id"], body)
                droplet["volume_ids"] = list(volume_ids)
                for volume_id in volume_ids:
                    self.state.volumes[volume_id]["droplet_ids"] = [droplet["id"]]
                action = self.state.new_action("create", droplet["id"], "droplet", region)
                held = self.twin.take_stuck_fault()
                stuck = held is not None and math.isinf(held)
                if stuck:
                    self.state.data["stuck_droplets"].append(droplet["id"])
                elif held is not None:
                    self.state.hold_new(droplet["id"], time.time() + held)
                self.state.droplets[str(droplet["id"])] = droplet
                created.append((droplet, action, stuck))
            self.state.save()
            answer_droplets = copy.deepcopy([d for d, _, _ in created])
        for droplet, action, stuck in created:
            self.twin.in_background(self._boot, droplet["id"], action["id"], public_keys,
                                    volume_ids, stuck)
        links = {"actions": [{"id": a["id"], "rel": "create",
                              "href": f"{request.base_url}/v2/actions/{a['id']}"}
                             for _, a, _ in created]}
        if "names" in body:
            return Response(202, {"droplets": answer_droplets, "links": links})
        return Response(202, {"droplet": answer_droplets[0], "links": links})

    @staticmethod
    def _names(body: dict[str, Any]) -> list[str]:
        if "names" in body:
            names = body["names"]
            if not isinstance(names, list) or not names or len(names) > 10:
                raise unprocessable("names must be a list of 1 to 10 names")
        elif body.get("name") in (None, ""):
            raise unprocessable("Name is required.")
        else:
            names = [body["name"]]
        for name in names:
            if not isinstance(name, str) or len(name) > 255 or not DROPLET_NAME.match(name):
                raise unprocessable("Only valid hostname characters are allowed. "
                                    "(a-z, A-Z, 0-9, . and -)")
        return names

    def _public_keys(self, identifiers: Any) -> list[str]:
        if identifiers is None:
            return []
        if not isinstance(identifiers, list):
            raise unprocessable("ssh_keys must be a list of key ids or fingerprints")
        keys = []
        for identifier in identifiers:
            key = self.state.key(identifier)
            if key is None:
                raise unprocessable(f"You specified an invalid SSH key ({identifier}) for "
                                    "Droplet creation.")
            keys.append(key["public_key"])
        return keys

    def _droplet_vpc(self, vpc_uuid: Any, region: str) -> dict[str, Any]:
        if vpc_uuid in (None, ""):
            vpc = self.state.default_vpc(region)
            if vpc is None:
                raise unprocessable(f"There is no default VPC in {region}.")
            return vpc
        vpc = self.state.vpcs.get(str(vpc_uuid))
        if vpc is None or vpc["region"] != region:
            raise unprocessable(f"vpc_uuid: VPC {vpc_uuid} was not found in region {region}.")
        return vpc

    def _free_volumes(self, volume_ids: Any, region: str, count: int) -> list[str]:
        if not volume_ids:
            return []
        if not isinstance(volume_ids, list) or count > 1:
            raise unprocessable("volumes can only be attached when creating a single Droplet")
        for volume_id in volume_ids:
            volume = self.state.volumes.get(str(volume_id))
            if volume is None or volume["region"]["slug"] != region:
                raise unprocessable(f"volume {volume_id} was not found in region {region}")
            if volume["droplet_ids"]:
                raise unprocessable(f"volume {volume_id} is already attached to a Droplet")
        return [str(v) for v in volume_ids]

    def _new_droplet(self, name: str, size: dict[str, Any], image: dict[str, Any],
                     region: dict[str, Any] | None, tags: list[str], vpc_uuid: str,
                     body: dict[str, Any]) -> dict[str, Any]:
        features = ["private_networking"]
        if body.get("backups") is True:
            features.append("backups")
        if body.get("monitoring") is True:
            features.append("monitoring")
        if body.get("with_droplet_agent") is not False:
            features.append("droplet_agent")
        return {
            "id": self.state.next_id("droplet"), "name": name,
            "memory": size["memory"], "vcpus": size["vcpus"], "disk": size["disk"],
            "disk_info": copy.deepcopy(size["disk_info"]), "locked": False, "status": "new",
            "kernel": None, "created_at": now(), "features": features, "backup_ids": [],
            "next_backup_window": None, "snapshot_ids": [], "image": image, "volume_ids": [],
            "size": size, "size_slug": size["slug"], "networks": {"v4": [], "v6": []},
            "region": region, "tags": list(tags), "vpc_uuid": vpc_uuid,
        }

    def _boot(self, droplet_id: int, action_id: int, public_keys: list[str],
              volume_ids: list[str], stuck: bool) -> None:
        """Make the droplet's machine, then wait until it is ready (worker thread)."""
        with self.state.lock:
            droplet = copy.deepcopy(self.state.droplets.get(str(droplet_id)))
            vpc = copy.deepcopy(self.state.vpcs.get(droplet["vpc_uuid"])) if droplet else None
        if droplet is None or vpc is None:
            return
        try:
            addresses = self.machines.create_droplet(
                droplet_id, droplet["name"], vpc_uuid=vpc["id"], vpc_range=vpc["ip_range"],
                public_keys=public_keys, vcpus=droplet["vcpus"], memory_mb=droplet["memory"])
            with self.state.lock:
                volume_names = {v: self.state.volumes[v]["name"] for v in volume_ids
                                if v in self.state.volumes}
            for volume_id, volume_name in volume_names.items():
                self.machines.attach_volume(volume_id, volume_name, droplet_id)
        except MachineError:
            with self.state.lock:
                self.state.finish_action(action_id, succeeded=False)
                self.state.save()
            return
        with self.state.lock:
            current = self.state.droplets.get(str(droplet_id))
            if current is None:
                return
            current["networks"]["v4"] = self._networks(addresses, vpc["ip_range"])
            self.state.save()
            affected = self.twin_firewall_watchers(current)
            if self.state.firewall_rules_for(droplet_id) is not None:
                affected.add(droplet_id)
        if affected:
            self.twin.apply_firewalls(affected)
        if not stuck:
            self._wait_until_ready(droplet_id, action_id)

    def twin_firewall_watchers(self, droplet: dict[str, Any]) -> set[int]:
        """Droplets in a firewall whose inbound sources name this droplet (by id or tag):
        their rules change with its addresses."""
        watchers: set[int] = set()
        for firewall in self.state.firewalls.values():
            for rule in firewall["inbound_rules"]:
                sources = rule["sources"]
                if droplet["id"] in sources.get("droplet_ids", []) or \
                        set(sources.get("tags", [])) & set(droplet["tags"]):
                    watchers |= self.state.firewall_members(firewall)
        watchers.discard(droplet["id"])
        return watchers

    @staticmethod
    def _networks(addresses: Addresses, vpc_range: str) -> list[dict[str, Any]]:
        private_gateway = str(ipaddress.ip_network(vpc_range).network_address + 1)
        return [
            {"ip_address": addresses.public_ipv4, "netmask": addresses.public_netmask,
             "gateway": addresses.public_gateway, "type": "public"},
            {"ip_address": addresses.private_ipv4, "netmask": addresses.private_netmask,
             "gateway": private_gateway, "type": "private"},
        ]

    def _wait_until_ready(self, droplet_id: int, action_id: int) -> None:
        """Poll the machine every half second; ``active`` (and the create action
        completed) once it has booted and a timed droplet_stuck fault no longer holds
        it. Gives up only when the droplet is deleted."""
        while True:
            with self.state.lock:
                if str(droplet_id) not in self.state.droplets:
                    return
                held = time.time() < self.state.held_new_until(droplet_id)
            try:
                ready = not held and self.machines.ready(droplet_id)
            except MachineError:
                ready = False
            if ready:
                with self.state.lock:
                    droplet = self.state.droplets.get(str(droplet_id))
                    self.state.hold_new(droplet_id, None)
                    if droplet is not None:
                        droplet["status"] = "active"
                    self.state.finish_action(action_id, succeeded=True)
                    self.state.save()
                return
            time.sleep(READY_POLL_SECONDS)

    def resume_after_restart(self) -> None:
        """Finish what a stopped twin left half done: droplets still booting are watched
        again; other actions that were running are ``errored`` (their work was lost)."""
        with self.state.lock:
            booting: list[tuple[int, int]] = []
            for action in self.state.actions.values():
                if action["status"] != "in-progress":
                    continue
                droplet = self.state.droplets.get(str(action["resource_id"]))
                if (action["type"] == "create" and droplet is not None
                        and droplet["networks"]["v4"]):
                    if droplet["id"] not in self.state.data["stuck_droplets"]:
                        booting.append((droplet["id"], action["id"]))
                else:
                    self.state.finish_action(action["id"], succeeded=False)
            for firewall in self.state.firewalls.values():
                if firewall["status"] == "waiting":
                    self.twin.apply_firewalls(self.state.firewall_members(firewall),
                                              firewall["id"])
            self.state.save()
        for droplet_id, action_id in booting:
            self.twin.in_background(self._wait_until_ready, droplet_id, action_id)

    def delete_droplet(self, request: Request) -> Response:
        with self.state.lock:
            droplet = self.state.droplet(request.params["droplet_id"])
            self._forget_droplet(droplet)
            self.state.save()
        return Response(204)

    def delete_droplets_by_tag(self, request: Request) -> Response:
        tag = request.arg("tag_name")
        if not tag:
            raise unprocessable("tag_name is required")
        with self.state.lock:
            for droplet in [d for d in self.state.droplets.values() if tag in d["tags"]]:
                self._forget_droplet(droplet)
            self.state.save()
        return Response(204)

    def _forget_droplet(self, droplet: dict[str, Any]) -> None:
        """Remove the droplet from the state now and its machine in the background."""
        watchers = self.twin_firewall_watchers(droplet)
        self.state.remove_droplet(droplet["id"])
        self.twin.in_background(self._delete_machine, droplet["id"])
        if watchers:
            self.twin.apply_firewalls(watchers)

    def _delete_machine(self, droplet_id: int) -> None:
        try:
            self.machines.delete_droplet(droplet_id)
        except MachineError:
            pass  # the droplet is gone from the API; `stop` removes what is left

    def list_neighbors(self, request: Request) -> Response:
        with self.state.lock:
            self.state.droplet(request.params["droplet_id"])
        return Response(200, {"droplets": []})  # every twin droplet counts as its own host

    # ---- droplet actions ----------------------------------------------------------

    def list_droplet_actions(self, request: Request) -> Response:
        with self.state.lock:
            droplet = self.state.droplet(request.params["droplet_id"])
            actions = [a for a in reversed(self.state.actions.values())
                       if a["resource_type"] == "droplet" and a["resource_id"] == droplet["id"]]
            return paginate(request, "actions", copy.deepcopy(actions))

    def get_droplet_action(self, request: Request) -> Response:
        with self.state.lock:
            droplet = self.state.droplet(request.params["droplet_id"])
            action = self.state.actions.get(request.params["action_id"])
            if action is None or action["resource_id"] != droplet["id"]:
                raise not_found()
            return Response(200, {"action": copy.deepcopy(action)})

    def post_droplet_action(self, request: Request) -> Response:
        body = request.json_object()
        action_type = body.get("type")
        if action_type in UNSUPPORTED_ACTIONS:
            raise unprocessable(f"The twin does not support the {action_type} action.")
        if action_type not in MACHINE_ACTIONS:
            raise unprocessable(f"{action_type!r} is not a valid droplet action type")
        with self.state.lock:
            droplet = self.state.droplet(request.params["droplet_id"])
            droplet_id = droplet["id"]
            if droplet["status"] == "new":
                raise unprocessable("The Droplet is still being created; try again when it is active.")
            work, done = self._action_work(action_type, droplet, body)
            action = self.state.new_action(action_type, droplet_id, "droplet", droplet["region"])
            self.state.save()
            answer = copy.deepcopy(action)
        self.twin.in_background(self._run_action, action["id"], work, done)
        return Response(201, {"action": answer})

    def _action_work(self, action_type: str, droplet: dict[str, Any], body: dict[str, Any]
                     ) -> tuple[Callable[[], None], Callable[[dict[str, Any]], None]]:
        """What the machine does for the action, and the change to the droplet after."""
        droplet_id, status = droplet["id"], droplet["status"]
        nothing: Callable[[], None] = lambda: None

        def set_status(value: str) -> Callable[[dict[str, Any]], None]:
            return lambda d: d.update(status=value)

        if action_type in ("power_off", "shutdown"):
            work = nothing if status == "off" else lambda: self.machines.power_off(droplet_id)
            return work, set_status("off")
        if action_type == "power_on":
            work = nothing if status == "active" else lambda: self.machines.power_on(droplet_id)
            return work, set_status("active")
        if action_type in ("reboot", "power_cycle"):
            def restart() -> None:
                if status != "off":
                    self.machines.power_off(droplet_id)
                self.machines.power_on(droplet_id)
            return restart, set_status("active")
        if action_type == "resize":
            return self._resize_work(droplet, body)
        if action_type == "rename":
            name = body.get("name")
            if not isinstance(name, str) or len(name) > 255 or not DROPLET_NAME.match(name):
                raise unprocessable("Only valid hostname characters are allowed. "
                                    "(a-z, A-Z, 0-9, . and -)")
            return nothing, lambda d: d.update(name=name)
        enable = action_type == "enable_backups"

        def backups(d: dict[str, Any]) -> None:
            d["features"] = [f for f in d["features"] if f != "backups"] + (["backups"] if enable else [])
        return nothing, backups

    def _resize_work(self, droplet: dict[str, Any], body: dict[str, Any]
                     ) -> tuple[Callable[[], None], Callable[[dict[str, Any]], None]]:
        size = self.catalog.size(body.get("size"))
        if size is None:
            raise unprocessable("You specified an invalid size for Droplet resize.")
        if droplet["status"] != "off":
            raise unprocessable("Droplet must be powered off before it can be resized.")
        grow_disk = body.get("disk") is True
        if size["disk"] < droplet["disk"]:
            raise unprocessable("This size is not available because it has a smaller disk.")

        def work() -> None:
            self.machines.resize(droplet["id"], vcpus=size["vcpus"], memory_mb=size["memory"])

        def done(d: dict[str, Any]) -> None:
            d.update(size=size, size_slug=size["slug"], memory=size["memory"], vcpus=size["vcpus"])
            if grow_disk:
                d.update(disk=size["disk"], disk_info=copy.deepcopy(size["disk_info"]))
        return work, done

    def _run_action(self, action_id: int, work: Callable[[], None],
                    done: Callable[[dict[str, Any]], None]) -> None:
        """Do an action's machine work, then record its outcome (worker thread)."""
        try:
            work()
            succeeded = True
        except MachineError:
            succeeded = False
        with self.state.lock:
            action = self.state.actions[str(action_id)]
            if succeeded:
                target = (self.state.droplets.get(str(action["resource_id"]))
                          if action["resource_type"] == "droplet" else None)
                if target is not None or action["resource_type"] != "droplet":
                    done(target or {})
            self.state.finish_action(action_id, succeeded)
            self.state.save()

    # ---- actions ----------------------------------------------------------------

    def list_actions(self, request: Request) -> Response:
        with self.state.lock:
            return paginate(request, "actions",
                            copy.deepcopy(list(reversed(self.state.actions.values()))))

    def get_action(self, request: Request) -> Response:
        with self.state.lock:
            action = self.state.actions.get(request.params["action_id"])
            if action is None:
                raise not_found()
            return Response(200, {"action": copy.deepcopy(action)})
