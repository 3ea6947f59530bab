"""One emulated ElevenLabs TTS context: text buffered by the chunk schedule, spoken by the shared synthesizer.

When text turns into audio (reference §2a):

* the chunk schedule (``generation_config.chunk_length_schedule``, default ``[120, 160, 250, 290]``):
  generation ``n`` starts once ``schedule[min(n, last)]`` characters are buffered, and speaks the
  buffer up to its last space (the word still being typed waits);
* ``auto_mode``: a generation at every sentence end instead;
* ``try_trigger_generation`` (stream-input): at once if `TRIGGER_MIN_CHARS` are buffered;
* ``flush``: everything buffered, at once.

``close_context`` drops text not yet generated; generations already made still play, then
``isFinal`` goes out (the context then ends and its id may be used again).

Each generation is `providers.emulation.synth` speech at the connection's ``output_format``, sent as
audio messages of `chunk_chars` characters each — ``alignment`` and ``normalizedAlignment`` list
those characters with start times relative to the chunk, as the service does. Chunk ``i`` of a
generation is released at its media time divided by ``speed`` (0: unpaced).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import re
from collections.abc import Awaitable, Callable
from itertools import pairwise
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from websockets.exceptions import ConnectionClosed

from audiocodecs.format import AudioFormat, Encoding
from audiocodecs.g711 import alaw_encode, ulaw_encode
from providers.emulation import synth
from providers.emulation.pacing import Pacer
from providers.emulation.server import ConnectionDropped

__all__ = [
    "DEFAULT_CHUNK_CHARS",
    "DEFAULT_SCHEDULE",
    "TRIGGER_MIN_CHARS",
    "EmulatedContext",
    "KeyStyle",
    "Send",
]

DEFAULT_SCHEDULE: Final = (120, 160, 250, 290)
#: `try_trigger_generation` generates only above this many buffered characters
TRIGGER_MIN_CHARS: Final = 50
#: characters of speech per audio message
DEFAULT_CHUNK_CHARS: Final = 4
_SENTENCE_END: Final = re.compile(r"[.!?;:]\s*$")

#: (message, kind for the connection's recording)
Send = Callable[[dict[str, Any], str], Awaitable[object]]


class KeyStyle(enum.StrEnum):
    """How the context key and the final flag are spelled in server messages."""

    CAMEL = "camel"  # contextId, isFinal — the spec and the SDK's types
    SNAKE = "snake"  # context_id, is_final — what integrators also saw in 2026 (reference §2b)


def _encode(samples: npt.NDArray[np.int16], fmt: AudioFormat) -> bytes:
    if fmt.encoding is Encoding.ULAW:
        return ulaw_encode(samples)
    if fmt.encoding is Encoding.ALAW:
        return alaw_encode(samples)
    return samples.astype("<i2", copy=False).tobytes()


class EmulatedContext:
    """A context's buffer and its generations, streamed by a task of its own."""

    def __init__(
        self,
        context_id: str | None,
        fmt: AudioFormat,
        send: Send,
        *,
        on_end: Callable[[EmulatedContext], None],
        schedule: tuple[float, ...] = DEFAULT_SCHEDULE,
        auto_mode: bool = False,
        speed: float = 0.0,
        chunk_chars: int = DEFAULT_CHUNK_CHARS,
        key_style: KeyStyle = KeyStyle.CAMEL,
        failure: Callable[[], Awaitable[None]] | None = None,
        voice_settings: object = None,
    ) -> None:
        #: None on the single-context endpoint (its messages carry no context key)
        self.id = context_id
        self.voice_settings = voice_settings
        self.buffer = ""
        self.generations = 0
        #: characters spoken so far (what the service bills)
        self.spoken_characters = 0
        self.closed = False
        #: set when the context's stream is over (isFinal sent, or the connection went away)
        self.ended = asyncio.Event()
        self._fmt = fmt
        self._send = send
        self._on_end = on_end
        self._schedule = schedule or DEFAULT_SCHEDULE
        self._auto_mode = auto_mode
        self._speed = speed
        self._chunk_chars = chunk_chars
        self._key_style = key_style
        self._failure = failure
        self._pending: asyncio.Queue[str | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._speaking = False

    @property
    def busy(self) -> bool:
        """Audio is being generated or waits to be."""
        return self._speaking or not self._pending.empty()

    # -- client messages ------------------------------------------------------------------------

    def add_text(self, text: str) -> None:
        self.buffer += text
        if self._auto_mode:
            if _SENTENCE_END.search(self.buffer):
                self._generate(self.buffer)
            return
        threshold = self._schedule[min(self.generations, len(self._schedule) - 1)]
        if len(self.buffer) >= threshold:
            self._generate(self._up_to_last_space())

    def try_trigger(self) -> None:
        if len(self.buffer) >= TRIGGER_MIN_CHARS:
            self._generate(self._up_to_last_space())

    def flush(self) -> None:
        if self.buffer:
            self._generate(self.buffer)

    def close(self) -> None:
        """``close_context``: drop what was not generated; what was still plays, then ``isFinal``."""
        if self.closed:
            return
        self.closed = True
        self.buffer = ""
        self._pending.put_nowait(None)
        self._start()

    def finish(self) -> None:
        """End of input (``{"text": ""}`` on stream-input, ``close_socket``): flush, then close."""
        self.flush()
        self.close()

    async def stop(self) -> None:
        """The connection is going away: stop streaming, send nothing more."""
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- generation -----------------------------------------------------------------------------

    def _up_to_last_space(self) -> str:
        cut = self.buffer.rfind(" ")
        return self.buffer[: cut + 1] if cut > 0 else self.buffer

    def _generate(self, text: str) -> None:
        self.buffer = self.buffer[len(text) :]
        self.generations += 1
        self._pending.put_nowait(text)
        self._start()

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"elevenlabs-context-{self.id}")

    async def _run(self) -> None:
        try:
            while True:
                text = await self._pending.get()
                if text is None:
                    await self._send(self._final_message(), "final")
                    self._on_end(self)
                    return
                if self._failure is not None:
                    await self._failure()
                    return
                self._speaking = True
                try:
                    await self._speak(text)
                finally:
                    self._speaking = False
        except (ConnectionClosed, ConnectionDropped):
            pass  # the client left, or a fault dropped it: nobody to speak to
        finally:
            self.ended.set()

    async def _speak(self, text: str) -> None:
        rate = self._fmt.sample_rate
        per_char = synth.samples_per_char(rate)
        samples = synth.synthesize(text, rate)
        pacer = Pacer(self._speed)
        step = self._chunk_chars
        for first in range(0, len(text), step):
            piece = text[first : first + step]
            await pacer.wait(first * per_char * 1000 / rate)
            chunk = samples[first * per_char : (first + len(piece)) * per_char]
            # Times are relative to this chunk; each character ends where the next starts.
            edges = [round(k * per_char * 1000 / rate) for k in range(len(piece) + 1)]
            alignment = {
                "chars": list(piece),
                "charStartTimesMs": edges[:-1],
                "charDurationsMs": [b - a for a, b in pairwise(edges)],
            }
            message: dict[str, Any] = {
                "audio": base64.b64encode(_encode(chunk, self._fmt)).decode(),
                "normalizedAlignment": alignment,
                "alignment": alignment,
            }
            if self.id is not None:
                message["contextId" if self._key_style is KeyStyle.CAMEL else "context_id"] = self.id
            await self._send(message, "audio")
            self.spoken_characters += len(piece)

    def _final_message(self) -> dict[str, Any]:
        if self._key_style is KeyStyle.SNAKE:
            return {"is_final": True, "context_id": self.id} if self.id is not None else {"is_final": True}
        return {"isFinal": True, "contextId": self.id} if self.id is not None else {"isFinal": True}
