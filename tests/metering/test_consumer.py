"""The stream consumer against the real Redis and both stores: exactly once through crashes,
poison to the dead-letter stream, many consumers in one group, safe trimming, lag."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

import pytest
from redis.asyncio import Redis

from relay.metering.codec import encode
from relay.metering.consumer import ConsumerConfig, StreamConsumer, stream_status
from relay.metering.events import UsageEvent
from relay.metering.ledger import Ledger
from relay.metering.metrics import MeterMetrics
from relay.metering.producer import FIELD
from relay.metering.usage import tenant_spend, usage_report
from relay.store.db import Database, Executor
from tests.metering.events import usage_event

D = Decimal
M = D(1_000_000)


class Crash(Exception):
    """The process "dies" here."""


class CrashBeforeCommit(Ledger):
    """Writes the records, then dies inside the transaction: nothing may be committed."""

    async def _roll_up(self, tx: Executor, events: list[UsageEvent], charges: dict[str, object]) -> None:  # type: ignore[override]
        raise Crash("killed before COMMIT")


async def crash_after_commit(ids: Sequence[bytes]) -> None:
    raise Crash("killed after COMMIT, before XACK")


def consumer(redis: Redis, store: Database, config: ConsumerConfig, **kwargs: object) -> StreamConsumer:
    ledger = kwargs.pop("ledger", None) or Ledger(store)
    assert isinstance(ledger, Ledger)
    return StreamConsumer(redis, ledger, config, MeterMetrics.standalone(), **kwargs)  # type: ignore[arg-type]


def metric(c: StreamConsumer, name: str) -> float:
    return c.metrics.registry.get_sample_value(f"relay_meter_{name}_total") or 0.0


async def drain(c: StreamConsumer, polls: int = 50) -> None:
    """Poll until a poll finds nothing to do (bounded: a consumer that never settles fails the test)."""
    for _ in range(polls):
        if not await c.poll(block_ms=1):
            return
    raise AssertionError("the consumer did not settle")


async def add(redis: Redis, config: ConsumerConfig, events: Sequence[UsageEvent]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for e in events:
            pipe.xadd(config.stream, {FIELD: encode(e)})
        await pipe.execute()


async def pending(redis: Redis, config: ConsumerConfig) -> int:
    return int((await redis.xpending(config.stream, config.group))["pending"])


async def test_the_same_event_added_a_thousand_times_is_recorded_once(
    redis: Redis, store: Database, streams: ConsumerConfig
) -> None:
    c = consumer(redis, store, streams)
    await c.ensure_group()
    event = usage_event(tenant="t-1000", usage={"input_text_tokens": 1000})
    await add(redis, streams, [event] * 1000)
    await drain(c)
    assert await store.fetchone("SELECT count(*) FROM cost_records WHERE tenant = ?", ("t-1000",)) == (1,)
    assert (await usage_report(store, tenant="t-1000")).total.usage["input_text_tokens"] == 1000
    assert metric(c, "recorded") == 1 and metric(c, "duplicates") == 999
    assert await pending(redis, streams) == 0


async def test_killed_after_commit_before_ack_the_redelivery_changes_nothing(
    redis: Redis, store: Database, streams: ConsumerConfig
) -> None:
    events = [usage_event(tenant="t-ack", usage={"output_audio_tokens": 100 + i}) for i in range(20)]
    await add(redis, streams, events)
    first = consumer(redis, store, streams, after_commit=crash_after_commit)
    await first.ensure_group()
    with pytest.raises(Crash):
        await first.poll(block_ms=1)
    expected = sum(D(100 + i) * D(64) / M for i in range(20))
    assert await tenant_spend(store, "t-ack") == expected  # committed ...
    assert await pending(redis, streams) == 20  # ... but never acked

    second = consumer(redis, store, replace(streams, name="second"))
    await drain(second)  # XAUTOCLAIMs the dead consumer's entries (claim_idle_ms=0 here)
    assert metric(second, "claimed") == 20 and metric(second, "duplicates") == 20 and metric(second, "recorded") == 0
    assert await tenant_spend(store, "t-ack") == expected
    assert await pending(redis, streams) == 0


async def test_killed_before_commit_the_redelivery_counts_once(
    redis: Redis, store: Database, streams: ConsumerConfig
) -> None:
    events = [usage_event(tenant="t-pre", usage={"input_text_tokens": 1000}) for _ in range(10)]
    await add(redis, streams, events)
    first = consumer(redis, store, streams, ledger=CrashBeforeCommit(store))
    await first.ensure_group()
    with pytest.raises(Crash):
        await first.poll(block_ms=1)
    assert await store.fetchone("SELECT count(*) FROM cost_records WHERE tenant = ?", ("t-pre",)) == (0,)

    second = consumer(redis, store, replace(streams, name="second"))
    await drain(second)
    assert await store.fetchone("SELECT count(*) FROM cost_records WHERE tenant = ?", ("t-pre",)) == (10,)
    assert await tenant_spend(store, "t-pre") == 10 * D(1000) * D(4) / M
    assert await pending(redis, streams) == 0


async def test_a_poison_entry_ends_in_the_dead_letter_stream_after_n_deliveries(
    redis: Redis, store: Database, streams: ConsumerConfig
) -> None:
    c = consumer(redis, store, replace(streams, claim_interval_ms=0))
    await c.ensure_group()
    good = usage_event(tenant="t-poison")
    await redis.xadd(streams.stream, {FIELD: b"\xc1 not an event"})
    await add(redis, streams, [good])
    await c.poll(block_ms=1)  # delivery 1: the good one is recorded, the poison one stays pending
    assert await pending(redis, streams) == 1
    for _ in range(streams.max_deliveries - 1):
        await c.poll(block_ms=1)  # deliveries 2 .. N, each through XAUTOCLAIM
        assert await redis.xlen(streams.dead_letter_stream) == 0
    await c.poll(block_ms=1)  # delivery N + 1 is not attempted: the entry is dead-lettered
    assert await pending(redis, streams) == 0
    [(_, dead)] = await redis.xrange(streams.dead_letter_stream)
    assert dead[FIELD] == b"\xc1 not an event"
    assert int(dead[b"deliveries"]) == streams.max_deliveries + 1
    assert dead[b"reason"].startswith(b"poison")
    assert metric(c, "dead_letters") == 1 and metric(c, "failed") == streams.max_deliveries
    assert await store.fetchone("SELECT count(*) FROM cost_records WHERE tenant = ?", ("t-poison",)) == (1,)


async def test_many_consumers_share_the_group_and_each_event_is_charged_once(
    redis: Redis, store: Database, streams: ConsumerConfig
) -> None:
    events = [usage_event(tenant="t-many", usage={"input_text_tokens": 1}) for _ in range(600)]
    group = [consumer(redis, store, replace(streams, name=f"c{i}")) for i in range(3)]
    await group[0].ensure_group()
    await add(redis, streams, events + events[:100])  # some duplicates too

    async def run(c: StreamConsumer) -> None:
        await drain(c, polls=200)

    await asyncio.gather(*(run(c) for c in group))
    assert await store.fetchone("SELECT count(*) FROM cost_records WHERE tenant = ?", ("t-many",)) == (600,)
    assert (await usage_report(store, tenant="t-many")).total.events == 600
    assert sum(metric(c, "recorded") for c in group) == 600
    assert sum(metric(c, "recorded") > 0 for c in group) >= 2  # the work was shared
    assert await pending(redis, streams) == 0


async def test_trimming_keeps_every_entry_a_group_still_needs(
    redis: Redis, store: Database, streams: ConsumerConfig
) -> None:
    c = consumer(redis, store, streams)
    await c.ensure_group()
    await add(redis, streams, [usage_event(tenant="t-trim") for _ in range(10)])
    await drain(c)
    await add(redis, streams, [usage_event(tenant="t-trim") for _ in range(5)])
    # Another consumer takes these five and (so far) acks nothing.
    await redis.xreadgroup(streams.group, "slow", {streams.stream: ">"}, count=5)
    await add(redis, streams, [usage_event(tenant="t-trim") for _ in range(3)])  # not delivered yet
    status = await stream_status(redis, streams)
    assert status.groups[0]["pending"] == 5 and status.groups[0]["lag"] == 3
    await c.housekeeping()
    assert await redis.xlen(streams.stream) == 8  # the 10 acked are gone, the 5 pending and 3 new stay
    assert c.metrics.registry.get_sample_value("relay_meter_pending") == 5
    assert c.metrics.registry.get_sample_value("relay_meter_lag") == 3
    await drain(c)  # claims the slow consumer's five (idle >= 0 ms) and reads the three
    assert await store.fetchone("SELECT count(*) FROM cost_records WHERE tenant = ?", ("t-trim",)) == (18,)
    assert metric(c, "trimmed_unacked") == 0
