"""Where sessions hand usage events. `emit` never blocks and never raises into the audio path."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from relay.metering.events import UsageEvent

LOG = logging.getLogger("relay.metering")


class UsageSink(Protocol):
    def emit(self, event: UsageEvent) -> None: ...


class MemorySink:
    """In-process sink for the embedded default and tests; keeps the most recent events."""

    def __init__(self, keep: int = 100_000) -> None:
        self.events: deque[UsageEvent] = deque(maxlen=keep)
        self._changed = asyncio.Event()

    def emit(self, event: UsageEvent) -> None:
        self.events.append(event)
        self._changed.set()
        LOG.debug("usage %s %s %s", event.kind, event.session_id, event.response_id)

    async def wait_for(self, predicate: Callable[[UsageEvent], bool], timeout_s: float = 10.0) -> UsageEvent:
        """The first event matching `predicate`, waiting for it to be emitted if need be."""
        async with asyncio.timeout(timeout_s):
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                self._changed.clear()
                await self._changed.wait()
