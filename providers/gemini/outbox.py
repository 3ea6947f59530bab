"""The queue between a Gemini connection's reader and `events()`: ordered, bounded, closable.

Events come from two sides — the reader task (server frames through the translator) and the
session's own calls (`interrupt` ends a response locally, at once) — and go to the one consumer of
`events()`. The bound is soft: the reader waits for room above ``high_water`` (so a session that
stops iterating pushes back on the socket, hence on Gemini), while local events are never refused
(a caller must not block on its own consumer). `finish` ends the stream, with an error or cleanly,
after what is already queued.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Final

from providers.base import UpstreamError
from providers.events import ProviderEvent

__all__ = ["HIGH_WATER", "LOW_WATER", "Outbox"]

#: the reader pauses when this many events wait for the consumer, and goes on below ``LOW_WATER``
HIGH_WATER: Final = 64
LOW_WATER: Final = 16


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


class Outbox:
    __slots__ = ("_ended", "_error", "_high", "_items", "_low", "_room", "_waiter")

    def __init__(self, high_water: int = HIGH_WATER, low_water: int = LOW_WATER) -> None:
        self._items: deque[ProviderEvent] = deque()
        self._high = high_water
        self._low = low_water
        self._waiter: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None
        self._ended = False
        self._error: UpstreamError | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def full(self) -> bool:
        return len(self._items) >= self._high

    def extend(self, events: Iterable[ProviderEvent]) -> None:
        if self._ended:
            return
        self._items.extend(events)
        _wake(self._waiter)

    def finish(self, error: UpstreamError | None = None) -> None:
        """No more events after those queued; then `get` raises ``error`` (or reports the end)."""
        if self._ended:
            return
        self._ended = True
        self._error = error
        _wake(self._waiter)
        _wake(self._room)

    async def get(self) -> ProviderEvent | None:
        """The next event; None once the stream ended cleanly. Raises the `finish` error at the end."""
        items = self._items
        while not items:
            if self._ended:
                if self._error is not None:
                    raise self._error
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        event = items.popleft()
        if self._room is not None and len(items) <= self._low:
            _wake(self._room)
        return event

    async def wait_for_room(self) -> None:
        """Return once the queue is down to ``low_water`` (at once if it is not full, or ended)."""
        if len(self._items) < self._high or self._ended:
            return
        self._room = asyncio.get_running_loop().create_future()
        try:
            await self._room
        finally:
            self._room = None
