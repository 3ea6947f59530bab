"""A session's input audio buffer: mono int16 PCM at one rate, cut into turns by an optional VAD.

``append`` returns `SpeechStarted` / `SpeechStopped` as the `EnergyVad` decides them; a stop carries
the turn's audio (prefix padding and trailing silence included) and removes it from the buffer.
Without a VAD the buffer only grows until `commit` (push-to-talk) or `clear`.

Times are milliseconds since the session's first appended sample ("audio_start_ms"/"audio_end_ms"
in OpenAI's words); they keep counting across commits, clears and format changes. While no speech
is in progress the buffer keeps at most ``max_idle_ms`` of audio, so a client streaming silence for
an hour does not grow it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from providers.emulation.vad import EnergyVad, VadConfig, VadEventKind

__all__ = ["MAX_IDLE_MS", "InputAudioBuffer", "SpeechStarted", "SpeechStopped", "TurnEvent"]

#: audio kept while nobody speaks (the buffer is trimmed lazily, when it holds twice this)
MAX_IDLE_MS: Final = 10_000
_SAMPLE_BYTES: Final = 2


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    start_ms: int
    end_ms: int
    audio: npt.NDArray[np.int16]


TurnEvent = SpeechStarted | SpeechStopped


class InputAudioBuffer:
    __slots__ = (
        "_base_ms",
        "_base_sample",
        "_buf",
        "_max_idle",
        "_max_idle_ms",
        "_rate",
        "_speech_start",
        "_start",
        "_vad",
    )

    def __init__(self, sample_rate: int, vad: VadConfig | None = None, *, max_idle_ms: int = MAX_IDLE_MS) -> None:
        self._rate = sample_rate
        self._max_idle_ms = max_idle_ms
        self._max_idle = max_idle_ms * sample_rate // 1000
        self._buf = bytearray()
        self._start = 0  # absolute sample index of the buffer's first sample
        self._base_ms = 0  # time of absolute sample `_base_sample`
        self._base_sample = 0
        self._speech_start: int | None = None
        self._vad = EnergyVad(sample_rate, vad) if vad is not None else None

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def vad(self) -> VadConfig | None:
        return self._vad.config if self._vad is not None else None

    @property
    def buffered_ms(self) -> int:
        return len(self._buf) // _SAMPLE_BYTES * 1000 // self._rate

    @property
    def speech_active(self) -> bool:
        return self._speech_start is not None

    @property
    def position_ms(self) -> int:
        """Time just after the last appended sample."""
        return self._ms(self._end)

    @property
    def _end(self) -> int:
        return self._start + len(self._buf) // _SAMPLE_BYTES

    def _ms(self, sample: int) -> int:
        return self._base_ms + (sample - self._base_sample) * 1000 // self._rate

    def reconfigure(self, sample_rate: int, vad: VadConfig | None) -> None:
        """New input format or turn detection: drop buffered audio, keep the session clock."""
        now_ms = self.position_ms
        self._rate = sample_rate
        self._max_idle = self._max_idle_ms * sample_rate // 1000
        self._buf.clear()
        self._start = self._base_sample = 0
        self._base_ms = now_ms
        self._speech_start = None
        self._vad = EnergyVad(sample_rate, vad) if vad is not None else None

    def append(self, samples: npt.NDArray[np.int16]) -> list[TurnEvent]:
        self._buf += samples.tobytes()
        if self._vad is None:
            return []
        events: list[TurnEvent] = []
        for event in self._vad.process(samples):
            if event.kind is VadEventKind.SPEECH_STARTED:
                self._speech_start = max(event.sample, self._start)
                events.append(SpeechStarted(self._ms(self._speech_start)))
            elif self._speech_start is not None:
                start, self._speech_start = self._speech_start, None
                audio = self._take(start, event.sample)
                events.append(SpeechStopped(self._ms(start), self._ms(event.sample), audio))
        if self._speech_start is None and len(self._buf) > 2 * self._max_idle * _SAMPLE_BYTES:
            self._drop_before(self._end - self._max_idle)
        return events

    def commit(self) -> tuple[int, int, npt.NDArray[np.int16]]:
        """Take everything buffered (push-to-talk, or a manual commit during VAD): (start_ms, end_ms, audio)."""
        start, end = self._start, self._end
        audio = self._take(start, end)
        self._speech_start = None
        if self._vad is not None:
            self._vad.reset()
        return self._ms(start), self._ms(end), audio

    def clear(self) -> None:
        self._drop_before(self._end)
        self._speech_start = None
        if self._vad is not None:
            self._vad.reset()

    def _take(self, start: int, end: int) -> npt.NDArray[np.int16]:
        lo = (max(start, self._start) - self._start) * _SAMPLE_BYTES
        hi = (min(end, self._end) - self._start) * _SAMPLE_BYTES
        audio = np.frombuffer(bytes(self._buf[lo:hi]), dtype=np.int16)
        self._drop_before(end)
        return audio

    def _drop_before(self, sample: int) -> None:
        count = min(max(0, sample - self._start), len(self._buf) // _SAMPLE_BYTES)
        if count:
            del self._buf[: count * _SAMPLE_BYTES]
            self._start += count
