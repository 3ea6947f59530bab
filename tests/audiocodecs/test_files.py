from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiocodecs import (
    OPUS_48K,
    PCM16_16K,
    SAMPLES_PER_FRAME,
    ULAW_8K,
    AudioFormat,
    Encoding,
    InvalidAudio,
    OpusDecoder,
    UnsupportedFormat,
    alaw_decode,
    read_audio,
    read_opus_packets,
    read_pcm16,
    ulaw_decode,
    write_wav,
)

from .conftest import read_wav

HELLO = "hello-book-table-en-16k.wav"


def _snr(reference: np.ndarray, test: np.ndarray) -> float:
    ref = reference.astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - test) ** 2)))


def test_read_pcm16_at_the_file_rate_is_exact(audio_dir: Path) -> None:
    original, _ = read_wav(audio_dir / HELLO)
    np.testing.assert_array_equal(read_pcm16(audio_dir / HELLO, 16000), original)
    assert read_audio(audio_dir / HELLO, PCM16_16K) == original.tobytes()


def test_read_audio_into_ulaw_8k(audio_dir: Path) -> None:
    original, _ = read_wav(audio_dir / HELLO)
    ulaw = read_audio(audio_dir / HELLO, ULAW_8K)
    assert len(ulaw) == original.size // 2  # one byte per sample at half the rate
    reference = read_pcm16(audio_dir / HELLO, 8000)
    decoded = ulaw_decode(ulaw)
    snr = _snr(reference, decoded)
    assert snr > 30, f"μ-law of the 8 kHz speech: SNR {snr:.1f} dB"
    # and it is the same speech: the 8 kHz version matches the original's 0-3.4 kHz band
    spectrum = np.fft.rfft(original.astype(np.float64))
    spectrum[np.fft.rfftfreq(original.size, 1 / 16000) > 3400] = 0
    band = np.fft.irfft(spectrum, original.size)[::2]
    correlation = np.corrcoef(band[: decoded.size], decoded)[0, 1]
    assert correlation > 0.95, f"correlation with the original {correlation:.3f}"


def test_read_audio_other_encodings(audio_dir: Path) -> None:
    pcm = read_pcm16(audio_dir / HELLO, 24000)
    assert pcm.size == 125331  # 83554 samples at 16 kHz -> 1.5x
    f32 = np.frombuffer(read_audio(audio_dir / HELLO, AudioFormat(Encoding.F32, 24000)), dtype=np.float32)
    np.testing.assert_array_equal(f32, pcm / np.float32(32768))
    alaw = read_audio(audio_dir / HELLO, AudioFormat(Encoding.ALAW, 8000))
    assert _snr(read_pcm16(audio_dir / HELLO, 8000), alaw_decode(alaw)) > 30
    stereo = np.frombuffer(read_audio(audio_dir / HELLO, AudioFormat(Encoding.PCM16, 16000, 2)), dtype=np.int16)
    np.testing.assert_array_equal(stereo[0::2], stereo[1::2])


def test_read_audio_refuses_opus(audio_dir: Path) -> None:
    with pytest.raises(UnsupportedFormat, match="read_opus_packets"):
        read_audio(audio_dir / HELLO, OPUS_48K)


def test_read_opus_packets(audio_dir: Path) -> None:
    packets = read_opus_packets(audio_dir / HELLO)
    samples_48k = 83554 * 3
    assert len(packets) == -(-samples_48k // SAMPLES_PER_FRAME)
    decoder = OpusDecoder()
    assert all(decoder.decode(p).size == SAMPLES_PER_FRAME for p in packets)


def test_write_wav_round_trip(tmp_path: Path, speech_16k: np.ndarray) -> None:
    path = tmp_path / "out.wav"
    write_wav(path, speech_16k.tobytes(), 16000)
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
    back, _ = read_wav(path)
    np.testing.assert_array_equal(back, speech_16k)

    write_wav(path, speech_16k, 24000)
    np.testing.assert_array_equal(read_pcm16(path, 24000), speech_16k)

    write_wav(path, speech_16k.astype(np.float32) / 32768, 16000)
    np.testing.assert_array_equal(read_wav(path)[0], speech_16k)


def test_write_wav_stereo_and_read_down_mixed(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    left = np.array([1000, 2000, -3000, 0], dtype=np.int16)
    right = np.array([3000, 0, -1000, 1], dtype=np.int16)
    write_wav(path, np.stack([left, right], axis=1).reshape(-1), 16000, channels=2)
    assert sf.info(str(path)).channels == 2
    np.testing.assert_array_equal(read_pcm16(path, 16000), [2000, 1000, -2000, 0])  # 0.5 rounds to even
    with pytest.raises(InvalidAudio):
        write_wav(path, np.zeros(3, dtype=np.int16), 16000, channels=2)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_pcm16(tmp_path / "missing.wav", 16000)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(InvalidAudio, match=r"cannot read junk\.wav"):
        read_pcm16(junk, 16000)
    with pytest.raises(TypeError):
        write_wav(tmp_path / "x.wav", np.zeros(4, dtype=np.int32), 16000)
