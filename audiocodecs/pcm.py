"""Linear PCM helpers: int16 ↔ float32, down-mixing, chunk validation.

pcm16 is little-endian int16 full scale ±32768; f32 is float32 full scale ±1.0. Both are interleaved.
"""

from __future__ import annotations

from typing import TypeVar, cast

import numpy as np
import numpy.typing as npt

from audiocodecs.errors import InvalidAudio
from audiocodecs.format import AudioFormat, Encoding

_T = TypeVar("_T", bound=np.generic)

__all__ = ["as_int16", "f32_to_pcm16", "pcm16_to_f32", "to_mono", "validate_chunk"]

_INT16_SCALE = np.float32(1.0 / 32768.0)
_F32_SCALE = np.float32(32768.0)


def as_int16(data: bytes) -> npt.NDArray[np.int16]:
    """A zero-copy, read-only int16 view of little-endian pcm16 bytes."""
    if len(data) & 1:
        raise InvalidAudio(f"pcm16 audio must be a whole number of 2-byte samples; got {len(data)} bytes")
    return np.frombuffer(data, dtype=np.int16)


def pcm16_to_f32(data: bytes | npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
    """pcm16 (bytes or int16 array) → float32 in [-1, 1): ``sample / 32768``."""
    samples = as_int16(data) if isinstance(data, bytes | bytearray | memoryview) else data
    return np.multiply(samples, _INT16_SCALE, dtype=np.float32)


def f32_to_pcm16(samples: npt.NDArray[np.floating]) -> npt.NDArray[np.int16]:
    """float samples (full scale ±1.0) → int16: scale by 32768, round to nearest, clip; NaN → 0."""
    scaled: npt.NDArray[np.float32] = np.multiply(samples, _F32_SCALE, dtype=np.float32)
    np.nan_to_num(scaled, copy=False, nan=0.0, posinf=32767.0, neginf=-32768.0)
    np.rint(scaled, out=scaled)
    np.clip(scaled, -32768.0, 32767.0, out=scaled)
    return scaled.astype(np.int16)


def to_mono(samples: npt.NDArray[_T], channels: int) -> npt.NDArray[_T]:
    """Interleaved (or frames x channels) samples → mono by averaging the channels.

    ``channels == 1`` returns ``samples`` itself (no copy). Integer input is averaged in a wider type
    and rounded back to its dtype.
    """
    if channels == 1:
        return samples
    if channels < 1:
        raise ValueError(f"channels must be >= 1; got {channels}")
    if samples.size % channels:
        raise InvalidAudio(f"{channels}-channel audio must hold whole frames; got {samples.size} samples")
    frames = samples.reshape(-1, channels)
    if np.issubdtype(samples.dtype, np.integer):
        mean = frames.sum(axis=1, dtype=np.int64) / channels
        return cast("npt.NDArray[_T]", np.rint(mean).astype(samples.dtype))
    return cast("npt.NDArray[_T]", frames.mean(axis=1, dtype=samples.dtype))


def validate_chunk(data: bytes, fmt: AudioFormat) -> None:
    """Raise :class:`InvalidAudio` unless ``data`` is a whole number of samples (frames) of ``fmt``.

    Opus packets are checked only for being non-empty here; decoding finds corrupt ones.
    """
    if fmt.encoding is Encoding.OPUS:
        if not data:
            raise InvalidAudio("an opus packet must not be empty")
        return
    frame = fmt.frame_bytes
    if len(data) % frame:
        width = fmt.bytes_per_sample
        unit = f"{width}-byte samples" if width > 1 else "samples"
        per = f" x {fmt.channels} channels" if fmt.channels > 1 else ""
        raise InvalidAudio(f"{fmt.encoding.value} audio must be a whole number of {unit}{per}; got {len(data)} bytes")
