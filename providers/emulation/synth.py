"""A deterministic, speech-like synthesizer for emulators.

Every letter or digit becomes a short voiced tone burst (a fundamental plus two harmonics, with
raised-cosine edges so there are no clicks) whose pitch is taken from the character code; every
other character (space, punctuation) is a silence of the same length. So:

* the same text always gives the same samples, bit for bit (pure arithmetic, no randomness);
* duration is exactly ``len(text) * CHAR_MS`` milliseconds, so it is proportional to the length,
  and character ``i`` starts at ``i * CHAR_MS`` ms (emulators use this to align transcript deltas);
* the level (≈ -17 dBFS RMS while voiced) is well above any sensible VAD threshold, so synthesized
  speech fed back into an emulator is heard as speech.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "AMPLITUDE",
    "CHAR_MS",
    "SAMPLE_RATE",
    "char_pitch_hz",
    "duration_ms",
    "samples_per_char",
    "synthesize",
]

#: default output rate (the OpenAI Realtime PCM rate)
SAMPLE_RATE: Final = 24_000
#: length of every character, voiced or silent
CHAR_MS: Final = 70
#: peak amplitude of a burst (int16 full scale is 32767)
AMPLITUDE: Final = 8_000
#: raised-cosine attack and release of a burst
EDGE_MS: Final = 8
#: lowest fundamental and the pitch step per character code
_BASE_HZ: Final = 110.0
_STEP_HZ: Final = 4.0
_PITCH_CLASSES: Final = 48
#: relative weights of the fundamental and the 2nd and 3rd harmonics
_HARMONICS: Final = (1.0, 0.5, 0.25)


def samples_per_char(sample_rate: int) -> int:
    return sample_rate * CHAR_MS // 1000


def duration_ms(text: str) -> int:
    """Duration of ``synthesize(text)`` in milliseconds."""
    return len(text) * CHAR_MS


def char_pitch_hz(char: str) -> float:
    """Fundamental frequency of a voiced character: 110-298 Hz, a speaking voice's range."""
    return _BASE_HZ + (ord(char) % _PITCH_CLASSES) * _STEP_HZ


def _voiced(char: str) -> bool:
    return char.isalnum()


@lru_cache(maxsize=1024)
def _burst(char: str, sample_rate: int) -> npt.NDArray[np.int16]:
    n = samples_per_char(sample_rate)
    if not _voiced(char):
        silence = np.zeros(n, dtype=np.int16)
        silence.flags.writeable = False
        return silence
    t = np.arange(n, dtype=np.float64) / sample_rate
    f0 = char_pitch_hz(char)
    wave = np.zeros(n, dtype=np.float64)
    for k, weight in enumerate(_HARMONICS):
        wave += weight * np.sin(2.0 * np.pi * f0 * (k + 1) * t)
    wave /= sum(_HARMONICS)
    edge = min(n // 2, sample_rate * EDGE_MS // 1000)
    envelope = np.ones(n, dtype=np.float64)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(edge, dtype=np.float64) / edge)
    envelope[:edge] = ramp
    envelope[n - edge :] = ramp[::-1]
    burst = np.round(wave * envelope * AMPLITUDE).astype(np.int16)
    burst.flags.writeable = False
    return burst


def synthesize(text: str, sample_rate: int = SAMPLE_RATE) -> npt.NDArray[np.int16]:
    """Speak ``text``: mono int16 samples at ``sample_rate``, ``len(text) * CHAR_MS`` ms long."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive; got {sample_rate}")
    if not text:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate([_burst(char, sample_rate) for char in text])
