"""Metering fixtures: migrated stores in both dialects, unique Redis stream names, private redis-servers.

The shared Redis (``redis_url``) is used with stream and group names unique to each test. Tests
that stop, restart or empty Redis get a private ``redis-server`` of their own (``PrivateRedis``):
the shared server is never flushed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from relay.metering.consumer import ConsumerConfig
from relay.store.db import Database, open_database
from relay.store.migrate import migrate
from tests.metering.redis_server import PrivateRedis
from tests.store.pg import PgDatabases

DIALECTS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def meter_pg(postgres_url: str) -> Iterator[PgDatabases]:
    databases = PgDatabases(postgres_url)
    yield databases
    databases.drop_all()


@pytest.fixture(params=DIALECTS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each dialect, one per test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meter.db'}"
        return
    databases: PgDatabases = request.getfixturevalue("meter_pg")
    url = databases.create()
    yield url
    databases.drop(url)


@pytest_asyncio.fixture(loop_scope="session")
async def store(store_url: str) -> AsyncIterator[Database]:
    """A migrated store (seed prices included)."""
    db = await open_database(store_url)
    await migrate(db)
    yield db
    await db.close()


@pytest_asyncio.fixture(loop_scope="session")
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def streams(redis: Redis) -> AsyncIterator[ConsumerConfig]:
    """Stream, group and dead-letter names of this test's own; deleted afterwards."""
    tag = uuid.uuid4().hex[:10]
    config = ConsumerConfig(
        stream=f"test:usage:{tag}",
        group=f"meter-{tag}",
        dead_letter_stream=f"test:usage:{tag}:dead",
        name=f"c-{tag}",
        batch_size=50,
        block_ms=10,
        claim_idle_ms=0,
        max_deliveries=3,
    )
    yield config
    await redis.delete(config.stream, config.dead_letter_stream)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()
