"""Audio helpers for the conformance client: loading, resampling, G.711 μ-law, envelopes, echo matching.

Independent of the relay's own codec code on purpose: the conformance suite must not test the relay with the
relay's own implementation.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

Float = npt.NDArray[np.float32]

ENVELOPE_WINDOW_S = 0.010


def load_wav(path: Path) -> tuple[Float, int]:
    """A mono WAV file as float32 in [-1, 1) and its sample rate."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=False)
    if data.ndim != 1:
        raise ValueError(f"{path}: expected mono audio")
    return np.ascontiguousarray(data, dtype=np.float32), int(rate)


def resample(x: Float, rate_in: int, rate_out: int) -> Float:
    if rate_in == rate_out:
        return x
    return np.asarray(soxr.resample(x, rate_in, rate_out, quality="HQ"), dtype=np.float32)


def silence(seconds: float, rate: int) -> Float:
    return np.zeros(round(seconds * rate), dtype=np.float32)


# --- pcm16 ---------------------------------------------------------------------------------------------------------


def to_pcm16(x: Float) -> bytes:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2").tobytes()


def from_pcm16(data: bytes) -> Float:
    if len(data) % 2:
        raise ValueError(f"pcm16 audio of odd length {len(data)}")
    return (np.frombuffer(data, dtype="<i2").astype(np.float32)) / 32768.0


# --- G.711 μ-law (ITU-T G.711, the classic Sun reference algorithm) --------------------------------------------------

_ULAW_BIAS = 0x84
_ULAW_CLIP14 = 8159  # the encoder works on 14-bit magnitudes
_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)


def to_ulaw(x: Float) -> bytes:
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), _ULAW_CLIP14) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_ULAW_SEG_END, mag)  # first segment whose end is >= mag
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> (seg + 1)) & 0x0F)) ^ mask
    return code.astype(np.uint8).tobytes()


def from_ulaw(data: bytes) -> Float:
    code = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    sign = code & 0x80
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    mag = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    pcm = np.where(sign != 0, -mag, mag)
    return pcm.astype(np.float32) / 32768.0


def encode(x: Float, encoding: str) -> bytes:
    if encoding == "pcm16":
        return to_pcm16(x)
    if encoding == "ulaw":
        return to_ulaw(x)
    raise ValueError(f"encoding {encoding!r} not supported by the conformance client")


def decode(data: bytes, encoding: str) -> Float:
    if encoding == "pcm16":
        return from_pcm16(data)
    if encoding == "ulaw":
        return from_ulaw(data)
    raise ValueError(f"encoding {encoding!r} not supported by the conformance client")


def bytes_per_sample(encoding: str) -> int:
    return {"pcm16": 2, "ulaw": 1, "alaw": 1, "f32": 4}[encoding]


def frames(data: bytes, rate: int, encoding: str, frame_ms: int = 20) -> list[bytes]:
    """Split encoded audio into frames of `frame_ms` (the last one may be shorter)."""
    step = rate * frame_ms // 1000 * bytes_per_sample(encoding)
    return [data[i : i + step] for i in range(0, len(data), step)]


# --- analysis --------------------------------------------------------------------------------------------------------


def envelope(x: Float, rate: int, window_s: float = ENVELOPE_WINDOW_S) -> Float:
    """RMS envelope in consecutive windows of `window_s`."""
    w = max(1, round(window_s * rate))
    n = len(x) // w
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    env: Float = np.sqrt(np.mean(np.square(x[: n * w].reshape(n, w)), axis=1)).astype(np.float32)
    return env


def speech_span(x: Float, rate: int, below_peak_db: float = 40.0) -> tuple[float, float]:
    """First and last instant (s) of the 10 ms windows louder than `below_peak_db` under the loudest one."""
    env = envelope(x, rate)
    if env.size == 0 or float(env.max()) == 0.0:
        return 0.0, 0.0
    active = np.flatnonzero(env > float(env.max()) * 10 ** (-below_peak_db / 20))
    return float(active[0]) * ENVELOPE_WINDOW_S, float(active[-1] + 1) * ENVELOPE_WINDOW_S


def split_turns(x: Float, rate: int, min_gap_s: float = 1.0) -> list[tuple[int, int]]:
    """Cut a recording with several spoken turns at the middle of every silence of at least `min_gap_s`.

    Returns sample ranges [start, end) that together cover the whole recording; each holds one turn with the
    surrounding silence split between neighbours.
    """
    env = envelope(x, rate)
    active = env > float(env.max()) * 10 ** (-40 / 20)
    idx = np.flatnonzero(active)
    cuts: list[int] = []
    for a, b in itertools.pairwise(idx):
        if (b - a) * ENVELOPE_WINDOW_S >= min_gap_s:
            cuts.append(round((a + b) / 2 * ENVELOPE_WINDOW_S * rate))
    bounds = [0, *cuts, len(x)]
    return list(itertools.pairwise(bounds))


@dataclass(frozen=True)
class EchoMatch:
    lag_s: float  # where the echo starts inside the reference
    envelope_correlation: float
    reference_s: float
    echo_s: float


def match_echo(reference: Float, ref_rate: int, echo: Float, echo_rate: int, common_rate: int = 16000) -> EchoMatch:
    """Align `echo` inside `reference` by waveform cross-correlation and correlate their RMS envelopes there.

    Both are resampled to `common_rate`. The lag is searched within ±(the longer duration); the envelope
    correlation (Pearson, 10 ms windows) is computed over the part where the aligned signals overlap.
    """
    ref = resample(reference, ref_rate, common_rate)
    ech = resample(echo, echo_rate, common_rate)
    if ech.size == 0 or ref.size == 0:
        return EchoMatch(0.0, 0.0, ref.size / common_rate, ech.size / common_rate)
    n = 1 << int(np.ceil(np.log2(ref.size + ech.size)))
    xc = np.fft.irfft(np.fft.rfft(ref, n) * np.conj(np.fft.rfft(ech, n)), n)
    # xc[k] = sum ref[i + k] * ech[i]; negative lags wrap to the end.
    lags = np.concatenate([np.arange(0, ref.size), np.arange(-(ech.size - 1), 0)])
    vals = np.concatenate([xc[: ref.size], xc[n - (ech.size - 1) :]]) if ech.size > 1 else xc[: ref.size]
    lag = int(lags[int(np.argmax(vals))])
    r0, e0 = max(lag, 0), max(-lag, 0)
    length = min(ref.size - r0, ech.size - e0)
    env_r = envelope(ref[r0 : r0 + length], common_rate)
    env_e = envelope(ech[e0 : e0 + length], common_rate)
    if env_r.size < 2 or float(np.std(env_r)) == 0.0 or float(np.std(env_e)) == 0.0:
        corr = 0.0
    else:
        corr = float(np.corrcoef(env_r, env_e)[0, 1])
    return EchoMatch(lag / common_rate, corr, ref.size / common_rate, ech.size / common_rate)
