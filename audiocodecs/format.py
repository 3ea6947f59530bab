"""Audio formats: what a stream of audio bytes means (encoding, sample rate, channels).

The contract's form is the dict ``{"encoding": "pcm16", "sample_rate": 16000, "channels": 1}``
(protocol v1 §4). :class:`AudioFormat` is its typed, validated counterpart; it also does the
bytes ↔ milliseconds arithmetic the session needs to measure queued audio in ms.

PCM is little-endian and interleaved. ``opus`` is packetized (one packet per frame, 48 kHz clock),
so it has no fixed bytes-per-ms: its durations come from decoding.
"""

from __future__ import annotations

import enum
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

from audiocodecs.errors import UnsupportedFormat

__all__ = [
    "OPUS_48K",
    "PCM16_16K",
    "PCM16_24K",
    "PCM16_48K",
    "SUPPORTED_CHANNELS",
    "SUPPORTED_RATES",
    "ULAW_8K",
    "AudioFormat",
    "Encoding",
]


class Encoding(enum.StrEnum):
    PCM16 = "pcm16"
    F32 = "f32"
    ULAW = "ulaw"
    ALAW = "alaw"
    OPUS = "opus"


SUPPORTED_RATES: tuple[int, ...] = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
SUPPORTED_CHANNELS: tuple[int, ...] = (1, 2)
OPUS_RATE = 48000

_WIDTH: dict[Encoding, int] = {Encoding.PCM16: 2, Encoding.F32: 4, Encoding.ULAW: 1, Encoding.ALAW: 1}
_ENCODING_NAMES = ", ".join(f'"{e.value}"' for e in Encoding)
_RATE_NAMES = ", ".join(str(r) for r in SUPPORTED_RATES)


def _show(value: object) -> str:
    """A short, safe rendering of a client-supplied value for an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _parse_encoding(value: object) -> Encoding:
    if isinstance(value, Encoding):
        return value
    if isinstance(value, str):
        try:
            return Encoding(value)
        except ValueError:
            pass
    raise UnsupportedFormat(f'audio format: "encoding" must be one of {_ENCODING_NAMES}; got {_show(value)}')


def _parse_int(field: str, value: object, allowed: tuple[int, ...]) -> int:
    allowed_text = _RATE_NAMES if allowed is SUPPORTED_RATES else ", ".join(str(v) for v in allowed)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UnsupportedFormat(
            f'audio format: "{field}" must be an integer, one of {allowed_text}; got {type(value).__name__} '
            f"{_show(value)}"
        )
    number = int(value)
    if number not in allowed:
        raise UnsupportedFormat(f'audio format: "{field}" must be one of {allowed_text}; got {number}')
    return number


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """A validated audio format. Construction raises :class:`UnsupportedFormat` for anything unsupported.

    ``channels`` may be 2 for decoding stereo sources (files, WebRTC); the codecs down-mix to mono.
    A plain ``str`` encoding is accepted and normalized to :class:`Encoding`.
    """

    encoding: Encoding
    sample_rate: int
    channels: int = 1

    def __post_init__(self) -> None:
        encoding = _parse_encoding(self.encoding)
        if encoding is not self.encoding:
            object.__setattr__(self, "encoding", encoding)
        rate = _parse_int("sample_rate", self.sample_rate, SUPPORTED_RATES)
        if rate is not self.sample_rate:
            object.__setattr__(self, "sample_rate", rate)
        channels = _parse_int("channels", self.channels, SUPPORTED_CHANNELS)
        if channels is not self.channels:
            object.__setattr__(self, "channels", channels)
        if encoding is Encoding.OPUS and rate != OPUS_RATE:
            raise UnsupportedFormat(
                f'audio format: "sample_rate" must be {OPUS_RATE} for "opus" (Opus runs on a 48 kHz clock); got {rate}'
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, object] | None, default: AudioFormat) -> AudioFormat:
        """Parse the contract's dict form. Missing (or null) keys take ``default``'s values.

        One exception to plain defaulting: ``{"encoding": "opus"}`` without a rate means 48000, the
        only rate Opus has on the wire. Unknown keys are ignored (the contract may add optional fields).
        """
        if d is None:
            return default
        if not isinstance(d, Mapping):
            raise UnsupportedFormat(
                'audio format must be an object like {"encoding": "pcm16", "sample_rate": 16000, "channels": 1}; '
                f"got {type(d).__name__}"
            )
        raw_encoding = d.get("encoding")
        encoding = default.encoding if raw_encoding is None else _parse_encoding(raw_encoding)
        raw_rate = d.get("sample_rate")
        if raw_rate is None:
            rate = OPUS_RATE if encoding is Encoding.OPUS else default.sample_rate
        else:
            rate = _parse_int("sample_rate", raw_rate, SUPPORTED_RATES)
        raw_channels = d.get("channels")
        channels = (
            default.channels if raw_channels is None else _parse_int("channels", raw_channels, SUPPORTED_CHANNELS)
        )
        if encoding is default.encoding and rate == default.sample_rate and channels == default.channels:
            return default
        return cls(encoding, rate, channels)

    def to_dict(self) -> dict[str, object]:
        return {"encoding": self.encoding.value, "sample_rate": self.sample_rate, "channels": self.channels}

    def __str__(self) -> str:
        layout = "mono" if self.channels == 1 else f"{self.channels}ch"
        return f"{self.encoding.value}/{self.sample_rate}Hz/{layout}"

    @property
    def is_pcm(self) -> bool:
        """Linear PCM (pcm16 or f32), as opposed to companded (G.711) or packetized (Opus)."""
        return self.encoding is Encoding.PCM16 or self.encoding is Encoding.F32

    @property
    def bytes_per_sample(self) -> int:
        """Bytes of one sample of one channel. Opus has none: it is packetized."""
        try:
            return _WIDTH[self.encoding]
        except KeyError:
            raise UnsupportedFormat(
                "opus is packetized: it has no fixed bytes per sample; decode a packet to learn its duration"
            ) from None

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample across all channels (``bytes_per_sample * channels``)."""
        return self.bytes_per_sample * self.channels

    @property
    def bytes_per_ms(self) -> float:
        return self.sample_rate * self.frame_bytes / 1000

    def bytes_for_ms(self, ms: float) -> int:
        """Bytes of the whole samples that fit in ``ms`` milliseconds (floor), all channels."""
        if ms < 0:
            raise ValueError(f"duration must be >= 0 ms; got {ms}")
        samples = math.floor(ms * self.sample_rate / 1000 + 1e-9)
        return samples * self.frame_bytes

    def duration_ms(self, nbytes: int) -> float:
        """Milliseconds of audio in ``nbytes`` bytes of this format."""
        return nbytes * 1000 / (self.sample_rate * self.frame_bytes)


PCM16_16K = AudioFormat(Encoding.PCM16, 16000)
PCM16_24K = AudioFormat(Encoding.PCM16, 24000)
PCM16_48K = AudioFormat(Encoding.PCM16, 48000)
ULAW_8K = AudioFormat(Encoding.ULAW, 8000)
OPUS_48K = AudioFormat(Encoding.OPUS, OPUS_RATE)
