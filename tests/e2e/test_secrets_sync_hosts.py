"""End to end: `secrets sync --to hosts` on a two-host local fleet of the example app
(without its database, so each release is quick). The web service reads a harmless
secret, SYNC_CANARY; after it changes in .env.local, the sync names it per host and
service (and no value), makes a release with the same images that the ledger records,
and each host's env/web.env (mode 0600) then holds the new value, which the web
containers see. A second sync finds nothing to do.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from shop_fleet import WITHOUT_DB, copy_example, fleet, project_name, releases, stagecraft

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

EDITS = {**WITHOUT_DB, "    secrets: [DATABASE_URL]": "    secrets: [SYNC_CANARY]"}
OLD = f"canary-old-{uuid.uuid4().hex}"
NEW = f"canary-new-{uuid.uuid4().hex}"


def set_canary(project: Path, value: str) -> None:
    path = project / ".env.local"
    kept = [line for line in path.read_text().splitlines() if not line.startswith("SYNC_CANARY=")]
    path.write_text("\n".join([*kept, f"SYNC_CANARY={value}"]) + "\n")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    directory = copy_example(tmp_path_factory.mktemp("secrets-sync"), "k", EDITS)
    set_canary(directory, OLD)
    with fleet(directory):
        yield directory


def on_host(project: Path, host: str, command: str) -> str:
    done = stagecraft(project, "ssh", host, "--", command)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_sync_to_hosts_rolls_a_release_with_the_new_value(project: Path) -> None:
    deployed = stagecraft(project, "deploy", "--yes")
    assert deployed.returncode == 0, deployed.stderr[-6000:]

    same = stagecraft(project, "secrets", "sync", "--to", "hosts")
    assert same.returncode == 0, same.stderr[-3000:]
    assert "every host's env files hold the provider's values: nothing to do" in same.stdout

    set_canary(project, NEW)
    refused = stagecraft(project, "secrets", "sync", "--to", "hosts")
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "there is no terminal to ask on" in refused.stderr
    before = len(releases(project))

    synced = stagecraft(project, "secrets", "sync", "--to", "hosts", "--yes")
    assert synced.returncode == 0, synced.stderr[-6000:]
    plan = synced.stdout.split("\n")
    assert "  local-1  web: SYNC_CANARY" in plan and "  local-2  web: SYNC_CANARY" in plan
    assert re.search(r"^secrets sync \S+: succeeded \(2/2 hosts on the release\)$",
                     synced.stdout, re.M), synced.stdout
    for value in (OLD, NEW):
        assert value not in synced.stdout + synced.stderr + refused.stdout + refused.stderr

    history = releases(project)
    assert len(history) == before + 1
    newest = max(history, key=lambda r: r["id"])
    assert newest["message"] == "secrets sync" and newest["result"] == "succeeded"
    previous = max((r for r in history if r["id"] != newest["id"]), key=lambda r: r["id"])
    assert {k: v["ref"] for k, v in newest["images"].items()} == \
        {k: v["ref"] for k, v in previous["images"].items()}  # same images

    env_file = f"/opt/stagecraft/{project_name(project)}/local/current/env/web.env"
    for host in ("local-1", "local-2"):
        assert on_host(project, host, f"stat -c %a {env_file}").strip() == "600"
        assert f"SYNC_CANARY='{NEW}'" in on_host(project, host, f"cat {env_file}")
    seen = stagecraft(project, "exec", "web", "--", "printenv", "SYNC_CANARY")
    assert seen.returncode == 0, seen.stderr[-3000:]
    assert NEW in seen.stdout

    again = stagecraft(project, "secrets", "sync", "--to", "hosts", "--output", "json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout.splitlines()[-1])["differ"] == {}
