"""audiocodecs: streaming audio conversion for the relay (PCM, G.711, resampling, Opus, files).

The session's entry point is :class:`Transcoder`; the rest is its parts, usable alone.
See docs/audiocodecs.md.
"""

from audiocodecs.errors import AudioError, CorruptPacket, InvalidAudio, UnsupportedFormat
from audiocodecs.files import read_audio, read_opus_packets, read_pcm16, write_wav
from audiocodecs.format import (
    OPUS_48K,
    PCM16_16K,
    PCM16_24K,
    PCM16_48K,
    SUPPORTED_RATES,
    ULAW_8K,
    AudioFormat,
    Encoding,
)
from audiocodecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from audiocodecs.opus import FRAME_MS, SAMPLE_RATE, SAMPLES_PER_FRAME, OpusDecoder, OpusEncoder
from audiocodecs.pcm import as_int16, f32_to_pcm16, pcm16_to_f32, to_mono, validate_chunk
from audiocodecs.resample import StreamingResampler
from audiocodecs.transcode import Transcoder

__all__ = [
    "FRAME_MS",
    "OPUS_48K",
    "PCM16_16K",
    "PCM16_24K",
    "PCM16_48K",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "SUPPORTED_RATES",
    "ULAW_8K",
    "AudioError",
    "AudioFormat",
    "CorruptPacket",
    "Encoding",
    "InvalidAudio",
    "OpusDecoder",
    "OpusEncoder",
    "StreamingResampler",
    "Transcoder",
    "UnsupportedFormat",
    "alaw_decode",
    "alaw_encode",
    "as_int16",
    "f32_to_pcm16",
    "pcm16_to_f32",
    "read_audio",
    "read_opus_packets",
    "read_pcm16",
    "to_mono",
    "ulaw_decode",
    "ulaw_encode",
    "validate_chunk",
    "write_wav",
]
