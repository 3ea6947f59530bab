"""One Cartesia context on the emulator: text in, ``chunk``/``timestamps``/``done`` out.

Text is spoken as it arrives, the way the service's managed buffering does it: what is buffered is
spoken up to its last word boundary at once; a word still being typed waits for the rest of it, or
for ``max_buffer_delay_ms`` without new input (0: speak everything at once, Cartesia's "custom
buffering"). ``continue: false`` and ``flush: true`` speak everything buffered; a flush is then
acknowledged with ``flush_done``, the end with ``done``.

Speech comes from the shared deterministic synthesizer (`providers.emulation.synth`), rendered
directly at the requested rate and encoded as asked (``pcm_s16le``, ``pcm_f32le``, ``pcm_mulaw``,
``pcm_alaw``). Each ``chunk`` holds ``chunk_ms`` of audio and is released by a `Pacer` at ``speed``
x real time; after each chunk, a ``timestamps`` event gives the words that have started so far, in
seconds since the context's first audio, exactly where the synthesizer put them. `cancel` stops the
context at once: nothing more is sent for it, not even ``done``.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from audiocodecs.g711 import alaw_encode, ulaw_encode
from audiocodecs.pcm import pcm16_to_f32
from providers.cartesia.emulator_request import Generation
from providers.emulation import synth
from providers.emulation.pacing import Pacer

__all__ = ["STATUS_PARTIAL", "ContextState", "EmulatedContext", "encode", "word_spans"]

#: the ``status_code`` Cartesia puts on every streamed event
STATUS_PARTIAL: Final = 206
_WORD: Final = re.compile(r"\S+")

SendEvent = Callable[[dict[str, Any]], Awaitable[None]]


def encode(samples: npt.NDArray[np.int16], encoding: str) -> bytes:
    """int16 samples in one of Cartesia's raw encodings."""
    if encoding == "pcm_s16le":
        return samples.astype("<i2", copy=False).tobytes()
    if encoding == "pcm_f32le":
        return pcm16_to_f32(samples).astype("<f4", copy=False).tobytes()
    if encoding == "pcm_mulaw":
        return ulaw_encode(samples)
    if encoding == "pcm_alaw":
        return alaw_encode(samples)
    raise ValueError(f"unknown encoding {encoding!r}")


_WIDTH: Final = {"pcm_s16le": 2, "pcm_f32le": 4, "pcm_mulaw": 1, "pcm_alaw": 1}


def word_spans(text: str, samples_per_char: int, offset: int = 0) -> list[tuple[str, int, int]]:
    """(word, first sample, end sample) of every whitespace-separated word of `text` as the
    synthesizer speaks it starting at sample `offset`."""
    return [
        (m.group(), offset + m.start() * samples_per_char, offset + m.end() * samples_per_char)
        for m in _WORD.finditer(text)
    ]


class ContextState(enum.Enum):
    OPEN = "open"  # taking input
    CLOSED = "closed"  # input ended (`continue: false`); still speaking
    DONE = "done"  # `done` sent
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class _Input:
    text: str
    flush: bool
    end: bool


class EmulatedContext:
    """Speaks one context. `add` takes each generation request, `run` is its task."""

    def __init__(self, first: Generation, send: SendEvent, *, speed: float, chunk_ms: int) -> None:
        self.context_id = first.context_id
        self.request = first
        self.state = ContextState.OPEN
        self._send = send
        self._speed = speed
        self._rate = first.sample_rate
        self._chunk_samples = max(1, first.sample_rate * chunk_ms // 1000)
        self._samples_per_char = synth.samples_per_char(first.sample_rate)
        self._inbox: deque[_Input] = deque()
        self._arrived = asyncio.Event()
        self._pacer: Pacer | None = None
        #: samples sent so far (the clock of this context's timestamps)
        self.samples = 0
        #: flushes acknowledged; chunks after the first flush request carry ``flush_id``
        self._flushes = 0
        self._flush_seen = False
        #: text spoken so far, for tests
        self.spoken: list[str] = []

    @property
    def active(self) -> bool:
        return self.state in (ContextState.OPEN, ContextState.CLOSED)

    @property
    def audio_ms(self) -> float:
        return self.samples * 1000 / self._rate

    def add(self, request: Generation) -> None:
        if self.state is not ContextState.OPEN:
            raise RuntimeError(f"context {self.context_id} is {self.state.value}")
        self._flush_seen |= request.flush
        self._inbox.append(_Input(request.transcript, request.flush, not request.more))
        if not request.more:
            self.state = ContextState.CLOSED
        self._arrived.set()

    def cancel(self) -> None:
        if not self.active:
            return
        self.state = ContextState.CANCELLED
        if self._pacer is not None:
            self._pacer.interrupt()
        self._arrived.set()

    async def run(self) -> None:
        pending = ""
        delay_s = self.request.max_buffer_delay_ms / 1000
        while self.active:
            if self._inbox:
                item = self._inbox.popleft()
                pending += item.text
                if item.flush or item.end:
                    await self._speak(pending)
                    pending = ""
                    if item.flush and self.active:
                        self._flushes += 1
                        await self._event("flush_done", flush_done=True, flush_id=self._flushes, done=False)
                    if item.end and self.active:
                        self.state = ContextState.DONE
                        await self._event("done", done=True)
                continue
            cut = len(pending) if delay_s == 0 else _complete_words(pending)
            if cut:
                await self._speak(pending[:cut])
                pending = pending[cut:]
                continue
            self._arrived.clear()
            try:
                async with asyncio.timeout(delay_s if pending else None):
                    await self._arrived.wait()
            except TimeoutError:  # the buffer delay passed without more input: speak what there is
                await self._speak(pending)
                pending = ""

    async def _event(self, kind: str, **fields: Any) -> None:
        event: dict[str, Any] = {"type": kind, **fields, "status_code": STATUS_PARTIAL, "context_id": self.context_id}
        await self._send(event)

    async def _speak(self, text: str) -> None:
        if not text or not self.active:
            return
        started = time.perf_counter()
        samples = synth.synthesize(text, self._rate)
        data = encode(samples, self.request.encoding)
        width = _WIDTH[self.request.encoding]
        base = self.samples
        words = word_spans(text, self._samples_per_char, base)
        flush_id = {"flush_id": self._flushes + 1} if self._flush_seen else {}
        if self._pacer is None:
            self._pacer = Pacer(self._speed)
        told = 0
        for first in range(0, samples.size, self._chunk_samples):
            end = min(first + self._chunk_samples, samples.size)
            await self._pacer.wait((base + first) * 1000 / self._rate)
            if not self.active:
                return
            step_ms = round((time.perf_counter() - started) * 1000, 3)
            chunk = base64.b64encode(data[first * width : end * width]).decode("ascii")
            await self._event("chunk", data=chunk, done=False, step_time=step_ms, **flush_id)
            started = time.perf_counter()
            self.samples = heard = base + end
            upto = told
            while upto < len(words) and words[upto][1] < heard:
                upto += 1
            if self.request.add_timestamps and upto > told and self.active:
                batch = words[told:upto]
                stamps = {
                    "words": [w for w, _, _ in batch],
                    "start": [s / self._rate for _, s, _ in batch],
                    "end": [e / self._rate for _, _, e in batch],
                }
                await self._event("timestamps", done=False, word_timestamps=stamps, **flush_id)
            told = upto
        self.spoken.append(text)


def _complete_words(text: str) -> int:
    """Length of the prefix of `text` that ends at a word boundary (0: none yet)."""
    for i in range(len(text) - 1, -1, -1):
        if text[i].isspace():
            return i + 1
    return 0
