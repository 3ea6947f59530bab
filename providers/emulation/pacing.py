"""Release media at a multiple of real time, against the monotonic clock.

``Pacer(speed)``: media time ``t`` ms is due ``t / speed`` ms after the pacer started, so sleeping
until each chunk's due time never accumulates drift (late wake-ups are caught up, not added up).
``speed`` 1.0 is real time, 2.0 twice as fast; 0 (or less) means unpaced: `wait` only yields to the
event loop so that other connections and a pending cancel get their turn. `interrupt` wakes a
pending `wait` at once and makes every later one return at once too (a cancel or a barge-in ends
the stream; it must not wait for the next chunk).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["Pacer"]


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Pacer:
    __slots__ = ("_clock", "_interrupted", "_speed", "_start", "_waiter")

    def __init__(self, speed: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._speed = speed
        self._clock = clock
        self._start = clock()
        self._waiter: asyncio.Future[None] | None = None
        self._interrupted = False

    @property
    def speed(self) -> float:
        return self._speed

    def due_in(self, media_ms: float) -> float:
        """Seconds until ``media_ms`` is due (negative when late, 0 when unpaced)."""
        if self._speed <= 0:
            return 0.0
        return self._start + media_ms / 1000.0 / self._speed - self._clock()

    async def wait(self, media_ms: float) -> None:
        """Return when ``media_ms`` of media is due, or early when `interrupt` is called."""
        delay = self.due_in(media_ms)
        if delay <= 0 or self._interrupted:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        handle = loop.call_later(delay, _wake, waiter)
        self._waiter = waiter
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter = None

    @property
    def interrupted(self) -> bool:
        return self._interrupted

    def interrupt(self) -> None:
        self._interrupted = True
        if self._waiter is not None:
            _wake(self._waiter)
