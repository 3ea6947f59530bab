"""Assembling the metering pipeline a relay process runs, from its settings.

- ``REDIS_URL`` set: ``Producer`` -> ``RedisStreamTransport`` (XADD). The consumer runs in
  ``realtime-relay meter`` processes, and also in this relay when ``RELAY_METER_IN_PROCESS`` is on.
- ``REDIS_URL`` unset (the embedded default): ``Producer`` -> ``LedgerTransport``, which hands each
  batch straight to the same ``Ledger`` the stream consumer uses, writing to ``DATABASE_URL``
  (SQLite by default). Same queue, same journal, same exactly-once ledger; no Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from relay.config import Settings
from relay.metering.codec import DecodeError, decode, encode
from relay.metering.consumer import ConsumerConfig, StreamConsumer
from relay.metering.events import UsageEvent
from relay.metering.journal import Journal
from relay.metering.ledger import Ledger
from relay.metering.metrics import MeterMetrics
from relay.metering.producer import Producer, RedisStreamTransport
from relay.store.db import Database, StoreError, StoreUnavailable, sqlite_path

LOG = logging.getLogger("relay.metering")

# Redis commands are short; a BLOCKing XREADGROUP waits at most block_ms on top of this.
REDIS_SOCKET_TIMEOUT_S = 5.0
REDIS_CONNECT_TIMEOUT_S = 2.0


def connect_redis(url: str, *, block_ms: int = 0) -> Redis:
    """A client that fails fast: our own loops retry, with backoff, metrics and rate-limited logs.
    One immediate retry stays, so that a pooled connection Redis dropped (a restart) is replaced
    without a failure being reported."""
    return Redis.from_url(
        url,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S + block_ms / 1000,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        retry=Retry(NoBackoff(), 1),
    )


def consumer_config(settings: Settings) -> ConsumerConfig:
    return ConsumerConfig(
        stream=settings.meter_stream,
        group=settings.meter_group,
        dead_letter_stream=settings.meter_dead_letter_stream,
        name=settings.meter_consumer_name,
        batch_size=settings.meter_batch_size,
        claim_idle_ms=settings.meter_claim_idle_ms,
        max_deliveries=settings.meter_max_deliveries,
    )


class LedgerTransport:
    """The embedded default's transport: record each batch in the ledger directly.

    The stream consumer's poison handling, in-process: a batch the store refuses (other than being
    unreachable) is recorded one event at a time; an event refused ``max_deliveries`` times is
    written to the dead-letter journal (``<journal>.dead``), logged and counted, so one bad event
    cannot hold up — or spill — every later one.
    """

    def __init__(self, ledger: Ledger, dead_letters: Journal, metrics: MeterMetrics, max_deliveries: int = 5) -> None:
        self.ledger = ledger
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.max_deliveries = max_deliveries
        self._failures: dict[str, int] = {}

    async def send(self, payloads: Sequence[bytes]) -> None:
        events: list[UsageEvent] = []
        for payload in payloads:
            try:
                events.append(decode(payload))
            except DecodeError as exc:  # only damage can do this: we encoded it ourselves
                self._dead_letter(payload, f"poison: {exc}")
        try:
            await self._record(events)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            LOG.warning("metering: a batch of %d failed (%s); recording one by one", len(events), exc)
            retry = False
            for event in events:
                try:
                    await self._record([event])
                except StoreUnavailable:
                    raise
                except StoreError as one:
                    n = self._failures[event.event_id] = self._failures.get(event.event_id, 0) + 1
                    if n >= self.max_deliveries:
                        self._failures.pop(event.event_id, None)
                        self._dead_letter(encode(event), f"store refused it {n} times: {one}")
                    else:
                        retry = True
            if retry:
                raise

    async def _record(self, events: list[UsageEvent]) -> None:
        if not events:
            return
        result = await self.ledger.record(events)
        self.metrics.recorded.inc(result.recorded)
        self.metrics.duplicates.inc(result.duplicates)
        self.metrics.unpriced.inc(result.unpriced)
        for event in events:
            self._failures.pop(event.event_id, None)

    def _dead_letter(self, payload: bytes, reason: str) -> None:
        self.metrics.dead_letters.inc()
        try:
            self.dead_letters.append(payload)
        except OSError as exc:
            self.metrics.lost.inc()
            LOG.error("metering: a usage event was refused (%s) and the dead-letter journal failed: %s", reason, exc)
            return
        LOG.error("metering: a usage event was moved to %s: %s", self.dead_letters.path, reason)

    async def close(self) -> None:
        await self.dead_letters.close()


@dataclass
class Metering:
    """What a relay process runs for metering. ``sink`` is what sessions emit into."""

    producer: Producer
    metrics: MeterMetrics
    redis: Redis | None = None
    consumer: StreamConsumer | None = None
    _consumer_task: asyncio.Task[None] | None = None
    _temp_dir: str | None = field(default=None, repr=False)

    @property
    def sink(self) -> Producer:
        return self.producer

    async def ping(self) -> None:
        """Readiness: Redis answers (no-op in the embedded default). Raises the builtin ConnectionError."""
        if self.redis is None:
            return
        try:
            await self.redis.ping()
        except RedisError as exc:
            raise ConnectionError(f"Redis: {exc}") from None

    async def close(self) -> None:
        """Flush the producer (bounded), then stop the in-process consumer, then let go of Redis."""
        await self.producer.close()
        if self.consumer is not None and self._consumer_task is not None:
            self.consumer.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer_task
        if self.consumer is not None:
            await self.consumer.redis.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)


def journal_path(settings: Settings) -> tuple[str, str | None]:
    """(the journal's path, a temporary directory to remove at close or None)."""
    if settings.meter_journal_path:
        return settings.meter_journal_path, None
    if settings.database_url.lower().startswith("sqlite:"):
        path = sqlite_path(settings.database_url)
        if path != ":memory:":
            return f"{path}.usage-journal", None
        # An in-memory store forgets everything at exit anyway; keep its journal private to this process.
        temp = tempfile.mkdtemp(prefix="relay-usage-")
        return os.path.join(temp, "usage-journal"), temp
    return "./relay-usage.journal", None


async def start_metering(settings: Settings, db: Database, metrics: MeterMetrics) -> Metering:
    path, temp_dir = journal_path(settings)
    journal = Journal.open(path)
    redis: Redis | None = None
    consumer: StreamConsumer | None = None
    try:
        if settings.redis_url:
            redis = connect_redis(settings.redis_url.value)
            transport: RedisStreamTransport | LedgerTransport = RedisStreamTransport(
                redis, settings.meter_stream, settings.meter_stream_maxlen
            )
        else:
            transport = LedgerTransport(
                Ledger(db), Journal.open(path + ".dead"), metrics, settings.meter_max_deliveries
            )
    except BaseException:
        await journal.close()
        raise
    producer = Producer(
        transport,
        journal,
        metrics,
        queue_size=settings.meter_queue_size,
        batch_size=settings.meter_batch_size,
        spill_after_s=settings.meter_spill_after_s,
        fsync_interval_s=settings.meter_journal_fsync_ms / 1000,
        flush_timeout_s=settings.meter_flush_timeout_s,
    )
    producer.start()
    metering = Metering(producer, metrics, redis, _temp_dir=temp_dir)
    if redis is not None and settings.meter_in_process:
        config = consumer_config(settings)
        consumer = StreamConsumer(
            connect_redis(settings.redis_url.value, block_ms=config.block_ms), Ledger(db), config, metrics
        )
        metering.consumer = consumer
        metering._consumer_task = asyncio.create_task(consumer.run(), name="usage-consumer")
    where = "Redis stream " + settings.meter_stream if redis is not None else "the store, in-process"
    LOG.info("metering: usage goes to %s (journal %s)", where, path)
    return metering
