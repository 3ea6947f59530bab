"""Every store test runs on both dialects: a SQLite file and the real PostgreSQL.

PostgreSQL tests get a database of their own (created here, dropped after), so migrations start
from nothing each time, exactly as they do for SQLite's fresh file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from relay.store.db import Database, open_database
from relay.store.migrate import migrate
from tests.store.pg import PgDatabases

DIALECTS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_databases(postgres_url: str) -> Iterator[PgDatabases]:
    databases = PgDatabases(postgres_url)
    yield databases
    databases.drop_all()


@pytest.fixture(params=DIALECTS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database's URL, one per test, in each dialect."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    databases: PgDatabases = request.getfixturevalue("pg_databases")
    url = databases.create()
    yield url
    databases.drop(url)


@pytest_asyncio.fixture(loop_scope="session")
async def db(database_url: str) -> AsyncIterator[Database]:
    """An empty, open database (not migrated)."""
    database = await open_database(database_url)
    yield database
    await database.close()


@pytest_asyncio.fixture(loop_scope="session")
async def migrated(db: Database) -> Database:
    await migrate(db)
    return db
