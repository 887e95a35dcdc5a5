"""A real PostgreSQL for migration tests: a ``stagecraft/postgres`` container on its own
Docker network, so one-off migration containers on that network reach it by name.

Used by tests/integration/test_migrations_raw_db.py and by the drizzle and prisma
engine tests (written by another helper against the same fixture). Use it as::

    from migrations_db import migrations_db  # noqa: F401  (the fixture)

    @pytest.mark.fleet
    def test_something(migrations_db):
        url = migrations_db.create_database("t1")  # a fresh database per test
        ...  # run containers with --network migrations_db.network, DATABASE_URL=url
        assert migrations_db.psql("select count(*) from t", database="t1") == "1"

Every container and network it makes is removed afterwards, also when a test fails.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

USER = "stagecraft"
# Not a secret: a throwaway database on a private test network. It has a character
# that URLs must escape, so URL handling is exercised too.
PASSWORD = "test-pw+1"
DATABASE = "app"
PREFIX = "sc-migtest"


def _docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          check=check)


@dataclass(frozen=True)
class MigrationsDB:
    """A running PostgreSQL: its network, container, image and connection URL."""

    network: str
    container: str
    image: str  # the stagecraft/postgres tag it runs
    user: str = USER
    password: str = PASSWORD
    database: str = DATABASE

    def url_for(self, database: str) -> str:
        """postgresql:// URL of ``database``, valid from containers on ``network``."""
        return (f"postgresql://{self.user}:{self.password.replace('+', '%2B')}"
                f"@{self.container}:5432/{database}")

    @property
    def url(self) -> str:
        """URL of the default database, valid from containers on ``network``."""
        return self.url_for(self.database)

    def psql(self, sql: str, *, database: str | None = None) -> str:
        """Run ``sql`` with psql inside the database container (unaligned, tuples only,
        stopping at the first error) and return its stdout, stripped."""
        proc = subprocess.run(
            ["docker", "exec", "-i", self.container, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
             "-U", self.user, "-d", database or self.database, "-At", "-f", "-"],
            input=sql, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise AssertionError(f"psql failed ({proc.returncode}): {proc.stderr.strip()}\n{sql}")
        return proc.stdout.strip()

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` (dropped first if it exists); its URL."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url_for(name)


@contextmanager
def postgres(prefix: str = PREFIX, *, ready_timeout: float = 60) -> Iterator[MigrationsDB]:
    """A PostgreSQL container on a new network, ready for connections; both removed on
    exit (also on failure)."""
    from stagecraft.providers.cloud.local.service_images import ensure_postgres_image

    image = ensure_postgres_image()
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    db = MigrationsDB(network=name, container=f"{name}-db", image=image)
    try:
        _docker("network", "create", "--label", "org.stagecraft.test=migrations", db.network)
        _docker("run", "-d", "--name", db.container, "--network", db.network,
                "--label", "org.stagecraft.test=migrations",
                "-e", f"POSTGRES_USER={db.user}", "-e", f"POSTGRES_PASSWORD={db.password}",
                "-e", f"POSTGRES_DB={db.database}", image)
        _wait_ready(db, ready_timeout)
        yield db
    finally:
        _docker("rm", "-f", "-v", db.container, check=False)
        _docker("network", "rm", db.network, check=False)


def _wait_ready(db: MigrationsDB, timeout: float) -> None:
    """Until the server takes TCP connections with the password (what clients do)."""
    deadline = time.monotonic() + timeout
    while True:
        proc = _docker("exec", "-e", f"PGPASSWORD={db.password}", db.container, "pg_isready",
                       "-q", "-h", "127.0.0.1", "-U", db.user, "-d", db.database, check=False)
        if proc.returncode == 0:
            return
        if time.monotonic() > deadline:
            logs = _docker("logs", "--tail", "30", db.container, check=False)
            raise AssertionError(f"PostgreSQL did not get ready in {timeout:.0f} s:\n"
                                 f"{logs.stdout}{logs.stderr}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def migrations_db() -> Iterator[MigrationsDB]:
    """One PostgreSQL per test module (tests take their own database with
    ``create_database``)."""
    with postgres() as db:
        yield db
