"""One session direction's audio conversion: any supported format in, any supported format out.

``Transcoder(src, dst)`` is the session's only audio conversion entry point, used both directions
(client → provider and provider → client). Internally audio is int16 mono: the chain is

    validate → decode (Opus packet / G.711 / f32 / pcm16) → down-mix → resample → encode for ``dst``

with one :class:`~audiocodecs.resample.StreamingResampler` (and at most one Opus decoder and encoder)
per transcoder, created once. It runs per 20 ms frame, 50 times a second per direction per session,
so the common conversions get a ``feed`` of their own, picked once at construction (``Transcoder(...)``
returns an instance of a private subclass; there is no per-frame dispatch):

* ``src == dst``: check the size, return ``[data]`` (the same object, no copy);
* pcm16 → pcm16 at another rate: ``bytes`` → soxr → ``bytes``, nothing else;
* G.711 → pcm16 and pcm16 → G.711 (any rates): one table lookup (plus the resampler).

Precision: f32 input is carried as 16-bit inside the chain (every provider speaks pcm16).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import numpy.typing as npt

from audiocodecs.format import AudioFormat, Encoding
from audiocodecs.g711 import ALAW_DECODE_TABLE, ALAW_ENCODE_TABLE, ULAW_DECODE_TABLE, ULAW_ENCODE_TABLE
from audiocodecs.opus import OpusDecoder, OpusEncoder
from audiocodecs.pcm import f32_to_pcm16, pcm16_to_f32, to_mono, validate_chunk
from audiocodecs.resample import StreamingResampler

__all__ = ["Transcoder"]

_DECODE_TABLES: Final = {Encoding.ULAW: ULAW_DECODE_TABLE, Encoding.ALAW: ALAW_DECODE_TABLE}
_ENCODE_TABLES: Final = {Encoding.ULAW: ULAW_ENCODE_TABLE, Encoding.ALAW: ALAW_ENCODE_TABLE}
_UINT8: Final = np.dtype(np.uint8)
_UINT16: Final = np.dtype(np.uint16)
_INT16: Final = np.dtype(np.int16)
_frombuffer: Final = np.frombuffer


class Transcoder:
    """Convert a stream of ``src`` audio into ``dst`` audio, chunk by chunk.

    * ``feed(data)``: one chunk (for an Opus ``src``, exactly one packet) → the output it completes.
      For an Opus ``dst`` that is 0..n whole 20 ms packets; otherwise normally one ``bytes`` object,
      or an empty list when there is nothing to emit yet. Bad input raises
      :class:`~audiocodecs.errors.InvalidAudio` (or ``CorruptPacket``) and leaves the transcoder usable.
    * ``conceal()``: one Opus ``src`` packet was lost: emit loss concealment through the same chain.
    * ``flush()``: end of turn: drain the resampler and the Opus re-framer.
    * ``reset()``: after a gap or barge-in: drop all state, emit nothing.
    """

    __slots__ = (
        "_decode_table",
        "_decoder",
        "_dst",
        "_encode_table",
        "_encoder",
        "_process_bytes",
        "_resampler",
        "_src",
        "_to_bytes",
        "_unit",
    )

    def __new__(
        cls,
        src: AudioFormat,
        dst: AudioFormat,
        quality: str = "HQ",
        opus_bitrate: int = 32000,
        opus_complexity: int = 5,
    ) -> Transcoder:
        return object.__new__(_strategy(src, dst) if cls is Transcoder else cls)

    def __init__(
        self,
        src: AudioFormat,
        dst: AudioFormat,
        quality: str = "HQ",
        opus_bitrate: int = 32000,
        opus_complexity: int = 5,
    ) -> None:
        self._src = src
        self._dst = dst
        self._unit = 1 if src.encoding is Encoding.OPUS else src.frame_bytes
        self._resampler = StreamingResampler(src.sample_rate, dst.sample_rate, 1, quality)
        self._process_bytes = self._resampler.process_bytes
        self._to_bytes: Callable[[npt.NDArray[np.int16]], bytes] = (
            np.ndarray.tobytes if self._resampler.passthrough else self._resampler.process_to_bytes
        )
        self._decode_table = _DECODE_TABLES.get(src.encoding, ULAW_DECODE_TABLE)
        self._encode_table = _ENCODE_TABLES.get(dst.encoding, ULAW_ENCODE_TABLE)
        converts = src != dst
        self._decoder = OpusDecoder() if converts and src.encoding is Encoding.OPUS else None
        self._encoder = (
            OpusEncoder(opus_bitrate, opus_complexity) if converts and dst.encoding is Encoding.OPUS else None
        )

    @property
    def src(self) -> AudioFormat:
        return self._src

    @property
    def dst(self) -> AudioFormat:
        return self._dst

    def __repr__(self) -> str:
        return f"Transcoder({self._src} -> {self._dst})"

    # ------------------------------------------------------------------------------------------ the API

    def feed(self, data: bytes) -> list[bytes]:
        """Convert one chunk; return the output it completes (see the class docstring)."""
        validate_chunk(data, self._src)
        return self._emit(self._decode(data))

    def conceal(self) -> list[bytes]:
        """One Opus ``src`` packet was lost: emit concealment (no-op for other sources and Opus → Opus)."""
        if self._decoder is None:
            return []
        return self._emit(self._decoder.conceal())

    def flush(self) -> list[bytes]:
        """End of turn: emit what the resampler and the Opus re-framer still hold."""
        tail = self._resampler.flush()
        if self._encoder is not None:
            packets = self._encoder.encode(tail) if tail.size else []
            packets.extend(self._encoder.flush())
            return packets
        return [self._encode(tail)] if tail.size else []

    def reset(self) -> None:
        """Drop all internal state without emitting anything (after a gap or barge-in)."""
        self._resampler.reset()
        if self._decoder is not None:
            self._decoder.reset()
        if self._encoder is not None:
            self._encoder.reset()

    # ------------------------------------------------------------------------------------------ stages

    def _decode(self, data: bytes) -> npt.NDArray[np.int16]:
        """``src`` bytes → int16 mono samples at the source rate (48 kHz for Opus)."""
        encoding = self._src.encoding
        samples: npt.NDArray[np.int16]
        if encoding is Encoding.PCM16:
            samples = _frombuffer(data, _INT16)
        elif encoding is Encoding.ULAW or encoding is Encoding.ALAW:
            samples = self._decode_table[_frombuffer(data, _UINT8)]
        elif encoding is Encoding.F32:
            return f32_to_pcm16(to_mono(_frombuffer(data, np.float32), self._src.channels))
        else:
            assert self._decoder is not None
            return self._decoder.decode(data)  # libopus down-mixes to our mono decoder
        return to_mono(samples, self._src.channels)

    def _emit(self, samples: npt.NDArray[np.int16]) -> list[bytes]:
        """int16 mono samples at the source rate → resampled → encoded for ``dst``."""
        if self._encoder is not None:
            return self._encoder.encode(self._resampler.process(samples))
        if self._dst.encoding is Encoding.PCM16 and self._dst.channels == 1:
            out = self._to_bytes(samples)
            return [out] if out else []
        resampled = self._resampler.process(samples)
        return [self._encode(resampled)] if resampled.size else []

    def _encode(self, samples: npt.NDArray[np.int16]) -> bytes:
        """int16 mono samples at the destination rate → ``dst`` bytes (not Opus: that has its encoder)."""
        if self._dst.channels > 1:
            samples = np.repeat(samples, self._dst.channels)
        encoding = self._dst.encoding
        if encoding is Encoding.PCM16:
            return samples.tobytes()
        if encoding is Encoding.ULAW or encoding is Encoding.ALAW:
            return self._encode_table[samples.view(_UINT16)].tobytes()
        return pcm16_to_f32(samples).tobytes()


# ---------------------------------------------------------------------------------------------- fast paths


class _Passthrough(Transcoder):
    """``src == dst``, not Opus: a size check, and the input itself out."""

    __slots__ = ()

    def feed(self, data: bytes) -> list[bytes]:
        if len(data) % self._unit:
            validate_chunk(data, self._src)  # raises, explaining the rule
        return [data] if data else []


class _Pcm16Passthrough(Transcoder):
    """``src == dst``, pcm16 mono (the contract's default): the cheapest possible check."""

    __slots__ = ()

    def feed(self, data: bytes) -> list[bytes]:
        if len(data) & 1:
            validate_chunk(data, self._src)
        return [data] if data else []


class _PacketPassthrough(Transcoder):
    """Opus → Opus: one non-empty packet in, the same packet out (the receiver's decoder conceals)."""

    __slots__ = ()

    def feed(self, data: bytes) -> list[bytes]:
        validate_chunk(data, self._src)
        return [data]


class _Pcm16Resample(Transcoder):
    """pcm16 mono → pcm16 mono at another rate: bytes → soxr → bytes."""

    __slots__ = ()

    def feed(self, data: bytes) -> list[bytes]:
        if len(data) & 1:
            validate_chunk(data, self._src)
        out = self._process_bytes(data)
        return [out] if out else []


class _G711Decode(Transcoder):
    """μ-law/A-law mono → pcm16 mono, any rates: a table lookup (every byte count is whole samples)."""

    __slots__ = ()

    def feed(self, data: bytes) -> list[bytes]:
        out = self._to_bytes(self._decode_table[_frombuffer(data, _UINT8)])
        return [out] if out else []


class _G711Encode(Transcoder):
    """pcm16 mono → μ-law/A-law mono at the same rate: the table is indexed by the sample's bits."""

    __slots__ = ()

    def feed(self, data: bytes) -> list[bytes]:
        if len(data) & 1:
            validate_chunk(data, self._src)
        out = self._encode_table[_frombuffer(data, _UINT16)].tobytes()
        return [out] if out else []


class _G711EncodeResample(Transcoder):
    """pcm16 mono → μ-law/A-law mono at another rate: soxr, then the table."""

    __slots__ = ()

    def feed(self, data: bytes) -> list[bytes]:
        if len(data) & 1:
            validate_chunk(data, self._src)
        samples = self._resampler.process(_frombuffer(data, _INT16))
        out = self._encode_table[samples.view(_UINT16)].tobytes()
        return [out] if out else []


def _strategy(src: AudioFormat, dst: AudioFormat) -> type[Transcoder]:
    """The class whose ``feed`` does the least work for this pair of formats."""
    if src == dst:
        if src.encoding is Encoding.OPUS:
            return _PacketPassthrough
        return _Pcm16Passthrough if src.encoding is Encoding.PCM16 and src.channels == 1 else _Passthrough
    if src.channels != 1 or dst.channels != 1:
        return Transcoder
    if src.encoding is Encoding.PCM16 and dst.encoding is Encoding.PCM16:
        return _Pcm16Resample
    if src.encoding in _DECODE_TABLES and dst.encoding is Encoding.PCM16:
        return _G711Decode
    if src.encoding is Encoding.PCM16 and dst.encoding in _ENCODE_TABLES:
        return _G711Encode if src.sample_rate == dst.sample_rate else _G711EncodeResample
    return Transcoder
