"""Benchmark of the metering pipeline: what `emit()` costs the session's hot path, and how many usage
events per second go through producer -> Redis -> consumer -> store.

    .venv/bin/python -m loadtest.metering_bench [--events N] [--redis-url URL] [--postgres-url URL]

Rows:

- ``emit()`` latency, in µs per call (p50, p99, max), measured call by call while the writer task
  runs in the same event loop and XADDs to Redis, next to a ``MemorySink.emit`` baseline (a deque
  append: the floor of any sink). ``emit()`` never awaits; the point is that it adds nothing
  measurable to a response (one event per response, not per audio frame).
- throughput, events/s, from the first ``emit()`` until the ledger has committed the last event:
  the Redis pipeline into PostgreSQL and into SQLite (one consumer, batches of ``--batch``), and the
  embedded default (no Redis: producer -> ledger -> SQLite).

It needs Redis and PostgreSQL (the same defaults as the tests: ``REDIS_URL``/``TEST_REDIS_URL`` or
127.0.0.1:6379; ``TEST_DATABASE_URL`` or postgresql://postgres@127.0.0.1:5432/postgres, on which a
throwaway database is created and dropped). Streams get unique names and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import psycopg
from redis.asyncio import Redis

from providers.events import Usage
from relay.metering.consumer import ConsumerConfig, StreamConsumer
from relay.metering.events import UsageEvent
from relay.metering.journal import Journal
from relay.metering.ledger import Ledger, RecordResult
from relay.metering.metrics import MeterMetrics
from relay.metering.pipeline import LedgerTransport, connect_redis
from relay.metering.producer import Producer, RedisStreamTransport, Transport
from relay.metering.sink import MemorySink
from relay.store.db import Database, open_database
from relay.store.migrate import migrate


@dataclass
class LatencyRow:
    sink: str
    calls: int
    p50_us: float
    p99_us: float
    max_us: float


@dataclass
class ThroughputRow:
    pipeline: str
    events: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.events / self.seconds


def event(i: int, run: str) -> UsageEvent:
    return UsageEvent(
        event_id=uuid.uuid4().hex,
        kind="response",
        tenant=f"bench-{run}",
        session_id=f"s{i // 10}",
        response_id=f"r{i}",
        provider="openai",
        model="gpt-realtime",
        usage=Usage(input_text_tokens=120 + i % 7, input_audio_tokens=800, output_audio_tokens=1600, audio_out_ms=4000),
        ts_ms=int(time.time() * 1000),
        metadata={"customer": "c-1"},
    )


class CountingLedger(Ledger):
    """Sets `done` once `target` events are committed: the end of a throughput run."""

    def __init__(self, db: Database, target: int) -> None:
        super().__init__(db)
        self.target = target
        self.recorded = 0
        self.done = asyncio.Event()

    async def record(self, events: Sequence[UsageEvent]) -> RecordResult:
        result = await super().record(events)
        self.recorded += result.recorded
        if self.recorded >= self.target:
            self.done.set()
        return result


async def emit_latency(redis_url: str, calls: int, journal_dir: str) -> list[LatencyRow]:
    rows = []
    memory = MemorySink()
    events = [event(i, "lat") for i in range(calls)]
    rows.append(_time_emits("MemorySink.emit (baseline)", memory.emit, events))
    redis = connect_redis(redis_url)
    stream = f"bench:latency:{uuid.uuid4().hex[:8]}"
    producer = Producer(
        RedisStreamTransport(redis, stream), Journal.open(os.path.join(journal_dir, "lat")), queue_size=calls + 1
    )
    producer.start()
    try:
        # Spread over loop iterations (as sessions emit: one event per response), the writer XADDing meanwhile.
        samples: list[int] = []
        for chunk_start in range(0, calls, 50):
            samples.extend(_emit_ns(producer.emit, events[chunk_start : chunk_start + 50]))
            await asyncio.sleep(0)
        rows.append(_latency_row("Producer.emit (Redis writer running)", samples))
        await producer.flush(30)
    finally:
        await producer.close()
        await redis.delete(stream)
        await redis.aclose()
    # The worst case: Redis unreachable and the queue full, so every emit() writes the journal itself.
    down = connect_redis("redis://127.0.0.1:1/0")
    spilling = Producer(
        RedisStreamTransport(down, stream), Journal.open(os.path.join(journal_dir, "down")), queue_size=1
    )
    spilling.emit(events[0])
    spilling.emit(events[1])  # the queue (1) is full: spilling from here on
    rows.append(_time_emits("Producer.emit (Redis down, spilling)", spilling.emit, events[2:]))
    spilling.flush_timeout_s = 0
    await spilling.close()
    await down.aclose()
    return rows


def _emit_ns(emit: object, events: Sequence[UsageEvent]) -> list[int]:
    assert callable(emit)
    out = []
    clock = time.perf_counter_ns
    for e in events:
        t0 = clock()
        emit(e)
        out.append(clock() - t0)
    return out


def _time_emits(name: str, emit: object, events: Sequence[UsageEvent]) -> LatencyRow:
    gc.disable()
    try:
        samples = _emit_ns(emit, events)
    finally:
        gc.enable()
    return _latency_row(name, samples)


def _latency_row(name: str, samples_ns: list[int]) -> LatencyRow:
    ordered = sorted(samples_ns)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000

    return LatencyRow(name, len(ordered), pick(0.50), pick(0.99), ordered[-1] / 1000)


async def through_redis(redis_url: str, db: Database, n: int, batch: int, label: str, journal: str) -> ThroughputRow:
    tag = uuid.uuid4().hex[:8]
    config = ConsumerConfig(
        stream=f"bench:usage:{tag}", group=f"bench-{tag}", dead_letter_stream=f"bench:usage:{tag}:dead",
        batch_size=batch, block_ms=100, trim=False,
    )  # fmt: skip
    redis = connect_redis(redis_url)
    consumer_redis = connect_redis(redis_url, block_ms=config.block_ms)
    ledger = CountingLedger(db, n)
    consumer = StreamConsumer(consumer_redis, ledger, config, MeterMetrics.standalone())
    await consumer.ensure_group()
    # A queue as large as the run: this measures the normal path, not the journal.
    producer = Producer(
        RedisStreamTransport(redis, config.stream), Journal.open(journal), batch_size=batch, queue_size=n
    )
    return await _run(label, producer, ledger, n, consumer, [redis, consumer_redis], config)


async def embedded(db: Database, n: int, batch: int, journal: str) -> ThroughputRow:
    ledger = CountingLedger(db, n)
    metrics = MeterMetrics.standalone()
    transport: Transport = LedgerTransport(ledger, Journal.open(journal + ".dead"), metrics)
    producer = Producer(transport, Journal.open(journal), metrics, batch_size=batch, queue_size=n)
    return await _run("embedded: producer -> ledger -> SQLite", producer, ledger, n, None, [], None)


async def _run(
    label: str,
    producer: Producer,
    ledger: CountingLedger,
    n: int,
    consumer: StreamConsumer | None,
    clients: list[Redis],
    config: ConsumerConfig | None,
) -> ThroughputRow:
    run = uuid.uuid4().hex[:8]
    events = [event(i, run) for i in range(n)]
    consumer_task = asyncio.create_task(consumer.run()) if consumer is not None else None
    producer.start()
    started = time.perf_counter()
    for i in range(0, n, 500):
        for e in events[i : i + 500]:
            producer.emit(e)
        await asyncio.sleep(0)  # the writer (and consumer) run between bursts, as in a live relay
    await asyncio.wait_for(ledger.done.wait(), 300)
    elapsed = time.perf_counter() - started
    await producer.close()
    if consumer is not None and consumer_task is not None:
        consumer.stop()
        await consumer_task
    for client in clients:
        if config is not None:
            await client.delete(config.stream, config.dead_letter_stream)
        await client.aclose()
    return ThroughputRow(label, n, elapsed)


@contextlib.asynccontextmanager
async def pg_database(admin_url: str) -> AsyncIterator[Database]:
    name = f"relay_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db = await open_database(urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}")))
    try:
        await migrate(db)
        yield db
    finally:
        await db.close()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def sqlite_database(directory: str, name: str) -> AsyncIterator[Database]:
    db = await open_database(f"sqlite:///{os.path.join(directory, name)}")
    try:
        await migrate(db)
        yield db
    finally:
        await db.close()


async def main_async(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="relay-meter-bench-") as tmp:
        latency = await emit_latency(args.redis_url, args.emit_calls, tmp)
        throughput = []
        async with pg_database(args.postgres_url) as pg:
            label = "producer -> Redis -> consumer -> PostgreSQL"
            throughput.append(await through_redis(args.redis_url, pg, args.events, args.batch, label, f"{tmp}/j1"))
        async with sqlite_database(tmp, "redis.db") as lite:
            label = "producer -> Redis -> consumer -> SQLite"
            throughput.append(await through_redis(args.redis_url, lite, args.events, args.batch, label, f"{tmp}/j2"))
        async with sqlite_database(tmp, "embedded.db") as lite:
            throughput.append(await embedded(lite, args.events, args.batch, f"{tmp}/j3"))
    print(f"emit() latency ({args.emit_calls} calls each)")
    print(f"| {'sink':<40} | {'p50 µs':>8} | {'p99 µs':>8} | {'max µs':>8} |")
    print(f"|{'-' * 42}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    for r in latency:
        print(f"| {r.sink:<40} | {r.p50_us:>8.2f} | {r.p99_us:>8.2f} | {r.max_us:>8.1f} |")
    print()
    print(f"throughput ({args.events} events, batch {args.batch}, one consumer)")
    print(f"| {'pipeline':<46} | {'events/s':>9} | {'seconds':>8} |")
    print(f"|{'-' * 48}|{'-' * 11}|{'-' * 10}|")
    for t in throughput:
        print(f"| {t.pipeline:<46} | {t.per_second:>9.0f} | {t.seconds:>8.2f} |")
    return 0


def _default_redis() -> str:
    return os.environ.get("TEST_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def _default_postgres() -> str:
    found = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL") or ""
    return found if found.startswith("postgres") else "postgresql://postgres@127.0.0.1:5432/postgres"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.metering_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per throughput run (default 20000)")
    parser.add_argument("--batch", type=int, default=200, help="XADD / XREADGROUP / transaction batch (default 200)")
    parser.add_argument("--emit-calls", type=int, default=20_000, help="emit() calls timed per sink (default 20000)")
    parser.add_argument("--redis-url", default=_default_redis())
    parser.add_argument("--postgres-url", default=_default_postgres(), help="server to create a throwaway DB on")
    args = parser.parse_args(argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
