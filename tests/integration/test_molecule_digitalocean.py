"""The digitalocean role's Molecule scenario (molecule/digitalocean/) against the
DigitalOcean API twin.

The DigitalOcean API cannot be reached from here, so the test starts the twin
(stagecraft_twins.digitalocean, a stand-in for api.digitalocean.com/v2:
spec/providers/digitalocean-twin.md) with ``--machines none`` in a temporary
directory, and hands its URL and token to the scenario as STAGECRAFT_DO_TWIN_URL and
DO_API_TOKEN (the role is given no token: the modules and its own calls read that
variable). The scenario runs on this machine: create (checks the twin is empty),
converge (SSH key, VPC, tags, two droplets, a volume attached to one, two firewalls),
idempotence, verify (reads the API back), side_effect (digitalocean_state=absent,
everything gone, a second removal changes nothing), destroy.

Afterwards the twin's record says what the role asked for: each resource created
once (idempotence created nothing more), then deleted; the twin's API holds nothing
of it; every answer the twin gave is as DigitalOcean's OpenAPI document says. No
Docker is needed, but it runs with the other Molecule scenarios (fleet, slow).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from molecule_run import REPO, run_scenario

from tests.do_openapi import assert_recording_valid

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

ENV_TAG = "stagecraft-molecule-test"
DROPLETS = {
    "molecule-test-edge-1": ["stagecraft", ENV_TAG, f"{ENV_TAG}--edge", f"{ENV_TAG}--app"],
    "molecule-test-db-1": ["stagecraft", ENV_TAG, f"{ENV_TAG}--db"],
}
VOLUME = "molecule-test-db-1-pgdata"
FIREWALLS = {ENV_TAG, f"{ENV_TAG}--edge"}
TAGS = {"stagecraft", ENV_TAG, f"{ENV_TAG}--edge", f"{ENV_TAG}--app", f"{ENV_TAG}--db"}
FINGERPRINT = "ab:1b:2d:19:0f:57:2f:db:c3:e7:0e:d9:e3:c3:64:06"


@dataclass(frozen=True)
class Twin:
    """A running twin: where it answers, its token and its record of exchanges."""

    url: str
    control: str
    token: str
    record: Path

    def get(self, url: str) -> Any:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def api(self, path: str) -> Any:
        return self.get(f"{self.url}/{path}")

    def exchanges(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.record.read_text().splitlines() if line]


@pytest.fixture
def twin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Twin]:
    directory, record, log = tmp_path / "twin", tmp_path / "exchanges.jsonl", tmp_path / "twin.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "stagecraft_twins.digitalocean", "serve", "--state-dir",
             str(directory), "--machines", "none", "--record", str(record)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        # twin.json is written (atomically) once the twin listens: its URL and token.
        deadline = time.monotonic() + 30
        while not (directory / "twin.json").exists():
            assert process.poll() is None, f"the twin stopped:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the twin did not start:\n{log.read_text()}"
            time.sleep(0.1)
        info = json.loads((directory / "twin.json").read_text())
        monkeypatch.setenv("STAGECRAFT_DO_TWIN_URL", info["url"])
        monkeypatch.setenv("DO_API_TOKEN", info["token"])
        for other in ("DO_OAUTH_TOKEN", "DO_API_KEY", "OAUTH_TOKEN"):
            monkeypatch.delenv(other, raising=False)
        yield Twin(url=info["url"], control=info["control"], token=info["token"], record=record)
    finally:
        subprocess.run([sys.executable, "-m", "stagecraft_twins.digitalocean", "stop",
                        "--state-dir", str(directory)], cwd=REPO, capture_output=True,
                       timeout=60, check=False)
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=30)


def test_digitalocean_scenario_creates_converges_and_removes(
        tmp_path: Path, twin: Twin, request: pytest.FixtureRequest) -> None:
    run = run_scenario("digitalocean", tmp_path, on_controller=True)

    converge = run.recap("converge")
    assert converge["failed"] == 0 and converge["changed"] > 0, converge
    assert run.step_succeeded("idempotence"), run.tail()
    idempotence = run.recap("idempotence")
    assert idempotence["changed"] == 0 and idempotence["failed"] == 0, idempotence
    assert run.step_succeeded("verify"), run.tail()
    assert run.recap("verify")["failed"] == 0
    assert run.step_succeeded("side_effect"), run.tail()
    # The second removal, given the same lists, found everything gone and changed nothing.
    removal, again = run.step_output("side_effect").split("TASK [Remove them again", 1)
    assert "changed: [localhost]" in removal
    assert "TASK [stagecraft.platform.digitalocean : Delete the environment's droplets]" in again
    assert "changed:" not in again.split("PLAY RECAP", 1)[0], again
    assert run.step_succeeded("destroy"), run.tail()
    assert twin.token not in run.output

    exchanges = twin.exchanges()
    done = Counter((e["method"], _template(e["path"])) for e in exchanges
                   if e["method"] != "GET" and e["status"] < 300)
    # Each resource made once: the idempotence run created nothing more.
    assert done[("POST", "/v2/account/keys")] == 1
    assert done[("POST", "/v2/vpcs")] == 1
    assert done[("POST", "/v2/tags")] == len(TAGS)
    assert done[("POST", "/v2/droplets")] == 2
    assert done[("POST", "/v2/volumes")] == 1
    assert done[("POST", "/v2/volumes/actions")] == 1
    assert done[("POST", "/v2/firewalls")] == 2
    # The volume was tagged in converge only (with the common and the environment's tag).
    tagged = [e for e in exchanges if e["method"] == "POST" and e["status"] == 204
              and e["path"].endswith("/resources")]
    assert sorted(e["path"] for e in tagged) == [
        f"/v2/tags/{ENV_TAG}/resources", "/v2/tags/stagecraft/resources"]
    kinds = {r["resource_type"] for e in tagged for r in e["request_body"]["resources"]}
    assert kinds == {"volume"}

    vpc = _answer(exchanges, "POST", "/v2/vpcs")["vpc"]
    droplets = {e["request_body"]["name"]: e for e in exchanges
                if e["method"] == "POST" and e["path"] == "/v2/droplets" and e["status"] == 202}
    assert set(droplets) == set(DROPLETS)
    ids = {}
    for name, tags in DROPLETS.items():
        sent = droplets[name]["request_body"]
        assert sorted(sent["tags"]) == sorted(tags), sent
        assert sent["vpc_uuid"] == vpc["id"] and sent["ssh_keys"] == [FINGERPRINT], sent
        ids[name] = droplets[name]["response_body"]["droplet"]["id"]
    attach = _answer(exchanges, "POST", "/v2/volumes/actions", body=True)
    assert attach["type"] == "attach" and attach["volume_name"] == VOLUME
    assert attach["droplet_id"] == ids["molecule-test-db-1"]

    # Then every one of them deleted.
    deleted = [(e["path"], e.get("query") or {}) for e in exchanges
               if e["method"] == "DELETE" and e["status"] == 204]
    paths = [path for path, _ in deleted]
    assert sorted(p for p in paths if p.startswith("/v2/droplets/")) == sorted(
        f"/v2/droplets/{i}" for i in ids.values())
    assert [q.get("name") for p, q in deleted if p == "/v2/volumes"] == [[VOLUME]]
    assert sum(p.startswith("/v2/firewalls/") for p in paths) == 2
    assert f"/v2/vpcs/{vpc['id']}" in paths
    assert f"/v2/account/keys/{FINGERPRINT}" in paths
    assert {p.removeprefix("/v2/tags/") for p in paths if p.startswith("/v2/tags/")} == TAGS

    # The twin's API holds none of it now.
    assert twin.api("droplets")["droplets"] == []
    assert twin.api("volumes")["volumes"] == []
    assert twin.api("firewalls")["firewalls"] == []
    assert twin.api("account/keys")["ssh_keys"] == []
    assert twin.api("tags")["tags"] == []
    assert [v["name"] for v in twin.api("vpcs?per_page=200")["vpcs"]
            if not v["name"].startswith("default-")] == []
    # The twin's own count agrees with its record: two droplet creations were asked
    # for in the whole run, and no droplet was ever resized or powered off.
    counted = twin.get(f"{twin.control}/requests")
    assert counted["total"] == len(twin.exchanges()), counted  # the reads above included
    assert counted["requests"]["POST /v2/droplets"] == 2
    assert {e["request_body"]["type"] for e in exchanges if e["method"] == "POST"
            and _template(e["path"]) == "/v2/droplets/{id}/actions"} <= {"power_on"}

    # Every request the modules and the role sent, and every answer the twin gave,
    # against DigitalOcean's OpenAPI document (tests/do_openapi.py).
    checked = assert_recording_valid(twin.record, request.node.nodeid)
    assert checked == counted["total"] > 100
    print(f"molecule test -s digitalocean: {run.elapsed:.0f} s; converge {converge}, "
          f"idempotence {idempotence}; {checked} exchanges checked")


def _template(path: str) -> str:
    """``/v2/droplets/123/actions`` -> ``/v2/droplets/{id}/actions``; ids are digits,
    UUIDs or fingerprints (names of tags stay: they are part of what was asked)."""
    parts = path.split("/")
    return "/".join("{id}" if i > 2 and (p.isdigit() or "-" in p and len(p) == 36 or ":" in p)
                    else p for i, p in enumerate(parts))


def _answer(exchanges: list[dict[str, Any]], method: str, path: str,
            body: bool = False) -> dict[str, Any]:
    """The response body (``body``: the request body) of the one successful exchange."""
    found = [e for e in exchanges
             if e["method"] == method and e["path"] == path and e["status"] < 300]
    assert len(found) == 1, found
    return found[0]["request_body" if body else "response_body"]
