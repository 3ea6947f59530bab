"""Audio files: read speech recordings into any wire format, write WAVs. Not for the hot path.

Reading goes through soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, Opus-in-OGG, MP3 with libsndfile
>= 1.1), down-mixes to mono and resamples with one-shot soxr VHQ, which is right for whole files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from audiocodecs.errors import InvalidAudio, UnsupportedFormat
from audiocodecs.format import AudioFormat, Encoding
from audiocodecs.g711 import alaw_encode, ulaw_encode
from audiocodecs.opus import SAMPLE_RATE as OPUS_RATE
from audiocodecs.opus import OpusEncoder
from audiocodecs.pcm import as_int16, f32_to_pcm16, pcm16_to_f32

__all__ = ["read_audio", "read_opus_packets", "read_pcm16", "write_wav"]


def read_pcm16(path: str | Path, sample_rate: int) -> npt.NDArray[np.int16]:
    """Read an audio file as int16 mono at ``sample_rate`` (down-mixed, resampled with soxr VHQ)."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive; got {sample_rate}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no audio file at {path}")
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        raise InvalidAudio(f"cannot read {path.name} as audio: {exc.error_string}") from None
    frames: npt.NDArray[np.float32] = data
    mono = frames[:, 0] if frames.shape[1] == 1 else frames.mean(axis=1, dtype=np.float32)
    if file_rate != sample_rate and mono.size:
        mono = soxr.resample(mono, file_rate, sample_rate, quality="VHQ")
    return f32_to_pcm16(mono)


def read_audio(path: str | Path, fmt: AudioFormat) -> bytes:
    """Read an audio file into ``fmt`` bytes (pcm16, f32, ulaw or alaw; stereo duplicates the mono mix)."""
    if fmt.encoding is Encoding.OPUS:
        raise UnsupportedFormat("opus is packetized: use read_opus_packets(path) to get a list of 20 ms packets")
    samples = read_pcm16(path, fmt.sample_rate)
    if fmt.channels > 1:
        samples = np.repeat(samples, fmt.channels)
    if fmt.encoding is Encoding.PCM16:
        return samples.tobytes()
    if fmt.encoding is Encoding.F32:
        return pcm16_to_f32(samples).tobytes()
    if fmt.encoding is Encoding.ULAW:
        return ulaw_encode(samples)
    return alaw_encode(samples)


def read_opus_packets(path: str | Path, bitrate: int = 32000) -> list[bytes]:
    """Read an audio file and encode it as 20 ms mono Opus packets (the last one padded with silence)."""
    encoder = OpusEncoder(bitrate=bitrate)
    packets = encoder.encode(read_pcm16(path, OPUS_RATE))
    packets.extend(encoder.flush())
    return packets


def write_wav(path: str | Path, pcm: bytes | npt.NDArray[np.generic], sample_rate: int, channels: int = 1) -> None:
    """Write 16-bit PCM WAV. ``pcm``: pcm16 bytes, int16 samples, or float samples (full scale ±1.0)."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive; got {sample_rate}")
    if channels < 1:
        raise ValueError(f"channels must be >= 1; got {channels}")
    samples: npt.NDArray[np.int16]
    if isinstance(pcm, bytes | bytearray | memoryview):
        samples = as_int16(bytes(pcm))
    elif pcm.dtype == np.int16:
        samples = pcm.astype(np.int16, copy=False)
    elif np.issubdtype(pcm.dtype, np.floating):
        samples = f32_to_pcm16(pcm.astype(np.float32, copy=False))
    else:
        raise TypeError(f"write_wav takes pcm16 bytes, int16 or float samples; got {pcm.dtype}")
    if samples.size % channels:
        raise InvalidAudio(f"{channels}-channel audio must hold whole frames; got {samples.size} samples")
    sf.write(str(path), samples.reshape(-1, channels), sample_rate, subtype="PCM_16", format="WAV")
