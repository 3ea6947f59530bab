"""Streaming sample-rate conversion on libsoxr (python-soxr ``ResampleStream``).

One :class:`StreamingResampler` per direction per session, never one per chunk: a stream keeps the
filter's history across chunks, so there are no edge artefacts at chunk boundaries, and it costs
5 to 12 µs per 20 ms frame where one-shot ``soxr.resample`` costs 28 to 60 µs and clicks at every
boundary (reference/physical-limits.md §2).

Why int32 inside: soxr applies TPDF dither when its *output* type is int16, and the dither makes the
output depend on how the input was chunked (and differ by ±2 LSB between runs after ``clear()``).
The relay wants output that is a pure function of the input signal, so the stream runs on int32:
each int16 sample ``s`` is loaded as ``s * 65536 + 32768`` into a reused buffer (one strided copy
into the high halves; the low halves stay 0x8000), and the int16 result is the high half of each
int32 output sample, read through a view. The +32768 offset turns the high half's floor into
round-to-nearest, and soxr's int32 clipping saturates the high half at ±32767/-32768 for free.
This costs the same as soxr's own int16 path (measured in ``loadtest/codec_bench.py``) and is
bit-identical whatever the chunking.
"""

from __future__ import annotations

import sys
from typing import Final

import numpy as np
import numpy.typing as npt
import soxr

__all__ = ["QUALITIES", "StreamingResampler"]

QUALITIES: Final = ("QQ", "LQ", "MQ", "HQ", "VHQ")
_HIGH: Final = 1 if sys.byteorder == "little" else 0  # index of the high int16 half inside an int32
_ROUNDING: Final = 0x8000
_INT16: Final = np.dtype(np.int16)
_frombuffer: Final = np.frombuffer


class StreamingResampler:
    """Resample an int16 stream from ``in_rate`` to ``out_rate``; output independent of chunking.

    ``process`` consumes interleaved int16 samples and returns what the filter can emit so far;
    ``flush`` ends a turn (emits the tail the filter holds and leaves the stream ready for a new
    turn); ``reset`` drops all state without emitting (after a gap or barge-in). With equal rates
    it is a pass-through that holds no state.
    """

    __slots__ = (
        "_buffer",
        "_channels",
        "_high",
        "_in_rate",
        "_out_rate",
        "_pick",
        "_resample",
        "_size",
        "_stream",
    )

    def __init__(self, in_rate: int, out_rate: int, channels: int = 1, quality: str = "HQ") -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive; got {in_rate} -> {out_rate}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1; got {channels}")
        if quality not in QUALITIES:
            raise ValueError(f"quality must be one of {', '.join(QUALITIES)}; got {quality!r}")
        self._in_rate = in_rate
        self._out_rate = out_rate
        self._channels = channels
        # which int16 halves of an int32 (frames x channels) array hold the sample: a 1-D view for mono
        self._pick: tuple[slice, int | slice] = (
            (slice(None), _HIGH) if channels == 1 else (slice(None), slice(_HIGH, None, 2))
        )
        self._stream: soxr.ResampleStream | None = None
        self._allocate(0)
        if in_rate != out_rate:
            self._stream = soxr.ResampleStream(in_rate, out_rate, channels, dtype="int32", quality=quality)
            self._resample = self._stream.resample_chunk

    @property
    def in_rate(self) -> int:
        return self._in_rate

    @property
    def out_rate(self) -> int:
        return self._out_rate

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def passthrough(self) -> bool:
        return self._stream is None

    @property
    def delay_ms(self) -> float:
        """Audio currently held inside the filter (what ``flush`` would still emit), in ms."""
        if self._stream is None:
            return 0.0
        return float(self._stream.delay()) * 1000.0 / self._out_rate

    def _allocate(self, size: int) -> None:
        """(Re)build the int32 input buffer for ``size`` interleaved samples, low halves set to 0x8000."""
        frames, partial = divmod(size, self._channels)
        if partial:
            raise ValueError(f"{self._channels}-channel input must hold whole frames; got {size} samples")
        self._buffer = np.full((frames, self._channels), _ROUNDING, dtype=np.int32)
        self._high = self._buffer.view(np.int16)[self._pick]  # where the int16 samples go (a strided view)
        self._size = size

    def _load(self, samples: npt.NDArray[np.int16]) -> npt.NDArray[np.int32]:
        if samples.size != self._size:
            self._allocate(samples.size)
        self._high[...] = samples.reshape(-1) if self._channels == 1 else samples.reshape(-1, self._channels)
        return self._buffer

    def process_bytes(self, data: bytes) -> bytes:
        """pcm16 bytes in, pcm16 bytes out (the transcoder's hot path). ``data`` must hold whole frames."""
        if self._stream is None:
            return data
        samples = _frombuffer(data, _INT16)
        if samples.size != self._size:
            self._allocate(samples.size)
        self._high[...] = samples if self._channels == 1 else samples.reshape(-1, self._channels)
        out: npt.NDArray[np.int32] = self._resample(self._buffer)
        return out.view(_INT16)[self._pick].tobytes()

    def process_to_bytes(self, samples: npt.NDArray[np.int16]) -> bytes:
        """Like :meth:`process`, but returns the output as pcm16 bytes without an intermediate array."""
        if samples.dtype != np.int16:
            raise TypeError(f"StreamingResampler takes int16 samples; got {samples.dtype}")
        if self._stream is None:
            return samples.tobytes()
        out: npt.NDArray[np.int32] = self._resample(self._load(samples))
        return out.view(_INT16)[self._pick].tobytes()

    def process(self, samples: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """Interleaved int16 samples (1-D, or 2-D frames x channels) → resampled int16, same ndim.

        Returns what the filter can emit so far; the rest comes with later input or ``flush``.
        In pass-through mode the input itself is returned.
        """
        if samples.dtype != np.int16:
            raise TypeError(f"StreamingResampler takes int16 samples; got {samples.dtype}")
        if self._stream is None:
            return samples
        out: npt.NDArray[np.int32] = self._resample(self._load(samples))
        return self._unload(out, samples.ndim)

    def flush(self) -> npt.NDArray[np.int16]:
        """End of turn: emit the tail held in the filter, then start afresh (as if newly created)."""
        if self._stream is None:
            return np.empty(0, dtype=np.int16)
        out: npt.NDArray[np.int32] = self._resample(np.empty((0, self._channels), dtype=np.int32), last=True)
        self._stream.clear()
        return self._unload(out, 1)

    def reset(self) -> None:
        """Drop all state without emitting (after a gap or barge-in)."""
        if self._stream is not None:
            self._stream.clear()

    def _unload(self, out: npt.NDArray[np.int32], ndim: int) -> npt.NDArray[np.int16]:
        high = np.ascontiguousarray(out.view(np.int16)[self._pick])
        if ndim == 1:
            return high.reshape(-1)
        return high.reshape(-1, self._channels)

    def __repr__(self) -> str:
        return f"StreamingResampler({self._in_rate} -> {self._out_rate} Hz, {self._channels}ch)"
