"""The audio error tree.

Every error is a ``ValueError`` so that callers which only care about "bad input" can catch that;
the relay maps :class:`UnsupportedFormat` and :class:`InvalidAudio` to protocol error codes.
Messages describe the problem in audio terms (sizes, rates, encodings) and never echo payload bytes.
"""

from __future__ import annotations

__all__ = ["AudioError", "CorruptPacket", "InvalidAudio", "UnsupportedFormat"]


class AudioError(ValueError):
    """Base class of every error raised by :mod:`audiocodecs`."""


class UnsupportedFormat(AudioError):
    """An audio format spec names an encoding, rate or channel count this package does not handle."""


class InvalidAudio(AudioError):
    """A chunk of audio does not fit its declared format (odd byte count for pcm16, empty Opus packet, …)."""


class CorruptPacket(InvalidAudio):
    """An Opus packet could not be decoded."""
