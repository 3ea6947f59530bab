"""Prometheus metrics of the metering pipeline, registered on the relay's registry (or the meter CLI's own).

Nothing here runs per audio frame: the producer's queue depth and journal size are read at scrape
time; counters move per event or per batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge


class MeterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = self.registry = registry
        # Producer side (relay nodes).
        self.queue_depth = Gauge("relay_meter_queue_depth", "Usage events waiting in memory to be sent", registry=r)
        self.journal_pending = Gauge(
            "relay_meter_journal_pending", "Usage events in the local journal, not yet replayed", registry=r
        )
        self.sent = Counter("relay_meter_sent", "Usage events handed on (XADDed, or recorded in-process)", registry=r)
        self.send_errors = Counter(
            "relay_meter_send_errors", "Failed attempts to hand on a batch (XADD errors, store errors)", registry=r
        )
        self.spilled = Counter("relay_meter_spilled", "Usage events written to the local journal", registry=r)
        self.replayed = Counter("relay_meter_replayed", "Usage events replayed from the local journal", registry=r)
        self.lost = Counter(
            "relay_meter_lost",
            "Usage events that could be neither queued nor journaled (journal write failed): alert on any",
            registry=r,
        )
        # Consumer side (the meter process, or the relay when it consumes in-process).
        self.recorded = Counter("relay_meter_recorded", "Usage events recorded for the first time", registry=r)
        self.duplicates = Counter(
            "relay_meter_duplicates",
            "Usage events already recorded (redelivery, replay): acked, not charged",
            registry=r,
        )
        self.unpriced = Counter(
            "relay_meter_unpriced", "Response events with no applicable price: recorded at zero cost", registry=r
        )
        self.failed = Counter(
            "relay_meter_failed", "Stream entries whose processing failed (will be retried)", registry=r
        )
        self.claimed = Counter("relay_meter_claimed", "Stream entries taken over from idle consumers", registry=r)
        self.dead_letters = Counter(
            "relay_meter_dead_letters", "Stream entries moved to the dead-letter stream: alert on any", registry=r
        )
        self.trimmed_unacked = Counter(
            "relay_meter_trimmed_unacked",
            "Pending entries Redis reported deleted before they were acked (trimmed or lost): alert on any",
            registry=r,
        )
        self.group_recreated = Counter(
            "relay_meter_group_recreated", "Consumer group recreated after NOGROUP (Redis lost its data)", registry=r
        )
        self.lag = Gauge("relay_meter_lag", "Stream entries not yet delivered to the consumer group", registry=r)
        self.pending = Gauge("relay_meter_pending", "Entries delivered but not yet acked (the group's PEL)", registry=r)
        self.stream_length = Gauge("relay_meter_stream_length", "Entries in the usage stream", registry=r)
        self.dead_letter_length = Gauge(
            "relay_meter_dead_letter_length", "Entries in the dead-letter stream", registry=r
        )

    @classmethod
    def standalone(cls) -> MeterMetrics:
        return cls(CollectorRegistry())


class RateLimitedLog:
    """Log a recurring condition at most once per interval per key, saying how many were suppressed.

    A Redis outage fails every XADD; one line per failure would flood the log and cost CPU.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._log = logger
        self._interval = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, level: int, key: str, msg: str, *args: object) -> None:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg += " (%d similar suppressed)"
            args = (*args, suppressed)
        self._log.log(level, msg, *args)
