"""The metering consumer: usage stream -> ledger, exactly once, in a Redis consumer group.

Any number of consumers (``realtime-relay meter`` processes, or relays with
``RELAY_METER_IN_PROCESS``) share one consumer group; each has its own consumer name
(host-pid-random, or ``RELAY_METER_CONSUMER_NAME``). One round (`poll`):

1. every so often, ``XAUTOCLAIM`` entries idle longer than ``claim_idle_ms`` — delivered to a
   consumer that died or failed on them — and look up their delivery counts (``XPENDING``). An
   entry delivered more than ``max_deliveries`` times is moved to the dead-letter stream (``XADD``
   and ``XACK`` in one ``MULTI``) and counted, instead of being tried again;
2. ``XREADGROUP ... >`` new entries (blocking up to ``block_ms``);
3. decode, price and write the batch with the ``Ledger`` (one transaction, ``ON CONFLICT
   (event_id) DO NOTHING``), **commit, then XACK**. A crash between the two redelivers entries the
   ledger already holds: they are acked as duplicates, charged nothing. An entry that fails
   (poison: undecodable; or refused by the database) is left pending, so it comes back through
   step 1 until it succeeds or is dead-lettered.

The group is created at id ``0`` with ``MKSTREAM``, never ``$``: ``$`` would skip every event XADDed
before the group existed. ``NOGROUP`` at any step (Redis restarted without its data) recreates
the group the same way and goes on; the events lost with Redis's data are the reconciliation job's
business (``realtime-relay meter --reconcile``).

While the database is unreachable the consumer neither reads nor claims: otherwise every claim
would count a delivery and a long database outage would push healthy events to the dead-letter
stream.

Trimming: the producer does not trim (by default). The consumer trims acked entries itself, with
``XTRIM MINID`` at the oldest entry some group still needs (its oldest pending entry, or the
first after its last-delivered id), so an un-acked event is never trimmed away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from relay.metering.codec import DecodeError, decode
from relay.metering.events import UsageEvent
from relay.metering.ledger import Ledger
from relay.metering.metrics import MeterMetrics, RateLimitedLog
from relay.metering.producer import FIELD
from relay.store.db import StoreError, StoreUnavailable

LOG = logging.getLogger("relay.metering.consumer")

BACKOFF_MIN_S = 0.1
# How often the consumer refreshes its lag gauges and trims acked entries.
HOUSEKEEPING_S = 5.0
# The last error per failing entry, kept for the dead-letter record; bounded.
REMEMBERED_ERRORS = 1000

Entry = tuple[bytes, dict[bytes, bytes]]
Hook = Callable[[Sequence[bytes]], Awaitable[None]]


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    stream: str = "relay:usage"
    group: str = "relay-meter"
    dead_letter_stream: str = "relay:usage:dead"
    name: str = ""
    batch_size: int = 200
    block_ms: int = 1000
    claim_idle_ms: int = 30_000
    max_deliveries: int = 5
    trim: bool = True
    # How often to run XAUTOCLAIM; None: every claim_idle_ms / 2 (at least every 10 ms).
    claim_interval_ms: int | None = None
    # Longest wait between retries while Redis or the store is unavailable.
    backoff_max_s: float = 5.0

    @property
    def claim_every_s(self) -> float:
        if self.claim_interval_ms is not None:
            return self.claim_interval_ms / 1000
        return max(0.01, self.claim_idle_ms / 2000)


class StreamConsumer:
    def __init__(
        self,
        redis: Redis,
        ledger: Ledger,
        config: ConsumerConfig,
        metrics: MeterMetrics | None = None,
        *,
        after_commit: Hook | None = None,
    ) -> None:
        self.redis = redis
        self.ledger = ledger
        self.config = config
        self.name = config.name or default_consumer_name()
        self.metrics = metrics or MeterMetrics.standalone()
        # Test seam: runs after the ledger committed and before XACK (raise to "crash" there).
        self.after_commit = after_commit
        self._claim_cursor = b"0-0"
        self._next_claim = 0.0
        self._next_housekeeping = 0.0
        self._errors: OrderedDict[bytes, str] = OrderedDict()
        self._log = RateLimitedLog(LOG)
        self._stopping = asyncio.Event()

    def __repr__(self) -> str:
        return f"StreamConsumer({self.config.stream!r}, group={self.config.group!r}, name={self.name!r})"

    # -- lifecycle ----------------------------------------------------------------------------------

    async def ensure_group(self) -> bool:
        """Create the group at 0 (with the stream) unless it exists. True if it was created now."""
        try:
            await self.redis.xgroup_create(self.config.stream, self.config.group, id="0", mkstream=True)
        except ResponseError as exc:
            if str(exc).startswith("BUSYGROUP"):
                return False
            raise
        return True

    async def run(self) -> None:
        """Consume until `stop` (or cancellation); Redis and store failures are waited out, never fatal."""
        backoff = BACKOFF_MIN_S
        LOG.info("metering consumer %s reading %s (group %s)", self.name, self.config.stream, self.config.group)
        have_group = False
        while not self._stopping.is_set():
            try:
                if not have_group:
                    await self.ensure_group()
                    have_group = True
                await self.poll()
                backoff = BACKOFF_MIN_S
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                self._log(logging.WARNING, "redis", "metering consumer: Redis unavailable (%s); retrying", exc)
            except StoreUnavailable as exc:
                self._log(logging.WARNING, "store", "metering consumer: store unavailable (%s); retrying", exc)
                await self._wait_for_store(backoff)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug or an unexpected reply: log it, back off, keep consuming
                LOG.exception("metering consumer: unexpected error; retrying")
            else:
                continue
            await self._sleep(backoff)
            backoff = min(backoff * 2, self.config.backoff_max_s)
        await self._leave_group()

    def stop(self) -> None:
        self._stopping.set()

    # -- one round ----------------------------------------------------------------------------------

    async def poll(self, block_ms: int | None = None) -> int:
        """Claim (when due), read and record one batch. The number of entries acked."""
        now = time.monotonic()
        acked = 0
        if now >= self._next_claim:
            self._next_claim = now + self.config.claim_every_s
            acked += await self.claim()
        entries = await self._call(
            self.redis.xreadgroup,
            self.config.group,
            self.name,
            {self.config.stream: ">"},
            count=self.config.batch_size,
            block=self.config.block_ms if block_ms is None else block_ms,
        )
        acked += await self.process(_entries(entries))
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + HOUSEKEEPING_S
            await self.housekeeping()
        return acked

    async def claim(self) -> int:
        """Take over entries idle past ``claim_idle_ms``; dead-letter the over-delivered, process the rest."""
        reply = await self._call(
            self.redis.xautoclaim,
            self.config.stream,
            self.config.group,
            self.name,
            self.config.claim_idle_ms,
            self._claim_cursor,
            count=self.config.batch_size,
        )
        if not reply:
            return 0
        self._claim_cursor = reply[0]
        # Before Redis 7 a deleted entry came back with no fields instead of in the third element.
        claimed: list[Entry] = [e for e in reply[1] if e[1] is not None]
        deleted: list[bytes] = [e[0] for e in reply[1] if e[1] is None]
        deleted += list(reply[2]) if len(reply) > 2 else []
        if deleted:
            # Redis dropped them from the PEL: they were trimmed (or deleted) before anyone acked them.
            self.metrics.trimmed_unacked.inc(len(deleted))
            LOG.error(
                "metering: %d pending entries were deleted from %s before they were acked (first %s); "
                "run `realtime-relay meter --reconcile`",
                len(deleted),
                self.config.stream,
                deleted[0].decode(),
            )
        if not claimed:
            return 0
        self.metrics.claimed.inc(len(claimed))
        deliveries = await self._deliveries([entry_id for entry_id, _ in claimed])
        retry: list[Entry] = []
        dead = 0
        for entry in claimed:
            if deliveries.get(entry[0], 1) > self.config.max_deliveries:
                await self._dead_letter(entry, deliveries[entry[0]])
                dead += 1
            else:
                retry.append(entry)
        return dead + await self.process(retry)

    async def process(self, entries: Sequence[Entry]) -> int:
        """Record what decodes, commit, then XACK it; leave the rest pending. The number acked."""
        if not entries:
            return 0
        good: list[tuple[bytes, UsageEvent]] = []
        for entry_id, fields in entries:
            try:
                good.append((entry_id, decode(fields.get(FIELD, b""))))
            except DecodeError as exc:
                self._failed(entry_id, f"poison: {exc}")
        if not good:
            return 0
        try:
            await self._record([event for _, event in good])
            ok = [entry_id for entry_id, _ in good]
        except StoreUnavailable:
            raise
        except StoreError as exc:
            # Something in the batch is refused: find which, one event at a time.
            LOG.warning("metering: a batch of %d failed (%s); recording one by one", len(good), exc)
            ok = []
            for entry_id, event in good:
                try:
                    await self._record([event])
                    ok.append(entry_id)
                except StoreUnavailable:
                    raise
                except StoreError as one:
                    self._failed(entry_id, f"store refused it: {one}")
        if ok and self.after_commit is not None:
            await self.after_commit(ok)
        if ok:
            await self._call(self.redis.xack, self.config.stream, self.config.group, *ok)
            for entry_id in ok:
                self._errors.pop(entry_id, None)
        return len(ok)

    async def _record(self, events: list[UsageEvent]) -> None:
        result = await self.ledger.record(events)
        self.metrics.recorded.inc(result.recorded)
        self.metrics.duplicates.inc(result.duplicates)
        if result.unpriced:
            self.metrics.unpriced.inc(result.unpriced)
            self._log(logging.WARNING, "unpriced", "metering: %d events had no applicable price", result.unpriced)

    # -- dead letters -------------------------------------------------------------------------------

    async def _deliveries(self, ids: list[bytes]) -> dict[bytes, int]:
        """Each entry's delivery count (XPENDING for exactly that id: claimed ids need not be contiguous)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.xpending_range(self.config.stream, self.config.group, min=entry_id, max=entry_id, count=1)
            replies = await pipe.execute()
        return {rows[0]["message_id"]: int(rows[0]["times_delivered"]) for rows in replies if rows}

    async def _dead_letter(self, entry: Entry, deliveries: int) -> None:
        entry_id, fields = entry
        reason = self._errors.pop(entry_id, None) or "failed on every delivery"
        record: dict[Any, Any] = {
            FIELD: fields.get(FIELD, b""),
            b"stream": self.config.stream.encode(),
            b"entry_id": entry_id,
            b"deliveries": str(deliveries).encode(),
            b"reason": reason.encode(),
            b"consumer": self.name.encode(),
            b"ts_ms": str(int(time.time() * 1000)).encode(),
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.config.dead_letter_stream, record)
            pipe.xack(self.config.stream, self.config.group, entry_id)
            await pipe.execute()
        self.metrics.dead_letters.inc()
        LOG.error(
            "metering: entry %s moved to %s after %d deliveries: %s",
            entry_id.decode(),
            self.config.dead_letter_stream,
            deliveries,
            reason,
        )

    def _failed(self, entry_id: bytes, why: str) -> None:
        self.metrics.failed.inc()
        self._errors[entry_id] = why[:300]
        self._errors.move_to_end(entry_id)
        while len(self._errors) > REMEMBERED_ERRORS:
            self._errors.popitem(last=False)
        self._log(logging.WARNING, "failed", "metering: entry %s not recorded (%s); left pending", entry_id, why)

    # -- housekeeping -------------------------------------------------------------------------------

    async def housekeeping(self) -> None:
        """Refresh the lag gauges; trim what every group has acked."""
        status = await stream_status(self.redis, self.config)
        group = next((g for g in status.groups if g["name"] == self.config.group), None)
        self.metrics.stream_length.set(status.length)
        self.metrics.dead_letter_length.set(status.dead_letters)
        if group is not None:
            self.metrics.pending.set(group["pending"])
            if group["lag"] is not None:
                self.metrics.lag.set(group["lag"])
        if self.config.trim and status.safe_trim_id is not None:
            # Exact, not "~": it runs every few seconds, and "~" keeps whole 100-entry nodes around.
            await self.redis.xtrim(self.config.stream, minid=status.safe_trim_id, approximate=False)

    async def _leave_group(self) -> None:
        """Remove this consumer's name from the group, unless it still owns pending entries
        (XGROUP DELCONSUMER would drop those from the PEL, and with them the events)."""
        with contextlib.suppress(RedisError, OSError):
            mine = await self.redis.xpending_range(
                self.config.stream, self.config.group, min="-", max="+", count=1, consumername=self.name
            )
            if not mine:
                await self.redis.xgroup_delconsumer(self.config.stream, self.config.group, self.name)

    # -- plumbing -----------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """Run a Redis command; on NOGROUP (Redis lost the stream and group) recreate them and retry once."""
        try:
            return await fn(*args, **kwargs)
        except ResponseError as exc:
            if not str(exc).startswith("NOGROUP"):
                raise
        self.metrics.group_recreated.inc()
        LOG.error(
            "metering: Redis has no group %s on %s (restarted without its data?): recreating it at 0; "
            "events that were not yet recorded are lost — run `realtime-relay meter --reconcile`",
            self.config.group,
            self.config.stream,
        )
        await self.ensure_group()
        self._claim_cursor = b"0-0"
        return await fn(*args, **kwargs)

    async def _wait_for_store(self, first_wait_s: float) -> None:
        wait = first_wait_s
        while not self._stopping.is_set():
            await self._sleep(wait)
            try:
                await self.ledger.db.ping()
                return
            except StoreError:
                wait = min(wait * 2, self.config.backoff_max_s)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


def _id_key(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


def _entries(reply: Any) -> list[Entry]:
    """XREADGROUP's reply for our one stream, as (id, fields) pairs."""
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3 shape
        return [e for entries in reply.values() for e in (entries[0] if entries else [])]
    return [entry for _stream, entries in reply for entry in entries]


@dataclass(frozen=True, slots=True)
class StreamStatus:
    stream: str
    length: int
    groups: list[dict[str, Any]]
    dead_letters: int
    oldest_pending_idle_ms: int | None
    safe_trim_id: bytes | None

    def as_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "length": self.length,
            "groups": self.groups,
            "dead_letters": self.dead_letters,
            "oldest_pending_idle_ms": self.oldest_pending_idle_ms,
        }


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _plain(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


async def stream_status(redis: Redis, config: ConsumerConfig) -> StreamStatus:
    """Length, groups (consumers, pending, lag), dead letters, the oldest pending entry's idle time,
    and the id below which every group has acked everything (what may be trimmed)."""
    stream = config.stream
    length = int(await redis.xlen(stream))
    dead = int(await redis.xlen(config.dead_letter_stream))
    try:
        groups = list(await redis.xinfo_groups(stream))
    except ResponseError:  # no such key
        groups = []
    oldest_idle: int | None = None
    keep: list[bytes] = []
    for g in groups:
        name = _plain(g["name"])
        if int(g["pending"]) > 0:
            first = await redis.xpending_range(stream, name, min="-", max="+", count=1)
            if first:
                keep.append(_as_bytes(first[0]["message_id"]))
                if name == config.group:
                    oldest_idle = int(first[0]["time_since_delivered"])
        else:
            keep.append(_as_bytes(g["last-delivered-id"]))
    shown = [
        {
            "name": _plain(g["name"]),
            "consumers": int(g["consumers"]),
            "pending": int(g["pending"]),
            "lag": None if g.get("lag") is None else int(g["lag"]),
            "last_delivered_id": _plain(g["last-delivered-id"]),
        }
        for g in groups
    ]
    safe = min(keep, key=_id_key) if keep and len(keep) == len(groups) else None
    if safe == b"0-0":
        safe = None
    return StreamStatus(stream, length, shown, dead, oldest_idle, safe)
