from __future__ import annotations

import numpy as np
import pytest

from audiocodecs import (
    OPUS_48K,
    PCM16_16K,
    ULAW_8K,
    AudioFormat,
    Encoding,
    InvalidAudio,
    as_int16,
    f32_to_pcm16,
    pcm16_to_f32,
    to_mono,
    validate_chunk,
)

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)


def test_pcm16_to_f32_known_values() -> None:
    values = pcm16_to_f32(np.array([0, 16384, -16384, -32768, 32767], dtype=np.int16))
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values[:4], [0.0, 0.5, -0.5, -1.0])
    assert values[4] == np.float32(32767 / 32768)


def test_pcm16_to_f32_accepts_bytes() -> None:
    np.testing.assert_array_equal(pcm16_to_f32(ALL_SAMPLES.tobytes()), pcm16_to_f32(ALL_SAMPLES))


def test_pcm16_f32_round_trip_is_exact_for_every_int16() -> None:
    np.testing.assert_array_equal(f32_to_pcm16(pcm16_to_f32(ALL_SAMPLES)), ALL_SAMPLES)


def test_f32_to_pcm16_clips_rounds_and_zeroes_nan() -> None:
    floats = np.array([1.0, 2.0, -1.0, -3.0, 0.25, 1.4 / 32768, 1.6 / 32768, np.nan, np.inf, -np.inf])
    np.testing.assert_array_equal(
        f32_to_pcm16(floats.astype(np.float32)), [32767, 32767, -32768, -32768, 8192, 1, 2, 0, 32767, -32768]
    )
    assert f32_to_pcm16(np.zeros(3, dtype=np.float64)).dtype == np.int16


def test_to_mono_identity_for_mono_without_copy() -> None:
    mono = np.arange(10, dtype=np.int16)
    assert to_mono(mono, 1) is mono


def test_to_mono_averages_interleaved_channels() -> None:
    stereo = np.array([100, 200, -5, 6, 32767, 32767, -32768, -32768, 1, 2], dtype=np.int16)
    np.testing.assert_array_equal(to_mono(stereo, 2), [150, 0, 32767, -32768, 2])  # 0.5 and 1.5 round to even
    assert to_mono(stereo, 2).dtype == np.int16
    floats = np.array([0.5, -0.5, 1.0, 0.0], dtype=np.float32)
    result = to_mono(floats, 2)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, [0.0, 0.5])


def test_to_mono_rejects_partial_frames() -> None:
    with pytest.raises(InvalidAudio):
        to_mono(np.zeros(5, dtype=np.int16), 2)


def test_as_int16_is_a_zero_copy_view() -> None:
    data = ALL_SAMPLES[:100].tobytes()
    view = as_int16(data)
    np.testing.assert_array_equal(view, ALL_SAMPLES[:100])
    assert not view.flags.writeable  # a view of the immutable bytes, not a copy
    assert view.base is not None
    with pytest.raises(InvalidAudio):
        as_int16(b"\x00\x01\x02")


@pytest.mark.parametrize(
    ("fmt", "size", "ok"),
    [
        (PCM16_16K, 640, True),
        (PCM16_16K, 0, True),
        (PCM16_16K, 3, False),
        (AudioFormat(Encoding.PCM16, 16000, 2), 6, False),
        (AudioFormat(Encoding.PCM16, 16000, 2), 8, True),
        (AudioFormat(Encoding.F32, 24000), 8, True),
        (AudioFormat(Encoding.F32, 24000), 6, False),
        (AudioFormat(Encoding.F32, 24000, 2), 12, False),
        (ULAW_8K, 161, True),
        (AudioFormat(Encoding.ALAW, 8000, 2), 161, False),
        (OPUS_48K, 1, True),
        (OPUS_48K, 0, False),
    ],
)
def test_validate_chunk(fmt: AudioFormat, size: int, ok: bool) -> None:
    if ok:
        validate_chunk(bytes(size), fmt)
    else:
        with pytest.raises(InvalidAudio):
            validate_chunk(bytes(size), fmt)


def test_validate_chunk_message_explains_the_rule() -> None:
    with pytest.raises(InvalidAudio, match="pcm16 audio must be a whole number of 2-byte samples; got 3 bytes"):
        validate_chunk(b"abc", PCM16_16K)
    with pytest.raises(InvalidAudio, match="4-byte samples x 2 channels; got 12 bytes"):
        validate_chunk(bytes(12), AudioFormat(Encoding.F32, 16000, 2))
