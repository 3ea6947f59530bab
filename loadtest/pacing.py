"""The sender's clock: one tick per 20 ms on an absolute monotonic schedule.

Tick ``k`` is due at ``start + k * period``; the schedule never drifts (each deadline is computed
from the start, not from the previous wake-up) and never bursts: when the event loop stalls past
the next deadline, the ticks whose deadline has passed are *skipped* and counted, as a microphone
that cannot deliver would lose them, instead of being sent back to back. A burst would hide the
stall from the relay and inflate its input rate; a drift would silently lower it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

FRAME_MS: Final = 20
FRAME_S: Final = FRAME_MS / 1000


class FrameClock:
    __slots__ = ("_next", "period", "skipped", "start")

    def __init__(self, start: float, period_s: float = FRAME_S) -> None:
        self.start = start
        self.period = period_s
        self._next = 0
        self.skipped = 0

    async def wait(self) -> tuple[int, float]:
        """Sleep until the next tick is due. Returns (advance, lateness_s).

        ``advance`` is how many frame slots passed (1 on time; 1 + skipped after a stall): the
        caller moves its audio position by that much, so what it sends stays in step with the
        wall clock. ``lateness_s`` is how late the first due tick was served (the loop's stall).
        """
        due = self.start + self._next * self.period
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.monotonic()
        late = now - due
        # Ticks whose own deadline has already passed as well cannot be sent on time: skip them.
        missed = int(late / self.period) if late >= self.period else 0
        self.skipped += missed
        self._next += 1 + missed
        return 1 + missed, late
