from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from audiocodecs import StreamingResampler

from .conftest import read_wav

PAIRS = [(16000, 24000), (24000, 16000), (24000, 48000), (48000, 24000), (8000, 24000), (44100, 16000)]
SPEECH_FILES = ["hello-book-table-en-16k.wav", "privet-ru-16k.wav", "weather-paris-en-16k.wav", "wiersz-pl-16k.wav"]


def resample_in_chunks(resampler: StreamingResampler, samples: npt.NDArray[np.int16], sizes: list[int]) -> np.ndarray:
    out = []
    position = 0
    index = 0
    while position < samples.size:
        size = sizes[index % len(sizes)]
        out.append(resampler.process(samples[position : position + size]))
        position += size
        index += 1
    out.append(resampler.flush())
    return np.concatenate(out)


def float_reference(samples: npt.NDArray[np.int16], in_rate: int, out_rate: int) -> npt.NDArray[np.float64]:
    """The same soxr filter run in float64: what the int16 output should be, before rounding."""
    stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float64", quality="HQ")
    head = stream.resample_chunk(samples.astype(np.float64))
    tail = stream.resample_chunk(np.zeros(0), last=True)
    return np.concatenate([head, tail])


def test_passthrough_returns_the_input_itself() -> None:
    resampler = StreamingResampler(16000, 16000)
    samples = np.arange(100, dtype=np.int16)
    assert resampler.passthrough
    assert resampler.process(samples) is samples
    assert resampler.process_bytes(b"\x01\x02") == b"\x01\x02"
    assert resampler.flush().size == 0
    assert resampler.delay_ms == 0.0


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_output_is_correctly_rounded_float_output(speech_16k: np.ndarray, in_rate: int, out_rate: int) -> None:
    # no dither, no bias: every output sample is the float filter output rounded to nearest
    source = soxr.resample(speech_16k[:32000], 16000, in_rate, "VHQ").astype(np.int16)
    ours = resample_in_chunks(StreamingResampler(in_rate, out_rate), source, [in_rate // 50])
    reference = float_reference(source, in_rate, out_rate)
    assert ours.size == reference.size
    error = ours - reference
    # soxr HQ filters in float32 (so does the reference): allow its rounding noise on top of the 0.5 LSB.
    # The +0.5 LSB rounding offset ramps in/out through the filter at the stream's two ends: 1 LSB there.
    edge = out_rate // 250  # 4 ms
    assert np.abs(error[edge:-edge]).max() <= 0.51
    assert np.abs(error).max() <= 1.0
    assert abs(error.mean()) < 0.01, f"DC bias {error.mean():.4f} LSB"


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_total_length_follows_the_rate_ratio(in_rate: int, out_rate: int) -> None:
    samples = np.zeros(in_rate, dtype=np.int16)  # one second
    out = resample_in_chunks(StreamingResampler(in_rate, out_rate), samples, [in_rate // 50])
    assert out.size == out_rate


@settings(max_examples=50, deadline=None)
@given(
    pair=st.sampled_from(PAIRS),
    sizes=st.lists(st.integers(min_value=0, max_value=1500), min_size=1, max_size=12).filter(any),
    offset=st.integers(min_value=0, max_value=40000),
)
def test_any_chunking_gives_the_same_output(
    speech_16k: np.ndarray, pair: tuple[int, int], sizes: list[int], offset: int
) -> None:
    in_rate, out_rate = pair
    samples = speech_16k[offset : offset + 6000]
    whole = resample_in_chunks(StreamingResampler(in_rate, out_rate), samples, [samples.size])
    chunked = resample_in_chunks(StreamingResampler(in_rate, out_rate), samples, sizes)
    np.testing.assert_array_equal(chunked, whole)


def test_bytes_path_equals_array_path(speech_16k: np.ndarray) -> None:
    by_array = StreamingResampler(16000, 24000)
    by_bytes = StreamingResampler(16000, 24000)
    for start in range(0, 16000, 320):
        frame = speech_16k[start : start + 320]
        assert by_bytes.process_bytes(frame.tobytes()) == by_array.process(frame).tobytes()
    assert by_array.flush().size > 0


def test_flush_leaves_the_stream_like_new(speech_16k: np.ndarray) -> None:
    samples = speech_16k[:8000]
    reused = StreamingResampler(16000, 24000)
    first = resample_in_chunks(reused, samples, [320])
    assert reused.delay_ms == 0.0
    second = resample_in_chunks(reused, samples, [320])
    np.testing.assert_array_equal(first, second)


def test_reset_drops_state_without_emitting(speech_16k: np.ndarray) -> None:
    resampler = StreamingResampler(24000, 16000)
    resampler.process(speech_16k[:4800])
    assert resampler.delay_ms > 0
    resampler.reset()
    assert resampler.delay_ms == 0.0
    after_reset = resample_in_chunks(resampler, speech_16k[:4800], [480])
    fresh = resample_in_chunks(StreamingResampler(24000, 16000), speech_16k[:4800], [480])
    np.testing.assert_array_equal(after_reset, fresh)


def test_full_scale_overshoot_saturates_instead_of_wrapping() -> None:
    square = np.repeat(np.array([32767, -32768] * 20, dtype=np.int16), 37)  # Gibbs overshoot past full scale
    out = resample_in_chunks(StreamingResampler(16000, 48000), square, [320])
    reference = np.clip(np.rint(float_reference(square, 16000, 48000)), -32768, 32767)
    assert np.abs(out - reference).max() <= 1
    assert out.max() == 32767 and out.min() == -32768


def test_stereo_channels_are_resampled_independently(speech_16k: np.ndarray) -> None:
    left = speech_16k[:4800]
    right = speech_16k[4800:9600]
    stereo = np.stack([left, right], axis=1)  # frames x channels
    out = StreamingResampler(16000, 24000, channels=2).process(stereo)
    assert out.shape[1] == 2
    mono_left = StreamingResampler(16000, 24000).process(left)
    mono_right = StreamingResampler(16000, 24000).process(right)
    np.testing.assert_array_equal(out[:, 0], mono_left)
    np.testing.assert_array_equal(out[:, 1], mono_right)
    interleaved = StreamingResampler(16000, 24000, channels=2).process(stereo.reshape(-1))
    np.testing.assert_array_equal(interleaved, out.reshape(-1))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        StreamingResampler(0, 16000)
    with pytest.raises(ValueError):
        StreamingResampler(16000, 24000, channels=0)
    with pytest.raises(ValueError):
        StreamingResampler(16000, 24000, quality="best")
    with pytest.raises(TypeError):
        StreamingResampler(16000, 24000).process(np.zeros(10, dtype=np.float32))
    with pytest.raises(ValueError):
        StreamingResampler(16000, 24000, channels=2).process(np.zeros(5, dtype=np.int16))


def _band_limited(samples: np.ndarray, rate: int, top_hz: float) -> npt.NDArray[np.float64]:
    size = 1 << (samples.size - 1).bit_length()  # a fast FFT length (zero padded)
    spectrum = np.fft.rfft(samples.astype(np.float64), size)
    spectrum[np.fft.rfftfreq(size, 1 / rate) > top_hz] = 0
    return np.fft.irfft(spectrum, size)[: samples.size]


@pytest.mark.parametrize("name", SPEECH_FILES)
def test_16k_24k_16k_round_trip_snr(audio_dir: Path, name: str) -> None:
    original, rate = read_wav(audio_dir / name)
    up = StreamingResampler(16000, 24000)
    down = StreamingResampler(24000, 16000)
    upsampled = b"".join(up.process_bytes(original[i : i + 320].tobytes()) for i in range(0, original.size, 320))
    upsampled += up.flush().tobytes()
    round_trip = np.frombuffer(
        b"".join(down.process_bytes(upsampled[i : i + 960]) for i in range(0, len(upsampled), 960))
        + down.flush().tobytes(),
        dtype=np.int16,
    )
    assert round_trip.size == original.size
    # align for the filters' delay: find the lag by cross-correlation (soxr streams are time-aligned: 0)
    window = original[: 4 * rate].astype(np.float64)
    correlation = np.correlate(round_trip[: 4 * rate + 200].astype(np.float64), window, mode="valid")
    lag = int(np.argmax(correlation))
    assert lag == 0, f"unexpected delay of {lag} samples"
    # compare the band both filters pass untouched (0-7 kHz); 7-8 kHz is the anti-alias transition band
    reference = _band_limited(original, rate, 7000)
    result = _band_limited(round_trip, rate, 7000)
    snr = 10 * np.log10(np.sum(reference**2) / np.sum((reference - result) ** 2))
    assert snr >= 60, f"{name}: 16k -> 24k -> 16k SNR in 0-7 kHz is {snr:.1f} dB (want >= 60)"
