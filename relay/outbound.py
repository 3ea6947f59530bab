"""The bounded relay→client queue, measured in milliseconds of audio.

Policy (documented in docs/protocol.md, "Backpressure"):
- Below the high-water mark everything is queued.
- At the high-water mark the session stops reading upstream (`wait_for_room`), so TCP pushes back
  on the provider.
- If the client still does not drain within `backpressure_max_wait_ms`, reading resumes and the
  queue keeps at most `hard_limit_ms` of audio by dropping the **oldest** audio, counted in
  `dropped_ms` / `dropped_frames`. A stuck client therefore cannot stall the provider forever nor
  grow memory without bound.
Control events are never dropped; they are small and are bounded by the same pause, because the
upstream pump stops at the high-water mark of queued bytes as well.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

# Control events (transcripts, text deltas) can arrive without audio, so bytes are bounded too.
HIGH_WATER_BYTES = 1 << 20


@dataclass(slots=True)
class OutItem:
    """An event dict (audio is None) or a chunk of encoded audio for one response."""

    event: dict[str, Any] | None
    audio: bytes | None = None
    response_id: str | None = None
    ms: float = 0.0
    size: int = 0


class OutboundQueue:
    def __init__(self, high_water_ms: float, hard_limit_ms: float) -> None:
        self.high_water_ms = high_water_ms
        self.low_water_ms = high_water_ms / 2
        self.hard_limit_ms = hard_limit_ms
        self._items: deque[OutItem] = deque()
        self._nonempty = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.audio_ms = 0.0
        self.size = 0
        self.dropped_ms = 0.0
        self.dropped_frames = 0
        self.peak_audio_ms = 0.0
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put_event(self, event: dict[str, Any]) -> None:
        self._push(OutItem(event, size=256))

    def put_audio(self, audio: bytes, response_id: str, ms: float) -> None:
        self._push(OutItem(None, audio, response_id, ms, len(audio)))
        self.audio_ms += ms
        if self.audio_ms > self.peak_audio_ms:
            self.peak_audio_ms = self.audio_ms
        if self.audio_ms > self.hard_limit_ms:
            self._drop_oldest_audio()
        self._update_room()

    def _push(self, item: OutItem) -> None:
        self._items.append(item)
        self.size += item.size
        self._nonempty.set()

    def _update_room(self) -> None:
        if self.audio_ms >= self.high_water_ms or self.size >= HIGH_WATER_BYTES:
            self._room.clear()
        elif self.audio_ms <= self.low_water_ms and self.size < HIGH_WATER_BYTES // 2:
            self._room.set()

    def _drop_oldest_audio(self) -> None:
        kept: deque[OutItem] = deque()
        while self._items and self.audio_ms > self.hard_limit_ms:
            item = self._items.popleft()
            if item.audio is None:
                kept.append(item)
                continue
            self._forget(item)
            self.dropped_ms += item.ms
            self.dropped_frames += 1
        kept.extend(self._items)
        self._items = kept

    def _forget(self, item: OutItem) -> None:
        self.audio_ms -= item.ms
        self.size -= item.size
        if self.audio_ms < 1e-6:
            self.audio_ms = 0.0

    def drop_response(self, response_id: str) -> float:
        """Barge-in: remove every queued audio chunk of `response_id`; returns the ms removed."""
        removed = 0.0
        if any(i.response_id == response_id for i in self._items):
            kept: deque[OutItem] = deque()
            for item in self._items:
                if item.response_id == response_id and item.audio is not None:
                    removed += item.ms
                    self._forget(item)
                else:
                    kept.append(item)
            self._items = kept
            self._update_room()
        return removed

    async def get(self) -> OutItem | None:
        """Next item, or None once the queue is closed and empty."""
        while not self._items:
            if self.closed:
                return None
            self._nonempty.clear()
            await self._nonempty.wait()
        item = self._items.popleft()
        if item.audio is not None:
            self._forget(item)
        else:
            self.size -= item.size
        self._update_room()
        return item

    def has_room(self) -> bool:
        return self._room.is_set()

    async def wait_for_room(self, timeout_s: float) -> bool:
        """Wait until the queue is below its low-water mark; False if `timeout_s` passed first."""
        if self._room.is_set():
            return True
        try:
            await asyncio.wait_for(self._room.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """No more items will be put; `get` drains what is left, then returns None."""
        self.closed = True
        self._nonempty.set()
        self._room.set()
