"""Speech fixtures for the audiocodecs tests (the recordings in tests/audio, read once per session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from audiocodecs import read_pcm16

Int16 = npt.NDArray[np.int16]


def read_wav(path: Path) -> tuple[Int16, int]:
    data, rate = sf.read(str(path), dtype="int16")
    assert data.ndim == 1, f"{path.name} should be mono"
    return data, int(rate)


@pytest.fixture(scope="session")
def speech_16k(audio_dir: Path) -> Int16:
    samples, rate = read_wav(audio_dir / "hello-book-table-en-16k.wav")
    assert rate == 16000
    return samples


@pytest.fixture(scope="session")
def speech_24k(audio_dir: Path) -> Int16:
    samples, rate = read_wav(audio_dir / "conversation-3-turns-24k.wav")
    assert rate == 24000
    return samples


@pytest.fixture(scope="session")
def speech_48k(audio_dir: Path) -> Int16:
    return read_pcm16(audio_dir / "hello-book-table-en-16k.wav", 48000)


def chunks_of(data: bytes, sizes: list[int]) -> list[bytes]:
    """Split ``data`` at the given chunk sizes (cycled), the last chunk taking what is left."""
    out: list[bytes] = []
    position = 0
    index = 0
    while position < len(data):
        size = sizes[index % len(sizes)] if sizes else len(data)
        out.append(data[position : position + size])
        position += size
        index += 1
    return out
