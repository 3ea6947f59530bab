"""A Transport that can be switched off: the producer's logic tested without timing games."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from relay.metering.codec import decode


class SwitchTransport:
    """Collects what it is sent while `up`; raises ConnectionError while down. Events fire on both."""

    def __init__(self) -> None:
        self.up = True
        self.received: list[bytes] = []
        self.failures = 0
        self._changed = asyncio.Event()

    async def send(self, payloads: Sequence[bytes]) -> None:
        try:
            if not self.up:
                self.failures += 1
                raise ConnectionError("transport is down")
            self.received.extend(payloads)
        finally:
            self._changed.set()

    async def close(self) -> None:
        pass

    def event_ids(self) -> list[str]:
        return [decode(p).event_id for p in self.received]

    async def wait_until(self, predicate: object, timeout_s: float = 10.0) -> None:
        assert callable(predicate)
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()
