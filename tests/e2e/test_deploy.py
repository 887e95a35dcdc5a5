"""End to end: the example app deployed to a two-host local fleet, for real.

edge+app and app hosts (Debian 13 containers with systemd and Docker inside),
the local cloud's registry with TLS and basic auth, Traefik on both hosts,
requests through the edge published on 127.0.0.1. One fleet for the module:

1. deploy v1 -> pre-deploy migrations create the schema in the db service
   (PostgreSQL on local-1), post-deploy ones seed it, and the route answers through
   the edge with what the database holds;
2. deploy v2 under a bounded load loop, with a pre-deploy migration that adds a
   column and a post-deploy one that backfills it -> zero failed requests;
3. deploy v3 whose healthcheck fails -> exit 6, v2 keeps serving with zero
   failed requests, the release is recorded as failed;
4. deploy v4 whose pre-deploy migration fails -> exit 9, nothing switched, v2
   serves, the schema is unchanged, the release holds the migration's output;
5. two `migrate run` at once for v4 (its migration now allowed) -> applied once;
6. a deploy while another holds the lock -> refused with exit 7;
7. rollback to v1 -> v1 serves (no migration runs backwards).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from shop_fleet import (
    ENV,
    LOAD_REQUESTS,
    STAGECRAFT,
    Edge,
    copy_example,
    fleet,
    releases,
    run_under_load,
    set_env_value,
    stagecraft,
)

pytestmark = [pytest.mark.fleet, pytest.mark.slow]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    with fleet(copy_example(tmp_path_factory.mktemp("e2e"), "e")) as directory:
        yield directory


@pytest.fixture(scope="module")
def edge(project: Path) -> Edge:
    return Edge.of(project)


def add_migration(project: Path, phase: str, name: str, sql: str) -> None:
    path = project / "app" / "migrations" / phase / name
    path.write_text(sql)
    subprocess.run(["git", "add", str(path)], cwd=project, check=True)
    subprocess.run(["git", "commit", "-qm", f"migration {phase}/{name}"], cwd=project,
                   check=True)


def db_facts(edge: Edge) -> dict:
    status, body = edge.get("/version")
    assert status == 200, (status, body)
    return json.loads(body)["db"]


def psql(project: Path, sql: str) -> str:
    """A query in the db service's container, through `stagecraft exec`."""
    result = stagecraft(project, "exec", "db", "--", "psql", "-U", "shop", "-d", "shop",
                        "-tAc", sql)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout.strip()


def test_deploy_v1_serves_through_the_edge(project: Path, edge: Edge) -> None:
    set_env_value(project, "APP_VERSION", "v1")
    result = stagecraft(project, "deploy", "--yes", "--output", "json")
    assert result.returncode == 0, result.stderr[-6000:]
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome["release"]["result"] == "succeeded"
    assert all(h["switched"] for h in outcome["release"]["hosts"].values())
    migrations = {m["phase"]: m for m in outcome["release"]["migrations"]}
    assert migrations["pre"]["applied"] == ["0001_create_items.sql"], migrations
    assert migrations["post"]["applied"] == ["0001_seed_items.sql"], migrations
    assert {m["host"] for m in migrations.values()} == {"local-1"}
    phases = [p["name"] for p in outcome["release"]["phases"]]
    assert phases.index("migrate-pre") < phases.index("migrate-post"), phases
    assert edge.version() == "v1"
    assert db_facts(edge) == {"schema": {"pre": "0001_create_items.sql",
                                         "post": "0001_seed_items.sql"},
                              "items": 2, "item_columns": ["id", "name", "price_cents"]}
    # Both hosts serve: the edge balances over its own and the other host's Traefik.
    seen = {json.loads(edge.get("/version")[1])["host"] for _ in range(20)}
    assert len(seen) >= 2, seen

    again = stagecraft(project, "plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    # Bootstrap applied the firewall and mounted the volume as the config says.
    infra = json.loads(stagecraft(project, "plan", "--output", "json").stdout)["infra"]
    assert infra == [], infra


def test_deploy_v2_under_load_fails_no_request(project: Path, edge: Edge) -> None:
    add_migration(project, "pre", "0002_add_stock.sql",
                  "ALTER TABLE items ADD COLUMN stock integer;\n")
    add_migration(project, "post", "0002_backfill_stock.sql",
                  "UPDATE items SET stock = 10 WHERE stock IS NULL;\n")
    set_env_value(project, "APP_VERSION", "v2")
    plan = stagecraft(project, "plan", "--detailed-exitcode")
    assert plan.returncode == 20, plan.stdout + plan.stderr
    assert "~ web" in plan.stdout, plan.stdout
    assert "migrate-pre" in plan.stdout and "migrate-post" in plan.stdout, plan.stdout
    before = len(releases(project))
    dry = stagecraft(project, "deploy", "--dry-run", "--yes")
    assert dry.returncode == 0, dry.stderr[-6000:]
    assert "checked, nothing changed" in dry.stderr and "web" in dry.stderr
    assert edge.version() == "v1" and len(releases(project)) == before
    result, loop = run_under_load(edge, "deploy", "--yes", project=project)
    assert result.returncode == 0, result.stderr[-6000:]
    assert loop.sent >= LOAD_REQUESTS
    assert loop.failures == [], loop.failures[:10]
    assert set(loop.versions) <= {"v1", "v2"}, loop.versions
    assert edge.version() == "v2"
    assert "migrate-pre" in result.stderr and "0002_add_stock.sql" in result.stderr
    facts = db_facts(edge)
    assert facts["item_columns"] == ["id", "name", "price_cents", "stock"], facts
    assert facts["schema"] == {"pre": "0002_add_stock.sql", "post": "0002_backfill_stock.sql"}
    assert psql(project, "SELECT count(*) FROM items WHERE stock IS NULL") == "0"


def test_unhealthy_v3_fails_and_v2_keeps_serving(project: Path, edge: Edge) -> None:
    set_env_value(project, "APP_FAIL_HEALTH", "1")
    set_env_value(project, "APP_VERSION", "v3")
    result, loop = run_under_load(edge, "deploy", "--yes", project=project)
    assert result.returncode == 6, result.stderr[-6000:]
    assert "healthy" in result.stderr
    assert loop.failures == [], loop.failures[:10]
    assert set(loop.versions) == {"v2"}, loop.versions
    assert edge.version() == "v2"
    newest = releases(project)[0]
    assert newest["result"] == "failed"
    assert newest["error"]["message"]
    set_env_value(project, "APP_FAIL_HEALTH", "0")


NOTE_MIGRATION = """\
DO $$ BEGIN
  IF to_regclass('public.allow_notes') IS NULL THEN
    RAISE EXCEPTION 'item notes are not allowed yet';
  END IF;
END $$;
ALTER TABLE items ADD COLUMN note text;
"""


def test_a_failing_pre_deploy_migration_switches_nothing(project: Path, edge: Edge) -> None:
    add_migration(project, "pre", "0003_add_note.sql", NOTE_MIGRATION)
    set_env_value(project, "APP_VERSION", "v4")
    result, loop = run_under_load(edge, "deploy", "--yes", project=project)
    assert result.returncode == 9, result.stderr[-6000:]
    assert "item notes are not allowed yet" in result.stderr, result.stderr[-6000:]
    assert "no host was switched" in result.stderr
    assert loop.failures == [], loop.failures[:10]
    assert set(loop.versions) == {"v2"}, loop.versions
    newest = releases(project)[0]
    assert newest["result"] == "failed" and newest["error"]["phase"] == "migrate-pre", newest
    assert not any(h["switched"] for h in newest["hosts"].values())
    (failed,) = newest["migrations"]
    assert failed["status"] == "failed" and "not allowed yet" in failed["output"], failed
    assert "note" not in db_facts(edge)["item_columns"]
    assert edge.version() == "v2"


def test_two_migrate_runs_at_once_apply_a_file_once(project: Path, edge: Edge) -> None:
    v4 = releases(project)[0]
    assert v4["result"] == "failed"
    plan = stagecraft(project, "migrate", "plan", "--phase", "pre", "--release", v4["id"],
                      "--output", "json")
    assert plan.returncode == 0, plan.stderr[-4000:]
    assert json.loads(plan.stdout)["phases"]["pre"]["pending"] == ["0003_add_note.sql"]
    psql(project, "CREATE TABLE allow_notes ()")
    runs = [subprocess.Popen([STAGECRAFT, "migrate", "run", "--phase", "pre", "--release",
                              v4["id"], "--output", "json"], cwd=project, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    done = [(run.wait(timeout=600), *run.communicate()) for run in runs]
    codes = sorted(code for code, _, _ in done)
    # One applies it; the other finds the deploy lock held (7) or nothing pending (0).
    assert codes in ([0, 0], [0, 7]), [(c, err[-2000:]) for c, _, err in done]
    applied = [json.loads(out)["applied"] for code, out, _ in done if code == 0]
    assert sorted(sum(applied, [])) == ["0003_add_note.sql"], applied
    assert psql(project, "SELECT count(*) FROM stagecraft_migrations "
                         "WHERE name = '0003_add_note.sql'") == "1"
    assert "note" in db_facts(edge)["item_columns"]


def test_a_second_deploy_is_refused_by_the_lock(project: Path) -> None:
    first = subprocess.Popen([STAGECRAFT, "deploy", "--yes", "--skip-build", "-m", "first"],
                             cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=ENV)
    try:
        deadline = time.monotonic() + 120
        held = None
        while time.monotonic() < deadline and first.poll() is None:
            status = stagecraft(project, "releases", "list", "--output", "json")
            running = [r for r in json.loads(status.stdout or "[]") if r["result"] == "running"]
            lock = [p for r in running for p in r["phases"] if p["name"] == "lock" and p["status"] == "ok"]
            if lock:
                held = True
                break
            time.sleep(0.2)
        assert held, "the first deploy never took the lock"
        second = stagecraft(project, "deploy", "--yes", "--skip-build")
        assert second.returncode == 7, second.stderr
        assert "first" in second.stderr and "held by" in second.stderr
    finally:
        out, err = first.communicate(timeout=900)
    assert first.returncode == 0, err[-4000:]


def test_rollback_to_v1(project: Path, edge: Edge) -> None:
    history = releases(project)
    v1 = [r for r in history if r["result"] == "succeeded" and r["action"] == "deploy"][-1]
    result = stagecraft(project, "rollback", "--to", v1["id"], "--yes")
    assert result.returncode == 0, result.stderr[-6000:]
    assert edge.version() == "v1"
    newest = releases(project)[0]
    assert newest["action"] == "rollback" and newest["rollback_of"] == v1["id"]
    assert newest["result"] == "succeeded"
