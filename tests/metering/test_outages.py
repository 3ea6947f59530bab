"""Redis failing under the pipeline, on private redis-servers (the shared one is never touched):
down for a while under load (nothing lost, spills and replays counted), and restarted empty
(the consumer recovers from NOGROUP and goes on)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest_asyncio

from relay.metering.consumer import ConsumerConfig, StreamConsumer
from relay.metering.events import UsageEvent
from relay.metering.journal import Journal
from relay.metering.ledger import Ledger, RecordResult
from relay.metering.metrics import MeterMetrics
from relay.metering.pipeline import connect_redis
from relay.metering.producer import Producer, RedisStreamTransport
from relay.metering.usage import tenant_spend
from relay.store.db import Database
from tests.metering.events import usage_event
from tests.metering.redis_server import PrivateRedis

D = Decimal
M = D(1_000_000)


class WatchedLedger(Ledger):
    """A ledger that says when it has written something (so tests wait on an event, not a clock)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.recorded = 0
        self.changed = asyncio.Event()

    async def record(self, events: Sequence[UsageEvent]) -> RecordResult:
        result = await super().record(events)
        self.recorded += result.recorded
        self.changed.set()
        return result

    async def wait_for(self, n: int, timeout_s: float = 20.0) -> None:
        async with asyncio.timeout(timeout_s):
            while self.recorded < n:
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def pipeline(
    server: PrivateRedis, store: Database, streams: ConsumerConfig, tmp_path: Path
) -> AsyncIterator[tuple[Producer, StreamConsumer, WatchedLedger]]:
    metrics = MeterMetrics.standalone()
    redis = connect_redis(server.url)
    producer = Producer(
        RedisStreamTransport(redis, streams.stream),
        Journal.open(str(tmp_path / "journal")),
        metrics,
        queue_size=100,
        batch_size=50,
        spill_after_s=0.2,
        backoff_max_s=0.1,
    )
    producer.start()
    ledger = WatchedLedger(store)
    config = replace(streams, block_ms=50, claim_idle_ms=1000, backoff_max_s=0.1)
    consumer = StreamConsumer(connect_redis(server.url, block_ms=50), ledger, config, metrics)
    task = asyncio.create_task(consumer.run())
    try:
        yield producer, consumer, ledger
    finally:
        await producer.close()
        consumer.stop()
        await task
        await consumer.redis.aclose()
        await redis.aclose()


def metric(metrics: MeterMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(f"relay_meter_{name}_total") or 0.0


async def produce(producer: Producer, n: int, tenant: str) -> None:
    for i in range(n):
        producer.emit(usage_event(tenant=tenant, usage={"input_text_tokens": 1000}))
        if i % 10 == 9:
            await asyncio.sleep(0)  # let the writer run, as a live relay's event loop would


@pytest_asyncio.fixture(loop_scope="session")
async def durable_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis", persistent=True)
    server.start()
    yield server
    server.stop()


async def test_redis_down_under_load_loses_nothing(
    durable_redis: PrivateRedis, store: Database, streams: ConsumerConfig, tmp_path: Path
) -> None:
    async with pipeline(durable_redis, store, streams, tmp_path) as (producer, _consumer, ledger):
        await produce(producer, 300, "t-outage")
        await ledger.wait_for(300)
        durable_redis.stop()
        await produce(producer, 500, "t-outage")  # far more than the queue holds: it spills
        spilled = metric(producer.metrics, "spilled")
        assert spilled > 0 and producer.spilling
        durable_redis.start()  # the same port, with everything it had acknowledged
        await produce(producer, 200, "t-outage")
        await ledger.wait_for(1000)
        assert await producer.flush()
        assert metric(producer.metrics, "replayed") >= spilled
        assert metric(producer.metrics, "send_errors") > 0
        assert metric(producer.metrics, "lost") == 0
    assert await store.fetchone("SELECT count(*) FROM cost_records WHERE tenant = ?", ("t-outage",)) == (1000,)
    assert await tenant_spend(store, "t-outage") == 1000 * D(1000) * D(4) / M


async def test_redis_restarted_empty_the_consumer_recreates_its_group_and_goes_on(
    private_redis: PrivateRedis, store: Database, streams: ConsumerConfig, tmp_path: Path
) -> None:
    async with pipeline(private_redis, store, streams, tmp_path) as (producer, consumer, ledger):
        await produce(producer, 50, "t-empty")
        await ledger.wait_for(50)
        private_redis.restart()  # no persistence: the stream and the group are gone
        await produce(producer, 70, "t-empty")
        await ledger.wait_for(120)
        assert metric(consumer.metrics, "group_recreated") >= 1
    assert await store.fetchone("SELECT count(*) FROM cost_records WHERE tenant = ?", ("t-empty",)) == (120,)
