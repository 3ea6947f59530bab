from __future__ import annotations

import pytest

from audiocodecs import (
    OPUS_48K,
    PCM16_16K,
    PCM16_24K,
    SUPPORTED_RATES,
    ULAW_8K,
    AudioFormat,
    Encoding,
    UnsupportedFormat,
)


def test_from_dict_full() -> None:
    fmt = AudioFormat.from_dict({"encoding": "ulaw", "sample_rate": 8000, "channels": 1}, PCM16_16K)
    assert fmt == ULAW_8K
    assert fmt.encoding is Encoding.ULAW


def test_from_dict_none_and_empty_take_the_default() -> None:
    assert AudioFormat.from_dict(None, PCM16_24K) is PCM16_24K
    assert AudioFormat.from_dict({}, PCM16_24K) == PCM16_24K


def test_from_dict_missing_keys_take_the_defaults_values() -> None:
    assert AudioFormat.from_dict({"sample_rate": 48000}, PCM16_16K) == AudioFormat(Encoding.PCM16, 48000)
    assert AudioFormat.from_dict({"encoding": "f32"}, PCM16_24K) == AudioFormat(Encoding.F32, 24000)
    assert AudioFormat.from_dict({"channels": 2}, PCM16_16K) == AudioFormat(Encoding.PCM16, 16000, 2)
    assert AudioFormat.from_dict({"encoding": "pcm16", "sample_rate": None}, PCM16_24K) == PCM16_24K


def test_from_dict_opus_without_rate_means_48k() -> None:
    assert AudioFormat.from_dict({"encoding": "opus"}, PCM16_16K) == OPUS_48K


def test_from_dict_ignores_unknown_keys() -> None:
    assert AudioFormat.from_dict({"encoding": "pcm16", "sample_rate": 16000, "x-future": 1}, PCM16_24K) == PCM16_16K


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"encoding": "mp3"}, "encoding"),
        ({"encoding": "PCM16"}, "encoding"),
        ({"encoding": 16}, "encoding"),
        ({"sample_rate": 7000}, "sample_rate"),
        ({"sample_rate": 96000}, "sample_rate"),
        ({"sample_rate": "16000"}, "sample_rate"),
        ({"sample_rate": 16000.0}, "sample_rate"),
        ({"sample_rate": True}, "sample_rate"),
        ({"channels": 0}, "channels"),
        ({"channels": 3}, "channels"),
        ({"channels": True}, "channels"),
        ({"channels": "1"}, "channels"),
        ({"encoding": "opus", "sample_rate": 16000}, "sample_rate"),
    ],
)
def test_from_dict_rejects_bad_values_naming_the_field(spec: dict[str, object], field: str) -> None:
    with pytest.raises(UnsupportedFormat, match=f'"{field}"'):
        AudioFormat.from_dict(spec, PCM16_16K)


def test_from_dict_error_lists_the_allowed_values() -> None:
    with pytest.raises(UnsupportedFormat) as info:
        AudioFormat.from_dict({"sample_rate": 7000}, PCM16_16K)
    message = str(info.value)
    assert all(str(rate) in message for rate in SUPPORTED_RATES)
    assert "7000" in message
    with pytest.raises(UnsupportedFormat, match='"pcm16", "f32", "ulaw", "alaw", "opus"'):
        AudioFormat.from_dict({"encoding": "mp3"}, PCM16_16K)


def test_from_dict_rejects_a_non_mapping() -> None:
    with pytest.raises(UnsupportedFormat, match="must be an object"):
        AudioFormat.from_dict(["pcm16"], PCM16_16K)  # type: ignore[arg-type]


def test_error_messages_do_not_echo_long_client_values() -> None:
    with pytest.raises(UnsupportedFormat) as info:
        AudioFormat.from_dict({"encoding": "x" * 10_000}, PCM16_16K)
    assert len(str(info.value)) < 200


def test_constructor_validates_and_normalizes() -> None:
    assert AudioFormat("pcm16", 16000) == PCM16_16K  # type: ignore[arg-type]
    assert AudioFormat("pcm16", 16000).encoding is Encoding.PCM16  # type: ignore[arg-type]
    with pytest.raises(UnsupportedFormat, match="sample_rate"):
        AudioFormat(Encoding.PCM16, 44000)
    with pytest.raises(UnsupportedFormat, match="48000"):
        AudioFormat(Encoding.OPUS, 16000)
    with pytest.raises(UnsupportedFormat, match="encoding"):
        AudioFormat("wav", 16000)  # type: ignore[arg-type]
    with pytest.raises(UnsupportedFormat, match="channels"):
        AudioFormat(Encoding.PCM16, 16000, 6)


def test_to_dict_round_trip() -> None:
    for fmt in (PCM16_16K, PCM16_24K, ULAW_8K, OPUS_48K, AudioFormat(Encoding.F32, 44100, 2)):
        assert fmt.to_dict()["encoding"] == fmt.encoding.value
        assert type(fmt.to_dict()["encoding"]) is str
        assert AudioFormat.from_dict(fmt.to_dict(), PCM16_16K) == fmt


def test_formats_are_hashable_and_frozen() -> None:
    assert len({PCM16_16K, AudioFormat(Encoding.PCM16, 16000)}) == 1
    with pytest.raises(AttributeError):
        PCM16_16K.sample_rate = 8000  # type: ignore[misc]


def test_bytes_ms_arithmetic() -> None:
    assert PCM16_16K.bytes_per_sample == 2
    assert PCM16_16K.bytes_per_ms == 32.0
    assert PCM16_16K.bytes_for_ms(20) == 640
    assert PCM16_24K.bytes_for_ms(20) == 960
    assert PCM16_24K.duration_ms(960) == 20.0
    assert ULAW_8K.bytes_for_ms(20) == 160
    assert ULAW_8K.duration_ms(8000) == 1000.0
    f32_stereo = AudioFormat(Encoding.F32, 48000, 2)
    assert f32_stereo.bytes_per_sample == 4
    assert f32_stereo.bytes_for_ms(10) == 480 * 4 * 2
    assert f32_stereo.duration_ms(3840) == 10.0


def test_bytes_for_ms_counts_whole_samples() -> None:
    cd = AudioFormat(Encoding.PCM16, 44100, 2)
    assert cd.bytes_for_ms(10) == 441 * 4
    assert AudioFormat(Encoding.PCM16, 11025).bytes_for_ms(20) == 220 * 2  # 220.5 samples -> 220
    assert PCM16_16K.bytes_for_ms(0.1) == 2 * 1  # 1.6 samples -> 1
    assert PCM16_16K.bytes_for_ms(0) == 0
    for ms in (0.3, 1.1, 20, 33.3):  # floating point must not lose a whole sample
        assert PCM16_24K.bytes_for_ms(ms) == int(round(ms * 24, 6)) * 2
    with pytest.raises(ValueError):
        PCM16_16K.bytes_for_ms(-1)


def test_is_pcm() -> None:
    assert PCM16_16K.is_pcm and AudioFormat(Encoding.F32, 16000).is_pcm
    assert not ULAW_8K.is_pcm and not OPUS_48K.is_pcm


def test_opus_has_no_bytes_per_sample() -> None:
    with pytest.raises(UnsupportedFormat, match="packetized"):
        _ = OPUS_48K.bytes_per_sample
    with pytest.raises(UnsupportedFormat):
        OPUS_48K.bytes_for_ms(20)
    with pytest.raises(UnsupportedFormat):
        OPUS_48K.duration_ms(100)
