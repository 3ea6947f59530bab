"""G.711 μ-law and A-law, table-driven.

The tables follow the Sun Microsystems reference ``g711.c`` (the code CPython's ``audioop`` carries), so
the results are bit-exact with ITU-T G.711 as ``audioop.lin2ulaw``/``lin2alaw``/``ulaw2lin``/``alaw2lin``
compute it for 16-bit samples (the encoders look at the top 14 resp. 13 bits). They are built once at
import, vectorized with numpy:

* encode: 65,536 codes indexed by the int16 sample's bit pattern (viewed as uint16);
* decode: 256 int16 values indexed by the code byte.

Each conversion of a 20 ms frame is then one fancy-index (≈ 1.5 to 3 µs); see reference/physical-limits.md §3.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALAW_DECODE_TABLE",
    "ALAW_ENCODE_TABLE",
    "ULAW_DECODE_TABLE",
    "ULAW_ENCODE_TABLE",
    "alaw_decode",
    "alaw_encode",
    "ulaw_decode",
    "ulaw_encode",
]

_BIAS: Final = 0x84  # μ-law bias (132), applied to the 14-bit magnitude as BIAS >> 2 = 33
_ULAW_CLIP: Final = 8159  # largest 14-bit magnitude μ-law represents
_ULAW_SEG_END: Final = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_ALAW_SEG_END: Final = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


def _all_int16() -> npt.NDArray[np.int32]:
    """Every int16 value, ordered by its uint16 bit pattern (so index i holds the sample whose bits are i)."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    pcm = _all_int16() >> 2  # 14-bit
    negative = pcm < 0
    mask = np.where(negative, 0x7F, 0xFF)
    magnitude = np.minimum(np.where(negative, -pcm, pcm), _ULAW_CLIP) + (_BIAS >> 2)
    seg = np.searchsorted(_ULAW_SEG_END, magnitude, side="left")  # first segment whose end >= magnitude
    uval = (seg << 4) | ((magnitude >> (seg + 1)) & 0xF)
    uval = np.where(seg >= 8, 0x7F, uval)
    return (uval ^ mask).astype(np.uint8)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    pcm = _all_int16() >> 3  # 13-bit
    negative = pcm < 0
    mask = np.where(negative, 0x55, 0xD5)
    magnitude = np.where(negative, -pcm - 1, pcm)
    seg = np.searchsorted(_ALAW_SEG_END, magnitude, side="left")
    shift = np.where(seg < 2, 1, seg)
    aval = (seg << 4) | ((magnitude >> shift) & 0xF)
    aval = np.where(seg >= 8, 0x7F, aval)
    return (aval ^ mask).astype(np.uint8)


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _BIAS - t, t - _BIAS).astype(np.int16)


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


ULAW_ENCODE_TABLE: Final[npt.NDArray[np.uint8]] = _build_ulaw_encode()
ALAW_ENCODE_TABLE: Final[npt.NDArray[np.uint8]] = _build_alaw_encode()
ULAW_DECODE_TABLE: Final[npt.NDArray[np.int16]] = _build_ulaw_decode()
ALAW_DECODE_TABLE: Final[npt.NDArray[np.int16]] = _build_alaw_decode()
for _table in (ULAW_ENCODE_TABLE, ALAW_ENCODE_TABLE, ULAW_DECODE_TABLE, ALAW_DECODE_TABLE):
    _table.flags.writeable = False
del _table


def ulaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """int16 samples → μ-law bytes (one byte per sample)."""
    if pcm.dtype != np.int16:
        raise TypeError(f"ulaw_encode takes int16 samples; got {pcm.dtype}")
    return ULAW_ENCODE_TABLE[pcm.view(np.uint16)].tobytes()


def alaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """int16 samples → A-law bytes (one byte per sample)."""
    if pcm.dtype != np.int16:
        raise TypeError(f"alaw_encode takes int16 samples; got {pcm.dtype}")
    return ALAW_ENCODE_TABLE[pcm.view(np.uint16)].tobytes()


def ulaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    """μ-law bytes → int16 samples (a new array)."""
    return ULAW_DECODE_TABLE[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    """A-law bytes → int16 samples (a new array)."""
    return ALAW_DECODE_TABLE[np.frombuffer(data, dtype=np.uint8)]
