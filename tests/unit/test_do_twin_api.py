"""The DigitalOcean API twin (``python -m stagecraft_twins.digitalocean``) with no machines
behind it: its HTTP API answers as DigitalOcean documents (status codes, bodies,
pagination, errors), its resources move through their states, faults can be injected,
and its state survives a restart. The client is urllib only, as a stranger's would be.
"""

from __future__ import annotations

import base64
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stagecraft_twins.digitalocean.api import Request, Twin
from stagecraft_twins.digitalocean.catalog import Catalog
from stagecraft_twins.digitalocean.droplets import ComputeApi
from stagecraft_twins.digitalocean.firewalls import FirewallsApi
from stagecraft_twins.digitalocean.machines import FirewallRule, MachineError, NoMachines
from stagecraft_twins.digitalocean.state import State

REPO = Path(__file__).resolve().parents[2]
TOKEN = "twin-test-token"
NOT_FOUND = {"id": "not_found", "message": "The resource you were accessing could not be found."}


def public_key(seed: int) -> str:
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + seed.to_bytes(32, "big")
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} key-{seed}"


class RunningTwin:
    """A twin process serving a state directory, and a urllib client for it."""

    def __init__(self, state_dir: Path, record: Path, *extra: str) -> None:
        self.state_dir, self.record = state_dir, record
        twin_file = state_dir / "twin.json"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stagecraft_twins.digitalocean", "serve", "--machines", "none",
             "--state-dir", str(state_dir), "--record", str(record), "--token", TOKEN, *extra],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while (json.loads(twin_file.read_text()) if twin_file.exists() else {}).get("pid") \
                != self.process.pid:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(f"the twin did not start: {self.process.communicate()}")
            time.sleep(0.05)
        self.info = json.loads(twin_file.read_text())
        self.url = self.info["url"]
        self.root = self.url[: -len("/v2")]

    def call(self, method: str, path: str, body: Any = None, token: str | None = TOKEN,
             raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
        """One request; ``path`` is under /v2 unless it starts with /_twin."""
        url = self.root + path if path.startswith("/_twin") else f"{self.url}/{path.lstrip('/')}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, headers, payload = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            status, headers, payload = error.code, dict(error.headers), error.read()
        headers = {k.lower(): v for k, v in headers.items()}
        return status, headers, json.loads(payload) if payload else None

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        got, _, answer = self.call(method, path, body)
        assert got == status, (method, path, got, answer)
        return answer

    def wait_for(self, path: str, key: str, field: str, value: str, seconds: float = 8) -> dict:
        deadline = time.monotonic() + seconds
        while True:
            current = self.ok("GET", path)[key]
            if current[field] == value or time.monotonic() > deadline:
                assert current[field] == value, current
                return current
            time.sleep(0.1)

    def active_droplet(self, name: str, **extra: Any) -> dict:
        body = {"name": name, "size": "s-1vcpu-1gb", "region": "fra1", "image": "debian-12-x64",
                **extra}
        droplet = self.ok("POST", "droplets", body, 202)["droplet"]
        return self.wait_for(f"droplets/{droplet['id']}", "droplet", "status", "active")

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.communicate(timeout=15)


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[RunningTwin]:
    running = RunningTwin(tmp_path / "state", tmp_path / "record.jsonl")
    yield running
    running.terminate()


def test_requests_without_the_bearer_token_are_refused(twin: RunningTwin) -> None:
    for token in (None, "wrong"):
        status, headers, body = twin.call("GET", "account", token=token)
        assert status == 401
        assert body["id"] == "unauthorized" and body["message"] == "Unable to authenticate you"
        assert body["request_id"]
        assert headers["ratelimit-limit"] == "5000"
    status, headers, body = twin.call("GET", "account")
    assert status == 200 and body["account"]["droplet_limit"] == 25
    assert int(headers["ratelimit-remaining"]) < 5000 and int(headers["ratelimit-reset"]) > time.time()
    assert twin.call("GET", "/_twin/requests", token=None)[0] == 401


def test_lists_are_paged_with_absolute_links(twin: RunningTwin) -> None:
    for seed in range(45):
        twin.ok("POST", "account/keys", {"name": f"key-{seed}", "public_key": public_key(seed)}, 201)
    first = twin.ok("GET", "account/keys?per_page=20")
    assert first["meta"]["total"] == 45 and len(first["ssh_keys"]) == 20
    pages = first["links"]["pages"]
    assert set(pages) == {"next", "last"}
    assert pages["last"] == f"{twin.url}/account/keys?page=3&per_page=20"
    names, url, seen = [], f"{twin.url}/account/keys?per_page=20", 0
    while url:
        answer = twin.ok("GET", url[len(twin.url) + 1:])
        names += [k["name"] for k in answer["ssh_keys"]]
        seen += 1
        url = answer["links"].get("pages", {}).get("next")
    assert seen == math.ceil(45 / 20) and names == [f"key-{i}" for i in range(45)]
    assert set(answer["links"]["pages"]) == {"first", "prev"}
    assert answer["links"]["pages"]["first"] == f"{twin.url}/account/keys?page=1&per_page=20"
    assert twin.ok("GET", "account/keys?per_page=500")["ssh_keys"].__len__() == 45
    assert twin.ok("GET", "regions")["links"] == {}


def test_ssh_keys_are_found_by_fingerprint_as_the_module_does(twin: RunningTwin) -> None:
    key = public_key(7)
    created = twin.ok("POST", "account/keys", {"name": "deploy", "public_key": key}, 201)["ssh_key"]
    fingerprint = created["fingerprint"]
    assert len(fingerprint.split(":")) == 16
    assert twin.ok("GET", f"account/keys/{fingerprint}")["ssh_key"]["id"] == created["id"]
    assert twin.ok("PUT", f"account/keys/{fingerprint}", {"name": "ci"})["ssh_key"]["name"] == "ci"
    status, _, body = twin.call("POST", "account/keys", {"name": "again", "public_key": key})
    assert status == 422 and body["id"] == "unprocessable_entity"
    assert twin.call("POST", "account/keys", {"name": "bad", "public_key": "nonsense"})[0] == 422
    assert twin.call("DELETE", f"account/keys/{created['id']}")[0] == 204
    status, _, body = twin.call("GET", f"account/keys/{fingerprint}")
    assert status == 404 and {k: body[k] for k in ("id", "message")} == NOT_FOUND


def test_a_droplet_goes_from_new_to_active_and_its_create_action_completes(twin: RunningTwin) -> None:
    twin.ok("POST", "account/keys", {"name": "deploy", "public_key": public_key(1)}, 201)
    fingerprint = twin.ok("GET", "account/keys")["ssh_keys"][0]["fingerprint"]
    body = {"name": "web-1", "size": "s-1vcpu-1gb", "region": "fra1", "image": "debian-12-x64",
            "ssh_keys": [fingerprint], "tags": ["web"], "baseurl": twin.url,
            "validate_certs": True, "timeout": 30, "resize_disk": False, "project_name": "",
            "firewall": None, "wait": True, "unique_name": True, "user_data": None}
    answer = twin.ok("POST", "droplets", body, 202)
    droplet, links = answer["droplet"], answer["links"]["actions"]
    assert droplet["status"] == "new" and droplet["size_slug"] == "s-1vcpu-1gb"
    assert links[0]["rel"] == "create" and links[0]["href"] == f"{twin.url}/actions/{links[0]['id']}"
    active = twin.wait_for(f"droplets/{droplet['id']}", "droplet", "status", "active")
    kinds = {n["type"]: n["ip_address"] for n in active["networks"]["v4"]}
    assert set(kinds) == {"public", "private"}
    default_vpc = [v for v in twin.ok("GET", "vpcs")["vpcs"] if v["region"] == "fra1" and v["default"]]
    assert active["vpc_uuid"] == default_vpc[0]["id"]
    action = twin.ok("GET", f"actions/{links[0]['id']}")["action"]
    assert action["status"] == "completed" and action["completed_at"]
    assert action["resource_id"] == droplet["id"] and action["region_slug"] == "fra1"
    assert twin.ok("GET", "tags/web")["tag"]["resources"]["droplets"]["count"] == 1
    assert twin.ok("GET", f"droplets?page=1")["droplets"][0]["id"] == droplet["id"]
    assert twin.ok("GET", "droplets?name=web-1")["meta"]["total"] == 1
    for wrong, message in (({"size": "huge"}, "invalid size"), ({"region": "xyz1"}, "invalid region"),
                           ({"image": "nope"}, "invalid image"), ({"name": "bad name!"}, "hostname"),
                           ({"ssh_keys": [12345]}, "SSH key")):
        status, _, error = twin.call("POST", "droplets", {**body, "name": "web-2", **wrong})
        assert status == 422 and message in error["message"], (wrong, error)
    assert twin.call("DELETE", f"droplets/{droplet['id']}")[0] == 204
    assert twin.call("GET", f"droplets/{droplet['id']}")[0] == 404


def test_resize_needs_a_powered_off_droplet(twin: RunningTwin) -> None:
    droplet = twin.active_droplet("app-1")
    status, _, error = twin.call("POST", f"droplets/{droplet['id']}/actions",
                                 {"type": "resize", "size": "s-2vcpu-4gb"})
    assert status == 422 and error["id"] == "unprocessable_entity"
    action = twin.ok("POST", f"droplets/{droplet['id']}/actions", {"type": "power_off"}, 201)["action"]
    twin.wait_for(f"droplets/{droplet['id']}/actions/{action['id']}", "action", "status", "completed")
    assert twin.ok("GET", f"droplets/{droplet['id']}")["droplet"]["status"] == "off"
    action = twin.ok("POST", f"droplets/{droplet['id']}/actions",
                     {"type": "resize", "size": "s-2vcpu-4gb", "disk": True}, 201)["action"]
    twin.wait_for(f"actions/{action['id']}", "action", "status", "completed")
    resized = twin.ok("GET", f"droplets/{droplet['id']}")["droplet"]
    assert (resized["size_slug"], resized["memory"], resized["vcpus"], resized["disk"]) == \
        ("s-2vcpu-4gb", 4096, 2, 80)
    action = twin.ok("POST", f"droplets/{droplet['id']}/actions", {"type": "power_on"}, 201)["action"]
    twin.wait_for(f"droplets/{droplet['id']}", "droplet", "status", "active")
    listed = twin.ok("GET", f"droplets/{droplet['id']}/actions")["actions"]
    assert [a["type"] for a in listed] == ["power_on", "resize", "power_off", "create"]


def test_volumes_are_made_attached_by_name_resized_detached_and_deleted(twin: RunningTwin) -> None:
    droplet = twin.active_droplet("db-1")
    volume = twin.ok("POST", "volumes", {"size_gigabytes": 10, "name": "data", "region": "fra1",
                                         "description": None, "snapshot_id": None}, 201)["volume"]
    assert volume["droplet_ids"] == [] and volume["region"]["slug"] == "fra1"
    status, _, error = twin.call("POST", "volumes", {"size_gigabytes": 10, "name": "data",
                                                     "region": "fra1"})
    assert status == 409 and error["id"] == "conflict"
    assert twin.call("POST", "volumes", {"size_gigabytes": 10, "name": "Data_1",
                                         "region": "fra1"})[0] == 422
    found = twin.ok("GET", "volumes?name=data&region=fra1")["volumes"]
    assert [v["id"] for v in found] == [volume["id"]]

    def volume_action(path: str, body: dict) -> None:
        action = twin.ok("POST", path, body, 202)["action"]
        assert action["resource_type"] == "volume"
        twin.wait_for(f"actions/{action['id']}", "action", "status", "completed")

    by_name = {"volume_name": "data", "region": "fra1", "droplet_id": droplet["id"]}
    volume_action("volumes/actions", {"type": "attach", **by_name})
    assert twin.ok("GET", f"volumes/{volume['id']}")["volume"]["droplet_ids"] == [droplet["id"]]
    assert twin.ok("GET", f"droplets/{droplet['id']}")["droplet"]["volume_ids"] == [volume["id"]]
    assert twin.call("POST", "volumes/actions", {"type": "attach", **by_name})[0] == 422
    assert twin.call("POST", f"volumes/{volume['id']}/actions",
                     {"type": "resize", "size_gigabytes": 5})[0] == 422
    volume_action(f"volumes/{volume['id']}/actions", {"type": "resize", "size_gigabytes": 20,
                                                      "region": "fra1"})
    assert twin.ok("GET", f"volumes/{volume['id']}")["volume"]["size_gigabytes"] == 20
    assert twin.call("DELETE", "volumes?name=data&region=fra1")[0] == 409
    volume_action("volumes/actions", {"type": "detach", **by_name})
    assert twin.ok("GET", f"volumes/{volume['id']}")["volume"]["droplet_ids"] == []
    assert twin.call("DELETE", "volumes?name=data&region=fra1")[0] == 204
    status, _, body = twin.call("GET", f"volumes/{volume['id']}")
    assert status == 404 and body["message"] == NOT_FOUND["message"]


def test_deleting_a_droplet_detaches_its_volumes(twin: RunningTwin) -> None:
    droplet = twin.active_droplet("db-2")
    volume = twin.ok("POST", "volumes", {"size_gigabytes": 1, "name": "scratch",
                                         "region": "fra1"}, 201)["volume"]
    action = twin.ok("POST", f"volumes/{volume['id']}/actions",
                     {"type": "attach", "droplet_id": droplet["id"]}, 202)["action"]
    twin.wait_for(f"volumes/{volume['id']}/actions/{action['id']}", "action", "status", "completed")
    assert twin.call("DELETE", f"droplets/{droplet['id']}")[0] == 204
    assert twin.ok("GET", f"volumes/{volume['id']}")["volume"]["droplet_ids"] == []


def test_a_vpc_with_members_cannot_be_deleted(twin: RunningTwin) -> None:
    vpcs = twin.ok("GET", "vpcs?per_page=200")["vpcs"]
    assert {v["region"] for v in vpcs if v["default"]} >= {"fra1", "ams3", "nyc3"}
    vpc = twin.ok("POST", "vpcs", {"name": "shop", "region": "fra1",
                                   "ip_range": "10.200.0.0/20"}, 201)["vpc"]
    assert vpc["urn"] == f"do:vpc:{vpc['id']}" and vpc["default"] is False
    assert twin.call("POST", "vpcs", {"name": "clash", "region": "fra1",
                                      "ip_range": "10.200.8.0/24"})[0] == 422
    droplet = twin.active_droplet("shop-1", vpc_uuid=vpc["id"])
    private = [n for n in droplet["networks"]["v4"] if n["type"] == "private"][0]["ip_address"]
    assert private.startswith("10.200.")
    members = twin.ok("GET", f"vpcs/{vpc['id']}/members")["members"]
    assert [m["urn"] for m in members] == [f"do:droplet:{droplet['id']}"]
    status, _, error = twin.call("DELETE", f"vpcs/{vpc['id']}")
    assert status == 403 and error["id"] == "forbidden"
    assert twin.ok("PUT", f"vpcs/{vpc['id']}", {"name": "shop-net"})["vpc"]["name"] == "shop-net"
    assert twin.ok("PATCH", f"vpcs/{vpc['id']}", {"description": "d"})["vpc"]["description"] == "d"
    twin.ok("DELETE", f"droplets/{droplet['id']}", status=204)
    twin.ok("DELETE", f"vpcs/{vpc['id']}", status=204)
    assert twin.call("GET", f"vpcs/{vpc['id']}")[0] == 404


def test_firewalls_are_made_changed_and_removed(twin: RunningTwin) -> None:
    web = twin.active_droplet("web-1", tags=["web"])
    other = twin.active_droplet("other-1")
    body = {"name": "web-fw", "droplet_ids": None, "tags": ["web"],
            "inbound_rules": [{"protocol": "tcp", "ports": "22",
                               "sources": {"addresses": ["0.0.0.0/0"], "droplet_ids": None,
                                           "load_balancer_uids": None, "tags": None}}],
            "outbound_rules": [{"protocol": "tcp", "ports": "all",
                                "destinations": {"addresses": ["0.0.0.0/0", "::/0"]}}]}
    firewall = twin.ok("POST", "firewalls", body, 202)["firewall"]
    assert firewall["status"] == "waiting"
    assert firewall["pending_changes"] == [{"droplet_id": web["id"], "removing": False,
                                            "status": "waiting"}]
    assert firewall["inbound_rules"][0]["sources"] == {"addresses": ["0.0.0.0/0"]}
    fw_path = f"firewalls/{firewall['id']}"
    twin.wait_for(fw_path, "firewall", "status", "succeeded")
    twin.ok("POST", f"{fw_path}/droplets", {"droplet_ids": [other["id"]]}, 204)
    assert twin.ok("GET", fw_path)["firewall"]["droplet_ids"] == [other["id"]]
    twin.ok("DELETE", f"{fw_path}/droplets", {"droplet_ids": [other["id"]]}, 204)
    twin.ok("POST", f"{fw_path}/tags", {"tags": ["db"]}, 204)
    twin.ok("DELETE", f"{fw_path}/tags", {"tags": ["web"]}, 204)
    assert twin.ok("GET", fw_path)["firewall"]["tags"] == ["db"]
    rule = {"protocol": "tcp", "ports": "80", "sources": {"addresses": ["0.0.0.0/0"]}}
    twin.ok("POST", f"{fw_path}/rules", {"inbound_rules": [rule]}, 204)
    assert len(twin.ok("GET", fw_path)["firewall"]["inbound_rules"]) == 2
    twin.ok("DELETE", f"{fw_path}/rules", {"inbound_rules": [rule]}, 204)
    assert len(twin.ok("GET", fw_path)["firewall"]["inbound_rules"]) == 1
    updated = twin.ok("PUT", fw_path, {**body, "name": "web-fw-2"})["firewall"]
    assert updated["name"] == "web-fw-2" and updated["tags"] == ["web"]
    bad = {**body, "inbound_rules": [{"protocol": "sctp", "ports": "1", "sources": {"tags": ["x"]}}]}
    assert twin.call("PUT", fw_path, bad)[0] == 422
    names = [f["name"] for f in twin.ok("GET", "firewalls?page=1&per_page=40")["firewalls"]]
    assert names == ["web-fw-2"]
    twin.ok("DELETE", fw_path, status=204)
    assert twin.call("GET", fw_path)[0] == 404


def test_tags_count_and_release_their_resources(twin: RunningTwin) -> None:
    tag = twin.ok("POST", "tags", {"name": "env:prod"}, 201)["tag"]
    assert tag["resources"]["count"] == 0 and tag["resources"]["droplets"]["count"] == 0
    droplet = twin.active_droplet("api-1")
    resources = {"resources": [{"resource_id": str(droplet["id"]), "resource_type": "droplet"}]}
    twin.ok("POST", "tags/env:prod/resources", resources, 204)
    counted = twin.ok("GET", "tags/env:prod")["tag"]["resources"]
    assert counted["count"] == 1 and counted["droplets"]["count"] == 1
    assert counted["droplets"]["last_tagged_uri"] == f"{twin.url}/droplets/{droplet['id']}"
    assert twin.ok("GET", "droplets?tag_name=env:prod")["meta"]["total"] == 1
    twin.ok("DELETE", "tags/env:prod/resources", resources, 204)
    assert twin.ok("GET", "droplets?tag_name=env:prod")["meta"]["total"] == 0
    assert twin.call("POST", "tags", {"name": "no spaces"})[0] == 422
    twin.ok("DELETE", "tags/env:prod", status=204)
    assert twin.call("GET", "tags/env:prod")[0] == 404


def test_creating_past_the_droplet_limit_is_refused(twin: RunningTwin) -> None:
    twin.ok("PATCH", "/_twin/account", {"droplet_limit": 2})
    body = {"names": ["a-1", "a-2", "a-3"], "size": "s-1vcpu-1gb", "region": "ams3",
            "image": "ubuntu-24-04-x64"}
    status, _, error = twin.call("POST", "droplets", body)
    assert status == 422 and "exceed your droplet limit" in error["message"]
    answer = twin.ok("POST", "droplets", {**body, "names": ["a-1", "a-2"]}, 202)
    assert [d["name"] for d in answer["droplets"]] == ["a-1", "a-2"]
    assert len(answer["links"]["actions"]) == 2
    assert twin.call("POST", "droplets", {**body, "names": ["a-3"]})[0] == 422


def test_injected_faults_answer_instead_and_then_stop(twin: RunningTwin) -> None:
    twin.ok("POST", "/_twin/faults", {"method": "GET", "path": "^/v2/account$", "status": 429,
                                      "times": 1}, 201)
    status, headers, body = twin.call("GET", "account")
    assert status == 429 and body["id"] == "too_many_requests"
    assert headers["retry-after"] and headers["ratelimit-remaining"] == "0"
    assert twin.call("GET", "account")[0] == 200
    twin.ok("POST", "/_twin/faults", {"method": "POST", "path": "^/v2/droplets$", "status": 422,
                                      "body": {"id": "unprocessable_entity", "message": "boom"}}, 201)
    body = {"name": "f-1", "size": "s-1vcpu-1gb", "region": "fra1", "image": "debian-12-x64"}
    status, _, error = twin.call("POST", "droplets", body)
    assert status == 422 and error["message"] == "boom" and error["request_id"]
    twin.ok("POST", "/_twin/faults", {"droplet_stuck": True, "times": 1}, 201)
    stuck = twin.ok("POST", "droplets", body, 202)
    normal = twin.active_droplet("f-2")
    time.sleep(1.2)
    assert twin.ok("GET", f"droplets/{stuck['droplet']['id']}")["droplet"]["status"] == "new"
    action_id = stuck["links"]["actions"][0]["id"]
    assert twin.ok("GET", f"actions/{action_id}")["action"]["status"] == "in-progress"
    assert normal["status"] == "active"
    twin.ok("POST", "/_twin/faults", {"path": "^/v2/sizes", "status": 500, "times": 5}, 201)
    twin.ok("DELETE", "/_twin/faults", status=204)
    assert twin.call("GET", "sizes")[0] == 200
    counts = twin.ok("GET", "/_twin/requests")["requests"]
    assert counts["GET /v2/account"] == 2 and counts["GET /v2/droplets/{droplet_id}"] >= 1


def test_a_droplet_stuck_for_seconds_is_new_that_long_then_active(twin: RunningTwin) -> None:
    """droplet_stuck with seconds: a droplet slow to be created, as DigitalOcean has them
    at times; it becomes active by itself, so `infra up` run again carries on."""
    for bad in ({"droplet_stuck": True, "times": 0}, {"droplet_stuck": True, "seconds": -1},
                {"droplet_stuck": True, "seconds": "10"}):
        assert twin.call("POST", "/_twin/faults", bad)[0] == 400
    answer = twin.ok("POST", "/_twin/faults", {"droplet_stuck": True, "seconds": 1.5}, 201)
    assert answer["fault"] == {"droplet_stuck": True, "times": 1, "seconds": 1.5}
    assert twin.ok("GET", "/_twin/faults")["droplet_stuck"] == 1
    body = {"name": "slow-1", "size": "s-1vcpu-1gb", "region": "fra1", "image": "debian-12-x64"}
    created = time.monotonic()
    droplet = twin.ok("POST", "droplets", body, 202)["droplet"]
    assert twin.ok("GET", "/_twin/faults")["droplet_stuck"] == 0
    time.sleep(0.8)
    assert twin.ok("GET", f"droplets/{droplet['id']}")["droplet"]["status"] == "new"
    twin.wait_for(f"droplets/{droplet['id']}", "droplet", "status", "active")
    assert time.monotonic() - created >= 1.5
    # The next droplet is not held.
    assert twin.active_droplet("quick-1")["status"] == "active"


def test_every_exchange_is_recorded_without_the_token(twin: RunningTwin) -> None:
    twin.ok("GET", "sizes?per_page=3")
    twin.ok("GET", "/_twin/requests")
    twin.call("GET", "account", token=None)
    lines = [json.loads(line) for line in twin.record.read_text().splitlines()]
    assert [(x["method"], x["path"], x["status"]) for x in lines] == \
        [("GET", "/v2/sizes", 200), ("GET", "/v2/account", 401)]
    first = lines[0]
    assert set(first) == {"method", "path", "query", "request_body", "status",
                          "response_headers", "response_body"}
    assert first["query"] == {"per_page": ["3"]} and len(first["response_body"]["sizes"]) == 3
    assert "authorization" not in json.dumps(lines).lower().replace("unable to authenticate", "")
    assert first["response_headers"]["ratelimit-limit"] == "5000"


def test_a_restarted_twin_serves_the_same_resources(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    first = RunningTwin(state_dir, tmp_path / "one.jsonl")
    try:
        first.ok("POST", "account/keys", {"name": "k", "public_key": public_key(3)}, 201)
        droplet = first.active_droplet("keep-1")
        volume = first.ok("POST", "volumes", {"size_gigabytes": 1, "name": "keep",
                                              "region": "fra1"}, 201)["volume"]
        second = subprocess.run(
            [sys.executable, "-m", "stagecraft_twins.digitalocean", "serve", "--machines", "none",
             "--state-dir", str(state_dir)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True, text=True, timeout=30)
        assert second.returncode == 1 and "already serves" in second.stderr
        assert json.loads((state_dir / "twin.json").read_text())["pid"] == first.process.pid
    finally:
        first.terminate()
    assert (state_dir / "state.json").exists()
    again = RunningTwin(state_dir, tmp_path / "two.jsonl")
    try:
        assert again.ok("GET", f"droplets/{droplet['id']}")["droplet"] == droplet
        assert again.ok("GET", f"volumes/{volume['id']}")["volume"] == volume
        assert again.ok("GET", "account/keys")["meta"]["total"] == 1
        newer = again.active_droplet("keep-2")
        assert newer["id"] != droplet["id"]
        assert newer["networks"]["v4"][0]["ip_address"] != droplet["networks"]["v4"][0]["ip_address"]
    finally:
        again.terminate()


def test_stop_ends_the_twin_and_removes_twin_json(twin: RunningTwin) -> None:
    def stop() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "stagecraft_twins.digitalocean", "stop",
                               "--state-dir", str(twin.state_dir)], cwd=REPO, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                              timeout=30)
    result = stop()
    assert result.returncode == 0, result.stderr
    assert not (twin.state_dir / "twin.json").exists()
    twin.process.wait(timeout=10)
    assert stop().returncode == 0


# ---- in-process: what the API asks of its machines ------------------------------------


class RecordingMachines(NoMachines):
    """NoMachines that remembers firewall calls and can refuse to make droplets."""

    def __init__(self, fail_create: bool = False) -> None:
        self.fail_create = fail_create
        self.firewall_calls: list[tuple[int, list[FirewallRule] | None]] = []

    def create_droplet(self, droplet_id: int, name: str, **kwargs: Any):  # type: ignore[override]
        if self.fail_create:
            raise MachineError("no room for another machine")
        return super().create_droplet(droplet_id, name, **kwargs)

    def apply_firewall(self, droplet_id: int, rules: list[FirewallRule] | None) -> None:
        self.firewall_calls.append((droplet_id, rules))


def in_process(tmp_path: Path, machines: RecordingMachines) -> tuple[Twin, ComputeApi, FirewallsApi]:
    twin = Twin(State(tmp_path / "state.json"), Catalog(), machines)
    twin.ensure_default_vpcs()
    return twin, ComputeApi(twin), FirewallsApi(twin)


def call(handler: Any, method: str, path: str, body: Any = None, **params: str) -> Any:
    return handler(Request(method, path, {}, body, "http://twin", params))


def settle(twin: Twin, condition: Any) -> None:
    deadline = time.monotonic() + 5
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    twin.firewall_worker.submit(lambda: None).result(timeout=5)


def test_firewall_changes_reach_the_machines_of_their_droplets(tmp_path: Path) -> None:
    machines = RecordingMachines()
    twin, compute, firewalls = in_process(tmp_path, machines)
    body = {"name": "w-1", "size": "s-1vcpu-1gb", "region": "fra1", "image": "debian-12-x64",
            "tags": ["web"]}
    droplet = call(compute.create_droplets, "POST", "/v2/droplets", body).body["droplet"]
    settle(twin, lambda: twin.state.droplets[str(droplet["id"])]["status"] == "active")
    assert machines.firewall_calls == []  # in no firewall: nothing to enforce
    rule = {"protocol": "tcp", "ports": "22", "sources": {"addresses": ["203.0.113.0/24"]}}
    ssh_only = [FirewallRule("tcp", "22", ("203.0.113.0/24",))]
    firewall = call(firewalls.create_firewall, "POST", "/v2/firewalls",
                    {"name": "fw", "tags": ["web"], "inbound_rules": [rule]}).body["firewall"]
    settle(twin, lambda: machines.firewall_calls)
    assert machines.firewall_calls == [(droplet["id"], ssh_only)]
    assert twin.state.firewalls[firewall["id"]]["status"] == "succeeded"
    machines.firewall_calls.clear()
    later = call(compute.create_droplets, "POST", "/v2/droplets", {**body, "name": "w-2"}).body
    settle(twin, lambda: machines.firewall_calls)
    assert machines.firewall_calls == [(later["droplet"]["id"], ssh_only)]
    machines.firewall_calls.clear()
    call(firewalls.delete_firewall, "DELETE", "/v2/firewalls/x", firewall_id=firewall["id"])
    settle(twin, lambda: len(machines.firewall_calls) == 2)
    assert sorted(machines.firewall_calls, key=lambda c: c[0]) == \
        [(droplet["id"], None), (later["droplet"]["id"], None)]


def test_a_machine_that_cannot_be_made_errors_the_create_action(tmp_path: Path) -> None:
    twin, compute, _ = in_process(tmp_path, RecordingMachines(fail_create=True))
    body = {"name": "w-1", "size": "s-1vcpu-1gb", "region": "fra1", "image": "debian-12-x64"}
    answer = call(compute.create_droplets, "POST", "/v2/droplets", body).body
    action_id = str(answer["links"]["actions"][0]["id"])
    settle(twin, lambda: twin.state.actions[action_id]["status"] != "in-progress")
    assert twin.state.actions[action_id]["status"] == "errored"
    assert twin.state.droplets[str(answer["droplet"]["id"])]["status"] == "new"
