"""Opus encode/decode for the relay: 48 kHz mono int16, 20 ms packets.

Encoder: PyAV's ``libopus`` encoder (the codec aiortc uses; libopus ships inside the ``av`` wheel).
:class:`OpusEncoder` re-frames arbitrarily sized chunks into exact 20 ms frames and keeps the remainder.

Decoder and packet-loss concealment (PLC) — the choice, and why:

* FFmpeg (hence PyAV) has no way to ask a decoder for concealment. Its ``libopus`` wrapper lacks
  ``AV_CODEC_CAP_DELAY``, so an empty/NULL packet never reaches ``opus_decode``. For both it and
  FFmpeg's native ``opus`` decoder an empty packet means "drain": PyAV returns no frame and the
  context then refuses every packet (``EOFError``) until ``flush_buffers``, which resets the state
  that PLC needs. ``Packet.is_corrupt`` does not help either (checked with PyAV 18.1 / FFmpeg 8).
* So the decoder calls libopus directly through ``ctypes`` (the very ``libopus`` the ``av`` wheel
  bundles: ``site-packages/av.libs`` on Linux, ``av/.dylibs`` on macOS; else the system's) and
  conceals with ``opus_decode(dec, NULL, 0, pcm, frame_size, 0)``: real libopus PLC, which
  extrapolates pitch and fades out by itself over successive losses. The functions used
  (``opus_decoder_create/decode/destroy``, ``opus_strerror``, ``opus_get_version_string``; not the
  variadic ``opus_decoder_ctl``) are libopus's stable ABI since 1.0. Decoding this way is also
  cheaper than PyAV (≈ 32 vs 37 µs per packet, reference/physical-limits.md §1), and libopus
  down-mixes stereo packets to our mono decoder itself.
* If no libopus can be loaded, :class:`OpusDecoder` falls back to PyAV's decoder and conceals by
  repeating the last decoded frame with a linear fade that reaches silence after
  ``_FALLBACK_FADE_FRAMES`` successive losses. ``OpusDecoder(backend=...)`` pins either path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import weakref
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Final, Literal

import av
import numpy as np
import numpy.typing as npt

from audiocodecs.errors import CorruptPacket, InvalidAudio

__all__ = [
    "FRAME_MS",
    "MAX_PACKET_SAMPLES",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "OpusDecoder",
    "OpusEncoder",
    "libopus_path",
]

SAMPLE_RATE: Final = 48000
FRAME_MS: Final = 20
SAMPLES_PER_FRAME: Final = SAMPLE_RATE * FRAME_MS // 1000  # 960
MAX_PACKET_SAMPLES: Final = SAMPLE_RATE * 120 // 1000  # an Opus packet holds at most 120 ms
APPLICATIONS: Final = ("voip", "audio", "lowdelay")
_TIME_BASE: Final = Fraction(1, SAMPLE_RATE)
_FALLBACK_FADE_FRAMES: Final = 5  # fallback PLC: silent after 5 successive lost frames (100 ms)

DecoderBackend = Literal["auto", "libopus", "pyav"]


# --------------------------------------------------------------------------------------------------- encoder


class OpusEncoder:
    """int16 mono 48 kHz in any chunk size → 20 ms Opus packets (``bytes``).

    ``encode`` returns the packets completed by this chunk (0..n) and keeps the remainder;
    ``flush`` pads the remainder with silence to one last full frame; ``reset`` drops it and the
    codec's history, so what follows encodes as from a new encoder.
    """

    __slots__ = ("_bitrate", "_context", "_fill", "_pending", "_pts", "_settings")

    def __init__(self, bitrate: int = 32000, complexity: int = 5, application: str = "voip") -> None:
        if not 6000 <= bitrate <= 510000:
            raise ValueError(f"opus bitrate must be within 6000..510000 bit/s; got {bitrate}")
        if not 0 <= complexity <= 10:
            raise ValueError(f"opus complexity must be within 0..10; got {complexity}")
        if application not in APPLICATIONS:
            raise ValueError(f"opus application must be one of {', '.join(APPLICATIONS)}; got {application!r}")
        self._settings = {
            "application": application,
            "frame_duration": str(FRAME_MS),
            "compression_level": str(complexity),
        }
        self._bitrate = bitrate
        self._context = self._new_context()
        self._pending = np.zeros(SAMPLES_PER_FRAME, dtype=np.int16)
        self._fill = 0
        self._pts = 0

    def _new_context(self) -> av.AudioCodecContext:
        context = av.CodecContext.create("libopus", "w")
        context.sample_rate = SAMPLE_RATE
        context.layout = "mono"
        context.format = "s16"
        context.bit_rate = self._bitrate
        context.time_base = _TIME_BASE
        context.options = dict(self._settings)
        context.open()
        return context

    @property
    def pending_samples(self) -> int:
        """Samples waiting for a full frame."""
        return self._fill

    def _encode_frame(self, samples: npt.NDArray[np.int16], packets: list[bytes]) -> None:
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, SAMPLES_PER_FRAME), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        self._pts += SAMPLES_PER_FRAME
        for packet in self._context.encode(frame):
            packets.append(bytes(packet))

    def encode(self, pcm: npt.NDArray[np.int16]) -> list[bytes]:
        """Add mono 48 kHz int16 samples; return the 20 ms packets they complete."""
        if pcm.dtype != np.int16:
            raise TypeError(f"OpusEncoder takes int16 samples; got {pcm.dtype}")
        packets: list[bytes] = []
        size = pcm.size
        if self._fill == 0 and size == SAMPLES_PER_FRAME:  # the common case: one frame in, one packet out
            self._encode_frame(pcm, packets)
            return packets
        samples = pcm.reshape(-1)
        position = 0
        if self._fill:
            take = min(SAMPLES_PER_FRAME - self._fill, size)
            self._pending[self._fill : self._fill + take] = samples[:take]
            self._fill += take
            position = take
            if self._fill < SAMPLES_PER_FRAME:
                return packets
            self._encode_frame(self._pending, packets)
            self._fill = 0
        while size - position >= SAMPLES_PER_FRAME:
            self._encode_frame(samples[position : position + SAMPLES_PER_FRAME], packets)
            position += SAMPLES_PER_FRAME
        rest = size - position
        if rest:
            self._pending[:rest] = samples[position:]
            self._fill = rest
        return packets

    def flush(self) -> list[bytes]:
        """End of turn: pad the remainder with silence to a full frame and encode it (0 or 1 packet).

        libopus looks 6.5 ms ahead, so the decoded packets trail the input by 312 samples. The padding
        usually covers that; if it is shorter than 6.5 ms, those last few ms come out with the next packet.
        """
        packets: list[bytes] = []
        if self._fill:
            self._pending[self._fill :] = 0
            self._encode_frame(self._pending, packets)
            self._fill = 0
        return packets

    def reset(self) -> None:
        """Drop the remainder and the codec's history (a new libopus encoder, ≈ 0.1 ms); timestamps go on."""
        self._fill = 0
        self._context = self._new_context()


# --------------------------------------------------------------------------------------------------- libopus


def _candidate_paths() -> list[str]:
    package = Path(av.__file__).resolve().parent
    patterns = [
        (package.parent / "av.libs", "libopus*.so*"),  # manylinux wheels (auditwheel)
        (package / ".dylibs", "libopus*.dylib"),  # macOS wheels (delocate)
        (package.parent / "av.libs", "*opus*.dll"),  # Windows wheels (delvewheel)
    ]
    found = [str(path) for folder, pattern in patterns if folder.is_dir() for path in sorted(folder.glob(pattern))]
    system = ctypes.util.find_library("opus")
    if system:
        found.append(system)
    return found


class _LibOpus:
    """The handful of libopus functions the decoder needs, bound with explicit C signatures."""

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path)
        lib.opus_get_version_string.restype = ctypes.c_char_p
        lib.opus_get_version_string.argtypes = []
        lib.opus_decoder_create.restype = ctypes.c_void_p
        lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        lib.opus_decoder_destroy.restype = None
        lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
        lib.opus_decode.restype = ctypes.c_int
        lib.opus_decode.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int32,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.opus_strerror.restype = ctypes.c_char_p
        lib.opus_strerror.argtypes = [ctypes.c_int]
        version = lib.opus_get_version_string().decode("ascii", "replace")
        if not version.startswith("libopus 1."):
            raise OSError(f"unexpected libopus version {version!r} at {path}")
        self.path = path
        self.version = version
        self.decoder_create = lib.opus_decoder_create
        self.decoder_destroy = lib.opus_decoder_destroy
        self.decode = lib.opus_decode
        self.strerror = lib.opus_strerror


def _load_libopus(paths: Sequence[str]) -> _LibOpus | None:
    for path in paths:
        try:
            return _LibOpus(path)
        except (OSError, AttributeError):
            continue
    return None


_LIBOPUS: Final = _load_libopus(_candidate_paths())


def libopus_path() -> str | None:
    """Where the ctypes decoder's libopus was loaded from (``None``: the PyAV fallback is in use)."""
    return None if _LIBOPUS is None else _LIBOPUS.path


# --------------------------------------------------------------------------------------------------- decoder


class OpusDecoder:
    """Opus packets → int16 mono 48 kHz samples, with packet-loss concealment.

    ``decode`` raises :class:`CorruptPacket` for an undecodable packet (and :class:`InvalidAudio` for an
    empty one) and stays usable. ``conceal`` stands in for one lost packet, as long as the last good one.
    """

    __slots__ = (
        "__weakref__",
        "_backend",
        "_buffer",
        "_context",
        "_finalizer",
        "_handle",
        "_last",
        "_losses",
        "_lost_samples",
        "_pointer",
    )

    def __init__(self, *, backend: DecoderBackend = "auto") -> None:
        if backend not in ("auto", "libopus", "pyav"):
            raise ValueError(f"backend must be 'auto', 'libopus' or 'pyav'; got {backend!r}")
        if backend == "libopus" and _LIBOPUS is None:
            raise RuntimeError("libopus could not be loaded (looked in the av wheel and the system)")
        self._lost_samples = SAMPLES_PER_FRAME
        self._losses = 0
        self._last = np.zeros(SAMPLES_PER_FRAME, dtype=np.int16)
        self._buffer = np.zeros(MAX_PACKET_SAMPLES, dtype=np.int16)
        self._pointer: int = self._buffer.ctypes.data  # the buffer lives as long as the decoder
        self._handle: int | None = None
        self._context: av.AudioCodecContext | None = None
        self._finalizer: weakref.finalize[[int], OpusDecoder] | None = None
        if backend != "pyav" and _LIBOPUS is not None:
            self._open_libopus()
            self._backend: str = "libopus"
        else:
            self._context = self._new_context()
            self._backend = "pyav"

    def _open_libopus(self) -> None:
        assert _LIBOPUS is not None
        if self._finalizer is not None:
            self._finalizer()  # destroys the previous decoder state
        error = ctypes.c_int(0)
        handle = _LIBOPUS.decoder_create(SAMPLE_RATE, 1, ctypes.byref(error))
        if not handle or error.value != 0:
            raise RuntimeError(f"opus_decoder_create failed: {_LIBOPUS.strerror(error.value)!r}")
        self._handle = handle
        self._finalizer = weakref.finalize(self, _LIBOPUS.decoder_destroy, handle)

    @staticmethod
    def _new_context() -> av.AudioCodecContext:
        context = av.CodecContext.create("libopus", "r")
        context.sample_rate = SAMPLE_RATE
        context.layout = "mono"
        context.format = "s16"
        context.open()
        return context

    @property
    def backend(self) -> str:
        """``"libopus"`` (ctypes, real PLC) or ``"pyav"`` (fallback, fade-out concealment)."""
        return self._backend

    def decode(self, packet: bytes) -> npt.NDArray[np.int16]:
        """Decode one packet into a new int16 array (stereo packets are down-mixed)."""
        if not packet:
            raise InvalidAudio("an opus packet must not be empty")
        if type(packet) is not bytes:
            packet = bytes(packet)
        if self._handle is not None:
            assert _LIBOPUS is not None
            n = _LIBOPUS.decode(self._handle, packet, len(packet), self._pointer, MAX_PACKET_SAMPLES, 0)
            if n < 0:
                reason = _LIBOPUS.strerror(n).decode("ascii", "replace")
                raise CorruptPacket(f"undecodable opus packet ({len(packet)} bytes): {reason}")
            samples = self._buffer[:n].copy()
        else:
            samples = self._decode_pyav(packet)
            if samples.size:
                self._last = samples  # what the fallback concealment repeats
        self._losses = 0
        if samples.size:
            self._lost_samples = samples.size
        return samples

    def _decode_pyav(self, packet: bytes) -> npt.NDArray[np.int16]:
        assert self._context is not None
        try:
            frames = self._context.decode(av.Packet(packet))
        except av.error.FFmpegError as exc:
            raise CorruptPacket(f"undecodable opus packet ({len(packet)} bytes): {exc.strerror}") from None
        if len(frames) == 1:
            return np.ascontiguousarray(frames[0].to_ndarray().reshape(-1), dtype=np.int16)
        parts = [frame.to_ndarray().reshape(-1) for frame in frames]
        return np.concatenate(parts).astype(np.int16, copy=False) if parts else np.empty(0, dtype=np.int16)

    def conceal(self) -> npt.NDArray[np.int16]:
        """Samples standing in for ONE lost packet (as long as the last decoded one, 960 for 20 ms)."""
        self._losses += 1
        if self._handle is not None:
            assert _LIBOPUS is not None
            n = _LIBOPUS.decode(self._handle, None, 0, self._pointer, self._lost_samples, 0)
            if n < 0:  # cannot happen for a valid frame size; answer silence rather than fail the session
                return np.zeros(self._lost_samples, dtype=np.int16)
            return self._buffer[:n].copy()
        # fallback: the last frame again, under a linear fade from the previous loss's gain to this one's
        start = max(0.0, 1.0 - (self._losses - 1) / _FALLBACK_FADE_FRAMES)
        stop = max(0.0, 1.0 - self._losses / _FALLBACK_FADE_FRAMES)
        if start == 0.0:
            return np.zeros(self._last.size, dtype=np.int16)
        gain = np.linspace(start, stop, self._last.size, endpoint=False, dtype=np.float32)
        faded: npt.NDArray[np.int16] = np.rint(self._last * gain).astype(np.int16)
        return faded

    def reset(self) -> None:
        """Forget the stream (after a gap): the next packet decodes as if it were the first."""
        self._losses = 0
        self._lost_samples = SAMPLES_PER_FRAME
        self._last = np.zeros(SAMPLES_PER_FRAME, dtype=np.int16)
        if self._handle is not None:
            self._open_libopus()  # a fresh decoder: cheaper to reason about than the variadic opus_decoder_ctl
        else:
            self._context = self._new_context()
