"""The recording every session replays: read once, cut into 20 ms frames and into turns.

A turn is a stretch of speech; pauses between turns are found from the frame energy the same way
an energy VAD would (a frame is voiced at or above ``VOICED_DBFS``; voiced runs closer than
``SPLIT_PAUSE_MS`` belong to the same turn). The end of a turn is the end of its last voiced
frame: what the user perceives as "I stopped talking", and the instant first-audio latency is
measured from under server VAD. Each turn keeps up to ``LEAD_IN_MS`` of the recording before its
speech, so the provider's VAD sees real room tone ahead of the onset.

Everything here runs once per worker process, before the load starts; nothing is per frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from audiocodecs.files import read_audio, read_pcm16
from audiocodecs.format import AudioFormat, Encoding
from audiocodecs.g711 import alaw_encode, ulaw_encode
from loadtest.pacing import FRAME_MS

REPO: Final = Path(__file__).resolve().parent.parent
DEFAULT_RECORDING: Final = REPO / "tests" / "audio" / "conversation-3-turns-16k.wav"
# The OpenAI emulator's VAD: threshold 0.5 is -45 dBFS at onset, 6 dB less while speaking.
VOICED_DBFS: Final = -51.0
# Within-utterance pauses in tests/audio are <= 0.46 s; the provider ends a turn after 0.5 s.
SPLIT_PAUSE_MS: Final = 500
MIN_TURN_MS: Final = 100
LEAD_IN_MS: Final = 300
_ANALYSIS_RATE: Final = 16_000
_DEFAULT_RATES: Final = {"pcm16": 16_000, "f32": 16_000, "ulaw": 8_000, "alaw": 8_000}


def parse_format(text: str) -> AudioFormat:
    """``ENCODING[/RATE]``, e.g. ``pcm16/16000``, ``pcm16/48000``, ``ulaw`` (8 kHz)."""
    encoding, _, rate = text.partition("/")
    encoding = encoding.strip().lower()
    if encoding not in _DEFAULT_RATES:
        raise ValueError(f"audio format {text!r}: encoding must be one of {', '.join(_DEFAULT_RATES)} (not opus)")
    return AudioFormat(Encoding(encoding), int(rate) if rate else _DEFAULT_RATES[encoding])


def format_label(fmt: AudioFormat) -> str:
    return f"{fmt.encoding.value}/{fmt.sample_rate}"


def provider_format(client: AudioFormat) -> AudioFormat:
    """What the OpenAI Realtime wire carries for a client format (as the relay negotiates it):
    G.711 at 8 kHz passes through, everything else is pcm16 at 24 kHz."""
    if client.sample_rate == 8000 and client.encoding in (Encoding.ULAW, Encoding.ALAW):
        return client
    return AudioFormat(Encoding.PCM16, 24_000)


@dataclass(frozen=True, slots=True)
class Turn:
    first: int  # first frame index (lead-in included)
    end: int  # one past the last voiced frame
    speech_start: int


@dataclass(frozen=True, slots=True)
class Recording:
    path: Path
    fmt: AudioFormat
    frames: tuple[bytes, ...]  # 20 ms each, in ``fmt``
    silence: bytes  # one 20 ms frame of digital silence in ``fmt``
    turns: tuple[Turn, ...]

    @property
    def duration_ms(self) -> int:
        return len(self.frames) * FRAME_MS

    def turn_frames(self, turn: Turn) -> tuple[bytes, ...]:
        return self.frames[turn.first : turn.end]


def find_turns(path: Path) -> tuple[tuple[int, int], ...]:
    """Speech spans of a recording as (start, end) 20 ms frame indices."""
    samples = read_pcm16(path, _ANALYSIS_RATE)
    width = _ANALYSIS_RATE * FRAME_MS // 1000
    count = samples.size // width
    if not count:
        raise ValueError(f"{path}: shorter than one {FRAME_MS} ms frame")
    frames = samples[: count * width].reshape(count, width).astype(np.float64)
    power = np.einsum("ij,ij->i", frames, frames) / width / 32768.0**2
    voiced = (10 * np.log10(power + 1e-12)) >= VOICED_DBFS
    spans: list[list[int]] = []
    split = SPLIT_PAUSE_MS // FRAME_MS
    for index in np.flatnonzero(voiced).tolist():
        if spans and index - spans[-1][1] < split:
            spans[-1][1] = index + 1
        else:
            spans.append([index, index + 1])
    turns = tuple((a, b) for a, b in spans if (b - a) * FRAME_MS >= MIN_TURN_MS)
    if not turns:
        raise ValueError(f"{path}: no speech found (nothing at or above {VOICED_DBFS} dBFS)")
    return turns


def load(path: Path, fmt: AudioFormat) -> Recording:
    data = read_audio(path, fmt)
    size = fmt.frame_bytes * fmt.sample_rate * FRAME_MS // 1000
    frames = tuple(data[i : i + size] for i in range(0, len(data) - size + 1, size))
    lead = LEAD_IN_MS // FRAME_MS
    turns: list[Turn] = []
    previous_end = 0
    for start, end in find_turns(path):
        end = min(end, len(frames))
        if end <= start:
            continue
        turns.append(Turn(first=max(previous_end, start - lead), end=end, speech_start=start))
        previous_end = end
    return Recording(path, fmt, frames, _silence(fmt, size), tuple(turns))


def _silence(fmt: AudioFormat, size: int) -> bytes:
    zeros = np.zeros(size // fmt.frame_bytes, dtype=np.int16)
    if fmt.encoding is Encoding.ULAW:
        return ulaw_encode(zeros)
    if fmt.encoding is Encoding.ALAW:
        return alaw_encode(zeros)
    return bytes(size)  # pcm16 and f32 zeros are zero bytes
