"""The prisma engine for real: the example image (examples/migrations/prisma, built
FROM stagecraft/runtime with Debian's Node.js and the locked prisma and
@prisma/adapter-pg) against a real PostgreSQL (tests/migrations_db.py), every command
run by LocalDockerRunner in a one-off container on the database's network.

Prisma's native engines come from binaries.prisma.sh, which this machine cannot
reach; the example configures the pg driver adapter (prisma.config.ts), with which
Prisma 6 runs its schema engine as WebAssembly from the npm package. So this is
Prisma Migrate itself, not a stand-in.

The image is cached by content hash (tests/fixtures/migrations/node_images.py).
"""

from __future__ import annotations

import pytest
from fixtures.migrations.node_images import ensure_example_image
from migrations_db import migrations_db  # noqa: F401  (the fixture)

from stagecraft.errors import MigrationFailed
from stagecraft.migrations.base import PhaseSpec
from stagecraft.migrations.prisma import PrismaMigrator
from stagecraft.migrations.runner import LocalDockerRunner

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

SPEC = PhaseSpec("pre", path="prisma/schema.prisma")
NAMES = ("20261121000001_create_users", "20261121000002_add_posts")
TIMEOUT = 180


@pytest.fixture(scope="module")
def image() -> str:
    return ensure_example_image("prisma")


def runner(image: str, db, url: str) -> LocalDockerRunner:
    return LocalDockerRunner(image, network=db.network, secret_env={"DATABASE_URL": url},
                             name_prefix="sc-migtest-prisma")


def tables(db, database: str) -> list[str]:
    return db.psql("SELECT table_name FROM information_schema.tables "
                   "WHERE table_schema = 'public' ORDER BY 1", database=database).split()


def test_pending_apply_apply_pending(image, migrations_db):
    url = migrations_db.create_database("prisma_cycle")
    run = runner(image, migrations_db, url)
    migrator = PrismaMigrator()

    before = migrator.pending(SPEC, run, timeout=TIMEOUT)
    assert before.pending == NAMES
    assert "User" not in tables(migrations_db, "prisma_cycle")  # pending created no table

    first = migrator.apply(SPEC, run, timeout=TIMEOUT)
    assert first.applied_now == NAMES
    assert first.pending == ()
    assert tables(migrations_db, "prisma_cycle") == ["Post", "User", "_prisma_migrations"]
    finished = migrations_db.psql(
        "SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL "
        "ORDER BY migration_name", database="prisma_cycle").split()
    assert tuple(finished) == NAMES
    migrations_db.psql("""INSERT INTO "User" (email) VALUES ('a@example.test')""",
                       database="prisma_cycle")

    second = migrator.apply(SPEC, run, timeout=TIMEOUT)
    assert second.applied_now == ()
    after = migrator.pending(SPEC, run, timeout=TIMEOUT)
    assert after.pending == ()
    assert tuple(m.name for m in after.migrations) == NAMES


def test_a_failing_migration_is_named_and_recorded_as_failed(image, migrations_db):
    url = migrations_db.create_database("prisma_fails")
    run = runner(image, migrations_db, url)
    migrator = PrismaMigrator()
    # Both apply; then the second is forgotten and a table it creates appears.
    migrator.apply(SPEC, run, timeout=TIMEOUT)
    migrations_db.psql("""DROP TABLE "Post";
        DELETE FROM _prisma_migrations WHERE migration_name = '20261121000002_add_posts';
        CREATE TABLE "Post" (id int)""", database="prisma_fails")

    with pytest.raises(MigrationFailed) as info:
        migrator.apply(SPEC, run, timeout=TIMEOUT)
    assert "migration 20261121000002_add_posts failed" in info.value.message
    assert 'relation "Post" already exists' in info.value.message
    with pytest.raises(MigrationFailed, match="failed earlier"):
        migrator.pending(SPEC, run, timeout=TIMEOUT)
