"""The drizzle engine for real: the example image (examples/migrations/drizzle, built
FROM stagecraft/runtime with Debian's Node.js and the locked drizzle-kit, drizzle-orm
and pg) against a real PostgreSQL (tests/migrations_db.py), every command run by
LocalDockerRunner in a one-off container on the database's network.

The image is cached by content hash (tests/fixtures/migrations/node_images.py): the
first run on a machine builds it (~3-4 min), later runs reuse it.
"""

from __future__ import annotations

import pytest
from fixtures.migrations.node_images import ensure_example_image
from migrations_db import migrations_db  # noqa: F401  (the fixture)

from stagecraft.errors import MigrationFailed
from stagecraft.migrations.base import PhaseSpec
from stagecraft.migrations.drizzle import DrizzleMigrator
from stagecraft.migrations.runner import LocalDockerRunner

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

SPEC = PhaseSpec("pre", path="drizzle")
TAGS = ("0000_create_users", "0001_add_posts")
TIMEOUT = 180


@pytest.fixture(scope="module")
def image() -> str:
    return ensure_example_image("drizzle")


def runner(image: str, db, url: str) -> LocalDockerRunner:
    return LocalDockerRunner(image, network=db.network, secret_env={"DATABASE_URL": url},
                             name_prefix="sc-migtest-drizzle")


def tables(db, database: str) -> list[str]:
    return db.psql("SELECT table_name FROM information_schema.tables "
                   "WHERE table_schema = 'public' ORDER BY 1", database=database).split()


def test_pending_apply_apply_pending(image, migrations_db):
    url = migrations_db.create_database("drizzle_cycle")
    run = runner(image, migrations_db, url)
    migrator = DrizzleMigrator()

    before = migrator.pending(SPEC, run, timeout=TIMEOUT)
    assert before.pending == TAGS
    assert tables(migrations_db, "drizzle_cycle") == []  # pending changed nothing

    first = migrator.apply(SPEC, run, timeout=TIMEOUT)
    assert first.applied_now == TAGS
    assert first.pending == ()
    assert tables(migrations_db, "drizzle_cycle") == ["posts", "users"]
    # drizzle-kit's own bookkeeping agrees: one row per migration, with its hash.
    hashes = migrations_db.psql("SELECT hash FROM drizzle.__drizzle_migrations ORDER BY id",
                                database="drizzle_cycle").split()
    assert hashes == [m.checksum for m in first.migrations]
    # The schema works: the foreign key from posts to users holds.
    migrations_db.psql("INSERT INTO users (email) VALUES ('a@example.test');"
                       "INSERT INTO posts (title, author_id) VALUES ('hello', 1)",
                       database="drizzle_cycle")

    second = migrator.apply(SPEC, run, timeout=TIMEOUT)
    assert second.applied_now == ()
    after = migrator.pending(SPEC, run, timeout=TIMEOUT)
    assert after.pending == ()
    assert [m.name for m in after.migrations] == list(TAGS)
    assert migrations_db.psql("SELECT count(*) FROM drizzle.__drizzle_migrations",
                              database="drizzle_cycle") == "2"

    # The post-deploy phase keeps its own table: the same folder is all pending there.
    post = migrator.pending(PhaseSpec("post", path="drizzle"), run, timeout=TIMEOUT)
    assert post.pending == TAGS


def test_a_failing_migration_is_named_and_nothing_is_kept(image, migrations_db):
    url = migrations_db.create_database("drizzle_fails")
    migrations_db.psql("CREATE TABLE posts (id int)", database="drizzle_fails")
    with pytest.raises(MigrationFailed) as info:
        DrizzleMigrator().apply(SPEC, runner(image, migrations_db, url), timeout=TIMEOUT)
    assert "0001_add_posts fails with" in info.value.message
    assert 'relation "posts" already exists' in info.value.message
    # drizzle-kit applies the pending migrations in one transaction: users is gone too.
    assert tables(migrations_db, "drizzle_fails") == ["posts"]
