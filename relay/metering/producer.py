"""The producer: where sessions hand usage events, and how they reach the stream without ever blocking.

``Producer.emit`` appends the event to a bounded in-memory queue and returns: it never awaits and
never raises. One writer task takes batches off the queue, encodes them and hands them to a
``Transport`` — ``RedisStreamTransport`` (XADD to the usage stream) when ``REDIS_URL`` is set, or, in
the embedded default, the in-process ledger (see ``relay/metering/pipeline.py``).

When the transport fails the writer retries the same batch with backoff while the queue absorbs
new events. The producer *spills* — moves the failed batch and the whole queue, in order, to the
local ``Journal`` and sends every later event there too — when either

- the queue is full (``emit`` spills itself rather than drop), or
- the transport has been failing for longer than ``spill_after_s`` (so a crash during a long outage
  loses no more than that window of events held only in memory).

While spilling, the writer replays the journal in order; once it has caught up, the journal is
emptied and events flow through the queue again. Spilling keeps emit order: everything queued
before the spill is written to the journal ahead of everything emitted after it.

Shutdown (``close``) gives the writer ``flush_timeout_s`` to empty the queue (and the journal, if
the transport is back); whatever is left goes to the journal for the next start to replay.

The only way an event is lost is the journal itself failing (disk full) while the queue is full or
the process is stopping; that is logged at ERROR and counted in ``relay_meter_lost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from redis.asyncio import Redis

from relay.metering.codec import encode
from relay.metering.events import UsageEvent
from relay.metering.journal import Journal
from relay.metering.metrics import MeterMetrics, RateLimitedLog

LOG = logging.getLogger("relay.metering.producer")

# The stream entry's one field: the msgpack-encoded event.
FIELD = b"e"
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0


class Transport(Protocol):
    """Where the writer hands batches of encoded events. Raising means "not sent, try again";
    sending a batch twice is harmless (the consumer dedupes on event_id)."""

    async def send(self, payloads: Sequence[bytes]) -> None: ...

    async def close(self) -> None: ...


class RedisStreamTransport:
    """XADD every payload to the usage stream, one pipelined round trip per batch.

    ``maxlen`` > 0 adds ``MAXLEN ~ maxlen`` to each XADD. That trims whether or not the entries
    were acked (Redis < 8.2 has no ACKED policy), so it is only a memory guard rail for a stream
    nobody consumes; the default is 0 and the consumer trims what it has acked (``MINID``).
    """

    def __init__(self, redis: Redis, stream: str, maxlen: int = 0) -> None:
        self.redis = redis
        self.stream = stream
        self.maxlen = maxlen

    async def send(self, payloads: Sequence[bytes]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for payload in payloads:
                pipe.xadd(self.stream, {FIELD: payload}, maxlen=self.maxlen or None, approximate=True)
            await pipe.execute()

    async def close(self) -> None:
        """Nothing to do: the Redis client belongs to whoever made it."""


class Producer:
    """A ``UsageSink`` that never blocks: bounded queue -> writer task -> transport, journal on trouble."""

    def __init__(
        self,
        transport: Transport,
        journal: Journal,
        metrics: MeterMetrics | None = None,
        *,
        queue_size: int = 10_000,
        batch_size: int = 200,
        spill_after_s: float = 5.0,
        fsync_interval_s: float = 0.1,
        flush_timeout_s: float = 5.0,
        backoff_max_s: float = BACKOFF_MAX_S,
    ) -> None:
        self.transport = transport
        self.journal = journal
        self.metrics = metrics or MeterMetrics.standalone()
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.spill_after_s = spill_after_s
        self.fsync_interval_s = fsync_interval_s
        self.flush_timeout_s = flush_timeout_s
        self.backoff_max_s = backoff_max_s
        self._queue: deque[UsageEvent] = deque()
        # The batch the writer is sending now: older than everything in the queue.
        self._inflight: list[UsageEvent] = []
        # A journal left by a previous run is replayed before anything new is sent.
        self._spilling = journal.pending > 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._failing_since: float | None = None
        self._backoff = BACKOFF_MIN_S
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._log = RateLimitedLog(LOG)
        self.metrics.queue_depth.set_function(lambda: len(self._queue) + len(self._inflight))
        self.metrics.journal_pending.set_function(lambda: self.journal.pending)

    # -- the hot path -------------------------------------------------------------------------------

    def emit(self, event: UsageEvent) -> None:
        """Queue ``event`` for sending. Never awaits, never raises."""
        try:
            if self._spilling or self._closed:
                self._spill(event)
            elif len(self._queue) >= self.queue_size:
                self._log(
                    logging.WARNING, "full", "usage queue full (%d events): spilling to the journal", self.queue_size
                )
                self._start_spilling()
                self._spill(event)
            else:
                self._queue.append(event)
                self._wake.set()
        except Exception:  # emit must never raise into the audio path; this is a bug, say so loudly
            LOG.exception("usage event %s could not be queued", event.event_id)
            self.metrics.lost.inc()

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="usage-producer")

    @property
    def backlog(self) -> int:
        """Events not yet handed on: queued, in flight, or in the journal."""
        return len(self._queue) + len(self._inflight) + self.journal.pending

    @property
    def spilling(self) -> bool:
        return self._spilling

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything emitted so far has been handed on (journal included); False on timeout."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.flush_timeout_s if timeout_s is None else timeout_s):
                while self.backlog:
                    self._idle.clear()
                    self._wake.set()
                    await self._idle.wait()
                return True
        return False

    async def close(self) -> None:
        """Flush for at most ``flush_timeout_s``; journal whatever is left; close the transport."""
        if self._closed:
            return
        flushed = await self.flush()
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._queue or self._inflight:
            self._start_spilling()
        if not flushed:
            LOG.warning(
                "usage producer: %d events not sent within %.1f s are in the journal %s for the next start to replay",
                self.journal.pending,
                self.flush_timeout_s,
                self.journal.path,
            )
        await self.journal.close()
        with contextlib.suppress(Exception):  # best effort: the process is going away
            await self.transport.close()

    # -- the writer ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        syncer = asyncio.create_task(self._sync_loop(), name="usage-journal-fsync")
        try:
            while True:
                if await self._step():
                    continue
                if not self.backlog:
                    self._idle.set()
                # Sleep only with nothing to do: a failed in-flight batch is retried (after its
                # backoff) even if no new event ever arrives to wake the writer.
                if not self._queue and not self._inflight and not self._spilling:
                    self._wake.clear()
                    await self._wake.wait()
        finally:
            syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await syncer

    async def _sync_loop(self) -> None:
        """fsync the journal every ``fsync_interval_s`` while it has unsynced records (see journal.py)."""
        while True:
            await asyncio.sleep(self.fsync_interval_s)
            try:
                await self.journal.sync()
            except OSError as exc:
                self._log(logging.ERROR, "fsync", "usage journal fsync failed: %s", exc)

    async def _step(self) -> bool:
        """Send one batch (from the journal while spilling, else from the queue). True if one was sent;
        after a failure it has already waited out its backoff."""
        if self._spilling:
            return await self._replay_batch()
        if not self._inflight:
            if not self._queue:
                return False
            n = min(self.batch_size, len(self._queue))
            self._inflight = [self._queue.popleft() for _ in range(n)]
        batch = self._inflight
        try:
            await self.transport.send([encode(e) for e in batch])
        except Exception as exc:  # any transport failure: the batch stays in flight and is retried
            await self._failed(exc)
            if self._inflight and self._failing_for() > self.spill_after_s:
                self._log(logging.WARNING, "spill", "usage transport failing for %.1f s: spilling", self._failing_for())
                self._start_spilling()
            return False
        self._succeeded(len(batch))
        if self._inflight is batch:  # (a spill during the send already journaled it: sent twice, deduped)
            self._inflight = []
        return True

    async def _replay_batch(self) -> bool:
        records = self.journal.read(self.batch_size)
        if not records:
            # Caught up, with no await since the read: nothing can have been appended in between.
            self.journal.reset()
            self._spilling = False
            LOG.info("usage journal replayed; events flow through the queue again")
            return False
        try:
            await self.transport.send([r.payload for r in records])
        except Exception as exc:  # the transport is still down: keep the records, try again later
            await self._failed(exc)
            return False
        self.journal.advance(records)
        self.metrics.replayed.inc(len(records))
        self._succeeded(len(records))
        return True

    def _start_spilling(self) -> None:
        """Move the in-flight batch and the queue, in order, to the journal; journal everything after."""
        self._spilling = True
        batch, self._inflight = self._inflight, []
        for event in batch:
            self._spill(event)
        while self._queue:
            self._spill(self._queue.popleft())
        self._wake.set()

    def _spill(self, event: UsageEvent) -> None:
        try:
            self.journal.append(encode(event))
        except OSError as exc:
            self.metrics.lost.inc()
            # Never silent: the id lets an operator reconcile against the session summary.
            LOG.error("usage event %s LOST: the journal %s failed: %s", event.event_id, self.journal.path, exc)
            return
        self.metrics.spilled.inc()

    async def _failed(self, exc: Exception) -> None:
        self.metrics.send_errors.inc()
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            self._backoff = BACKOFF_MIN_S
        self._log(
            logging.WARNING,
            "send",
            "usage events not sent (%s: %s); %d queued, %d journaled",
            type(exc).__name__,
            exc,
            len(self._queue) + len(self._inflight),
            self.journal.pending,
        )
        # A plain sleep: new events must not cut the backoff short, or an outage would be retried at
        # the event rate. close() cancels it.
        await asyncio.sleep(self._backoff)
        self._backoff = min(self._backoff * 2, self.backoff_max_s)

    def _succeeded(self, n: int) -> None:
        self.metrics.sent.inc(n)
        if self._failing_since is not None:
            LOG.info("usage transport recovered after %.1f s", self._failing_for())
            self._failing_since = None

    def _failing_for(self) -> float:
        return 0.0 if self._failing_since is None else time.monotonic() - self._failing_since
