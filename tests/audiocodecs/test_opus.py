from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiocodecs import (
    FRAME_MS,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    CorruptPacket,
    InvalidAudio,
    OpusDecoder,
    OpusEncoder,
    read_pcm16,
)
from audiocodecs.opus import DecoderBackend, libopus_path

BACKENDS: list[DecoderBackend] = ["libopus", "pyav"]
SPEECH_FILES = ["hello-book-table-en-16k.wav", "privet-ru-16k.wav", "conversation-3-turns-24k.wav"]
# bytes libopus rejects: a code-3 packet announcing 0 frames, an oversized packet, a CELT packet cut short
CORRUPT_PACKETS = [b"\x03\x00", b"\xff" * 2000, b"\x7f"]


def encode_all(samples: npt.NDArray[np.int16], chunk: int = SAMPLES_PER_FRAME) -> list[bytes]:
    encoder = OpusEncoder()
    packets: list[bytes] = []
    for start in range(0, samples.size, chunk):
        packets.extend(encoder.encode(samples[start : start + chunk]))
    packets.extend(encoder.flush())
    return packets


@pytest.fixture(scope="module")
def packets(speech_48k: np.ndarray) -> list[bytes]:
    return encode_all(speech_48k[: 2 * SAMPLE_RATE])


def test_constants() -> None:
    assert (SAMPLE_RATE, FRAME_MS, SAMPLES_PER_FRAME) == (48000, 20, 960)


def test_the_real_libopus_is_loaded_for_plc() -> None:
    assert libopus_path() is not None
    assert OpusDecoder().backend == "libopus"


# ---------------------------------------------------------------------------------------------- encoder


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=2500), min_size=1, max_size=8).filter(any))
def test_reframing_arbitrary_chunks_gives_exact_20ms_packets(speech_48k: np.ndarray, sizes: list[int]) -> None:
    samples = speech_48k[: SAMPLES_PER_FRAME * 12 + 317]
    encoder = OpusEncoder()
    chunked: list[bytes] = []
    position = 0
    index = 0
    while position < samples.size:
        size = sizes[index % len(sizes)]
        chunked.extend(encoder.encode(samples[position : position + size]))
        position += size
        index += 1
        assert len(chunked) == min(position, samples.size) // SAMPLES_PER_FRAME
        assert encoder.pending_samples == min(position, samples.size) % SAMPLES_PER_FRAME
    chunked.extend(encoder.flush())
    assert len(chunked) == 13  # 12 whole frames + the padded remainder
    assert chunked == encode_all(samples)  # same packets as exact framing (libopus is deterministic)
    decoder = OpusDecoder()
    assert all(decoder.decode(packet).size == SAMPLES_PER_FRAME for packet in chunked)


def test_flush_pads_and_reset_drops_the_remainder() -> None:
    encoder = OpusEncoder()
    assert encoder.encode(np.zeros(500, dtype=np.int16)) == []
    assert encoder.flush().__len__() == 1
    assert encoder.flush() == []
    encoder.encode(np.zeros(500, dtype=np.int16))
    encoder.reset()
    assert encoder.pending_samples == 0
    assert encoder.flush() == []


def test_encoder_settings() -> None:
    with pytest.raises(ValueError):
        OpusEncoder(bitrate=100)
    with pytest.raises(ValueError):
        OpusEncoder(complexity=11)
    with pytest.raises(ValueError):
        OpusEncoder(application="music")
    with pytest.raises(TypeError):
        OpusEncoder().encode(np.zeros(960, dtype=np.float32))


def test_bitrate_is_honoured(speech_48k: np.ndarray) -> None:
    samples = speech_48k[: 2 * SAMPLE_RATE]
    for bitrate in (16000, 64000):
        encoder = OpusEncoder(bitrate=bitrate)
        total = sum(len(p) for p in encoder.encode(samples))
        measured = total * 8 / 2.0
        assert 0.7 * bitrate < measured < 1.3 * bitrate, f"{measured:.0f} bit/s for a {bitrate} target"


# ---------------------------------------------------------------------------------------------- decoder


@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_gives_20ms_of_mono(packets: list[bytes], backend: DecoderBackend) -> None:
    decoder = OpusDecoder(backend=backend)
    for packet in packets[:10]:
        samples = decoder.decode(packet)
        assert samples.dtype == np.int16 and samples.shape == (SAMPLES_PER_FRAME,)


def test_backends_agree(packets: list[bytes]) -> None:
    libopus = OpusDecoder(backend="libopus")
    ours = np.concatenate([libopus.decode(p) for p in packets[:20]])
    pyav = OpusDecoder(backend="pyav")
    theirs = np.concatenate([pyav.decode(p) for p in packets[:20]])
    assert np.abs(ours.astype(np.int32) - theirs).max() <= 2  # same libopus; float vs int16 output paths


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("garbage", CORRUPT_PACKETS)
def test_corrupt_packet_raises_and_the_decoder_keeps_working(
    packets: list[bytes], backend: DecoderBackend, garbage: bytes
) -> None:
    decoder = OpusDecoder(backend=backend)
    clean = OpusDecoder(backend=backend)
    for packet in packets[:5]:
        decoder.decode(packet)
        clean.decode(packet)
    with pytest.raises(CorruptPacket, match="undecodable opus packet"):
        decoder.decode(garbage)
    for packet in packets[5:10]:
        np.testing.assert_array_equal(decoder.decode(packet), clean.decode(packet))


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_packet_is_invalid(backend: DecoderBackend) -> None:
    with pytest.raises(InvalidAudio, match="empty"):
        OpusDecoder(backend=backend).decode(b"")


def test_stereo_packets_are_down_mixed() -> None:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = SAMPLE_RATE
    encoder.layout = "stereo"
    encoder.format = "s16"
    encoder.bit_rate = 96000
    encoder.time_base = Fraction(1, SAMPLE_RATE)
    t = np.arange(SAMPLES_PER_FRAME * 10) / SAMPLE_RATE
    left = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    stereo = np.stack([left, np.zeros_like(left)], axis=1).reshape(1, -1)  # packed s16: interleaved
    packets: list[bytes] = []
    for i in range(10):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(stereo[:, i * 2 * SAMPLES_PER_FRAME : (i + 1) * 2 * SAMPLES_PER_FRAME]),
            format="s16",
            layout="stereo",
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = i * SAMPLES_PER_FRAME
        packets.extend(bytes(p) for p in encoder.encode(frame))
    assert packets
    for backend in BACKENDS:
        decoder = OpusDecoder(backend=backend)
        decoded = np.concatenate([decoder.decode(p) for p in packets])
        assert decoded.ndim == 1 and decoded.size == len(packets) * SAMPLES_PER_FRAME
        rms = np.sqrt(np.mean(decoded[2 * SAMPLES_PER_FRAME :].astype(np.float64) ** 2))
        expected = 8000 / np.sqrt(2) / 2  # a 440 Hz tone on one channel of two: half the amplitude in mono
        assert 0.8 * expected < rms < 1.2 * expected, f"{backend}: rms {rms:.0f}, want about {expected:.0f}"


def test_reset_decodes_like_a_fresh_decoder(packets: list[bytes]) -> None:
    for backend in BACKENDS:
        decoder = OpusDecoder(backend=backend)
        for packet in packets[:10]:
            decoder.decode(packet)
        decoder.reset()
        fresh = OpusDecoder(backend=backend)
        for packet in packets[20:25]:
            np.testing.assert_array_equal(decoder.decode(packet), fresh.decode(packet))


# ---------------------------------------------------------------------------------------------- concealment


def _energy(samples: np.ndarray) -> float:
    return float(np.mean(samples.astype(np.float64) ** 2))


def _loudest_frame(packets: list[bytes]) -> int:
    decoder = OpusDecoder()
    energies = [_energy(decoder.decode(p)) for p in packets]
    return int(np.argmax(energies))


def test_libopus_plc_continues_the_signal_and_fades(packets: list[bytes]) -> None:
    loud = _loudest_frame(packets)
    decoder = OpusDecoder(backend="libopus")
    for packet in packets[: loud + 1]:
        last = decoder.decode(packet)
    concealed = [decoder.conceal() for _ in range(12)]
    assert all(frame.shape == (SAMPLES_PER_FRAME,) for frame in concealed)
    assert _energy(concealed[0]) > 0.01 * _energy(last), "PLC should extrapolate the voice, not go silent"
    assert not np.array_equal(concealed[0], last), "real PLC synthesizes; it does not repeat the frame"
    assert _energy(concealed[-1]) < 0.1 * _energy(concealed[0]), "PLC should fade over successive losses"
    assert decoder.decode(packets[loud + 13]).shape == (SAMPLES_PER_FRAME,)  # and recover afterwards


def test_fallback_concealment_repeats_the_last_frame_with_a_fade(packets: list[bytes]) -> None:
    loud = _loudest_frame(packets)
    decoder = OpusDecoder(backend="pyav")
    for packet in packets[: loud + 1]:
        last = decoder.decode(packet)
    first = decoder.conceal()
    assert first.shape == (SAMPLES_PER_FRAME,)
    assert first[0] == last[0]  # gain starts at 1
    assert _energy(last) * 0.4 < _energy(first) < _energy(last)
    rest = [decoder.conceal() for _ in range(5)]
    assert _energy(rest[0]) < _energy(first)
    assert not rest[-1].any(), "silent after five successive losses"


def test_conceal_before_any_packet_is_20ms_of_silence() -> None:
    for backend in BACKENDS:
        concealed = OpusDecoder(backend=backend).conceal()
        assert concealed.shape == (SAMPLES_PER_FRAME,)
        assert not concealed.any()


def test_conceal_matches_the_last_packet_duration() -> None:
    decoder = OpusDecoder()
    assert decoder.decode(b"\x00").size == 480  # TOC config 0: a 10 ms SILK frame
    assert decoder.conceal().size == 480


# ---------------------------------------------------------------------------------------------- quality


def _envelope(samples: np.ndarray, window: int) -> npt.NDArray[np.float64]:
    frames = samples.size // window
    blocks = samples[: frames * window].astype(np.float64).reshape(frames, window)
    envelope: npt.NDArray[np.float64] = np.sqrt(np.mean(blocks**2, axis=1))
    return envelope


@pytest.mark.parametrize("name", SPEECH_FILES)
def test_round_trip_keeps_the_speech_envelope(audio_dir: Path, name: str) -> None:
    original = read_pcm16(audio_dir / name, SAMPLE_RATE)
    packets = encode_all(original, chunk=777)
    decoder = OpusDecoder()
    decoded = np.concatenate([decoder.decode(p) for p in packets])
    assert decoded.size == len(packets) * SAMPLES_PER_FRAME >= original.size
    # the codec delay (libopus lookahead, about 6.5 ms): found by cross-correlation, then checked
    span = 3 * SAMPLE_RATE
    correlation = np.correlate(
        decoded[: span + SAMPLES_PER_FRAME].astype(np.float64), original[:span].astype(np.float64), mode="valid"
    )
    delay = int(np.argmax(correlation))
    assert abs(delay - 312) <= 24, f"codec delay {delay} samples, expected about 312 (6.5 ms)"
    aligned = decoded[delay : delay + original.size]
    window = SAMPLE_RATE // 100  # RMS per 10 ms
    ours, theirs = _envelope(original, window), _envelope(aligned, window)
    n = min(ours.size, theirs.size)
    correlation_coefficient = float(np.corrcoef(ours[:n], theirs[:n])[0, 1])
    assert correlation_coefficient >= 0.95, f"{name}: envelope correlation {correlation_coefficient:.3f}"
