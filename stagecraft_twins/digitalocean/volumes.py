"""The volume endpoints of the twin: block storage made, attached, resized, detached and
removed by its machines.

An attach or detach takes effect in the state at once (so two requests cannot both
attach a volume) and is undone if the machine fails; a resize takes effect when the
machine has grown the volume. Actions are ``attach_volume``, ``detach_volume`` and
``resize_volume``, of resource type ``volume``.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Callable

from stagecraft_twins.digitalocean.api import Request, Response, Twin, paginate, tag_names
from stagecraft_twins.digitalocean.machines import MachineError
from stagecraft_twins.digitalocean.state import ApiError, new_uuid, not_found, now, unprocessable

VOLUME_NAME = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
MAX_VOLUME_GB = 16384


class VolumesApi:
    """Volumes and volume actions."""

    def __init__(self, twin: Twin) -> None:
        self.twin = twin
        self.state = twin.state
        self.catalog = twin.catalog
        self.machines = twin.machines

    def routes(self) -> list[tuple[str, str, Callable[[Request], Response]]]:
        return [
            ("GET", "/v2/volumes", self.list_volumes),
            ("POST", "/v2/volumes", self.create_volume),
            ("DELETE", "/v2/volumes", self.delete_volume_by_name),
            ("POST", "/v2/volumes/actions", self.post_volume_action_by_name),
            ("GET", "/v2/volumes/{volume_id}", self.get_volume),
            ("DELETE", "/v2/volumes/{volume_id}", self.delete_volume),
            ("GET", "/v2/volumes/{volume_id}/actions", self.list_volume_actions),
            ("POST", "/v2/volumes/{volume_id}/actions", self.post_volume_action),
            ("GET", "/v2/volumes/{volume_id}/actions/{action_id}", self.get_volume_action),
        ]


    def list_volumes(self, request: Request) -> Response:
        name, region = request.arg("name"), request.arg("region")
        with self.state.lock:
            volumes = [v for v in self.state.volumes.values()
                       if (not name or v["name"] == name)
                       and (not region or v["region"]["slug"] == region)]
            return paginate(request, "volumes", copy.deepcopy(volumes))

    def _volume(self, request: Request) -> dict[str, Any]:
        volume = self.state.volumes.get(request.params["volume_id"])
        if volume is None:
            raise not_found()
        return volume

    def get_volume(self, request: Request) -> Response:
        with self.state.lock:
            return Response(200, {"volume": copy.deepcopy(self._volume(request))})

    def create_volume(self, request: Request) -> Response:
        body = request.json_object()
        name, size_gb, region = body.get("name"), body.get("size_gigabytes"), body.get("region")
        if body.get("snapshot_id"):
            raise unprocessable("snapshot_id: the snapshot was not found")
        if not isinstance(name, str) or not VOLUME_NAME.match(name):
            raise unprocessable("name: must be lowercase, begin with a letter and contain only "
                                "letters, numbers and '-', up to 64 characters")
        if not isinstance(size_gb, int) or isinstance(size_gb, bool) or \
                not 1 <= size_gb <= MAX_VOLUME_GB:
            raise unprocessable(f"size_gigabytes: must be between 1 and {MAX_VOLUME_GB}")
        if not self.catalog.is_available(region):
            raise unprocessable("region: You specified an invalid region for volume creation.")
        filesystem_type = body.get("filesystem_type") or ""
        if filesystem_type not in ("", "ext4", "xfs"):
            raise unprocessable("filesystem_type: must be ext4 or xfs")
        label = body.get("filesystem_label") or ""
        if not isinstance(label, str) or len(label) > (12 if filesystem_type == "xfs" else 16):
            raise unprocessable("filesystem_label: too long for the filesystem type")
        description = body.get("description") or ""
        if not isinstance(description, str):
            raise unprocessable("description must be a string")
        tags = tag_names(body.get("tags"))
        with self.state.lock:
            if self.state.volume_by_name(name, region) is not None:
                raise ApiError(409, "conflict", "a volume with that name already exists")
            if len(self.state.volumes) >= self.state.account["volume_limit"]:
                raise unprocessable("creating this volume will exceed your volume limit")
            self.state.ensure_tags(tags)
            volume = {"id": new_uuid(), "region": self.catalog.region(region), "droplet_ids": [],
                      "name": name, "description": description, "size_gigabytes": size_gb,
                      "created_at": now(), "filesystem_type": filesystem_type,
                      "filesystem_label": label, "tags": tags}
            self.state.volumes[volume["id"]] = volume
        try:
            self.machines.create_volume(volume["id"], name, size_gb)
        except MachineError as error:
            with self.state.lock:
                self.state.volumes.pop(volume["id"], None)
            raise ApiError(500, "server_error", f"the volume could not be made: {error}") from None
        with self.state.lock:
            self.state.save()
            return Response(201, {"volume": copy.deepcopy(volume)})

    def delete_volume(self, request: Request) -> Response:
        with self.state.lock:
            volume = self._volume(request)
            return self._delete_volume(volume)

    def delete_volume_by_name(self, request: Request) -> Response:
        name, region = request.arg("name"), request.arg("region")
        if not name or not region:
            raise unprocessable("name and region are required")
        with self.state.lock:
            volume = self.state.volume_by_name(name, region)
            if volume is None:
                raise not_found()
            return self._delete_volume(volume)

    def _delete_volume(self, volume: dict[str, Any]) -> Response:
        if volume["droplet_ids"]:
            raise ApiError(409, "conflict", "Volume is attached to a Droplet: detach it before "
                           "deleting it")
        try:
            self.machines.delete_volume(volume["id"])
        except MachineError as error:
            raise ApiError(500, "server_error", f"the volume could not be removed: {error}") from None
        del self.state.volumes[volume["id"]]
        self.state.save()
        return Response(204)

    def list_volume_actions(self, request: Request) -> Response:
        with self.state.lock:
            volume = self._volume(request)
            owned = self.state.data.get("volume_actions", {})
            actions = [a for a in reversed(self.state.actions.values())
                       if owned.get(str(a["id"])) == volume["id"]]
            return paginate(request, "actions", copy.deepcopy(actions))

    def get_volume_action(self, request: Request) -> Response:
        with self.state.lock:
            volume = self._volume(request)
            action_id = request.params["action_id"]
            if self.state.data.get("volume_actions", {}).get(action_id) != volume["id"]:
                raise not_found()
            return Response(200, {"action": copy.deepcopy(self.state.actions[action_id])})

    def post_volume_action_by_name(self, request: Request) -> Response:
        body = request.json_object()
        name, region = body.get("volume_name"), body.get("region")
        if body.get("type") not in ("attach", "detach"):
            raise unprocessable("type must be attach or detach")
        with self.state.lock:
            matches = [v for v in self.state.volumes.values()
                       if v["name"] == name and (not region or v["region"]["slug"] == region)]
            if len(matches) != 1:
                raise not_found()
            return self._volume_action(matches[0], body)

    def post_volume_action(self, request: Request) -> Response:
        body = request.json_object()
        with self.state.lock:
            return self._volume_action(self._volume(request), body)

    def _volume_action(self, volume: dict[str, Any], body: dict[str, Any]) -> Response:
        """Validate and start an attach, detach or resize (the lock is held)."""
        action_type = body.get("type")
        volume_id, name = volume["id"], volume["name"]
        if action_type in ("attach", "detach"):
            droplet = self.state.droplet(body.get("droplet_id"))
            droplet_id = droplet["id"]
            if action_type == "attach":
                if droplet["region"]["slug"] != volume["region"]["slug"]:
                    raise unprocessable("Droplet and volume must be in the same region")
                if volume["droplet_ids"]:
                    raise unprocessable("Volume is already attached to a Droplet")
                self._set_attachment(volume, droplet_id, attached=True)
                work = lambda: self.machines.attach_volume(volume_id, name, droplet_id)
                undo = lambda: self._set_attachment(volume, droplet_id, attached=False)
            else:
                if droplet_id not in volume["droplet_ids"]:
                    raise unprocessable("Volume is not attached to this Droplet")
                self._set_attachment(volume, droplet_id, attached=False)
                work = lambda: self.machines.detach_volume(volume_id, name, droplet_id)
                undo = lambda: self._set_attachment(volume, droplet_id, attached=True)
            done: Callable[[], None] = lambda: None
        elif action_type == "resize":
            size_gb = body.get("size_gigabytes")
            if not isinstance(size_gb, int) or isinstance(size_gb, bool) or \
                    size_gb > MAX_VOLUME_GB:
                raise unprocessable(f"size_gigabytes: must be an integer up to {MAX_VOLUME_GB}")
            if size_gb <= volume["size_gigabytes"]:
                raise unprocessable("The new size must be larger than the volume's current size")
            work = lambda: self.machines.resize_volume(volume_id, size_gb)
            undo = lambda: None
            done = lambda: volume.update(size_gigabytes=size_gb)
        else:
            raise unprocessable("type must be attach, detach or resize")
        action = self.state.new_action(f"{action_type}_volume", None, "volume", volume["region"])
        self.state.data.setdefault("volume_actions", {})[str(action["id"])] = volume_id
        self.state.save()
        self.twin.in_background(self._run_volume_action, action["id"], work, done, undo)
        return Response(202, {"action": copy.deepcopy(action)})

    def _set_attachment(self, volume: dict[str, Any], droplet_id: int, attached: bool) -> None:
        volume["droplet_ids"] = [droplet_id] if attached else []
        droplet = self.state.droplets.get(str(droplet_id))
        if droplet is not None:
            ids = [v for v in droplet["volume_ids"] if v != volume["id"]]
            droplet["volume_ids"] = ids + ([volume["id"]] if attached else [])

    def _run_volume_action(self, action_id: int, work: Callable[[], None],
                           done: Callable[[], None], undo: Callable[[], None]) -> None:
        try:
            work()
            succeeded = True
        except MachineError:
            succeeded = False
        with self.state.lock:
            (done if succeeded else undo)()
            self.state.finish_action(action_id, succeeded)
            self.state.save()
