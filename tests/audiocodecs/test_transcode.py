from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiocodecs import (
    OPUS_48K,
    PCM16_16K,
    PCM16_24K,
    PCM16_48K,
    SAMPLES_PER_FRAME,
    ULAW_8K,
    AudioFormat,
    CorruptPacket,
    Encoding,
    InvalidAudio,
    OpusDecoder,
    OpusEncoder,
    StreamingResampler,
    Transcoder,
    UnsupportedFormat,
    alaw_decode,
    alaw_encode,
    pcm16_to_f32,
    ulaw_decode,
    ulaw_encode,
)

from .conftest import chunks_of

PCM16_8K = AudioFormat(Encoding.PCM16, 8000)
ALAW_8K = AudioFormat(Encoding.ALAW, 8000)
F32_48K = AudioFormat(Encoding.F32, 48000)
F32_24K = AudioFormat(Encoding.F32, 24000)
PCM16_16K_STEREO = AudioFormat(Encoding.PCM16, 16000, 2)


def run(transcoder: Transcoder, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(transcoder.feed(chunk))
    out.extend(transcoder.flush())
    return out


@pytest.mark.parametrize("fmt", [PCM16_16K, ULAW_8K, F32_24K, PCM16_16K_STEREO])
def test_same_format_is_a_validating_passthrough(fmt: AudioFormat) -> None:
    transcoder = Transcoder(fmt, fmt)
    data = bytes(fmt.bytes_for_ms(20))
    out = transcoder.feed(data)
    assert len(out) == 1 and out[0] is data
    assert transcoder.feed(b"") == []
    assert transcoder.flush() == []
    assert transcoder.conceal() == []
    if fmt.frame_bytes > 1:
        with pytest.raises(InvalidAudio, match="whole number"):
            transcoder.feed(bytes(fmt.frame_bytes + 1))


def test_opus_to_opus_is_a_packet_passthrough() -> None:
    opus = Transcoder(OPUS_48K, OPUS_48K)
    assert opus.feed(b"\x00")[0] == b"\x00"
    with pytest.raises(InvalidAudio):
        opus.feed(b"")
    assert opus.conceal() == []  # Opus to Opus: the receiving decoder conceals


def test_properties_and_repr() -> None:
    transcoder = Transcoder(ULAW_8K, PCM16_24K)
    assert transcoder.src == ULAW_8K and transcoder.dst == PCM16_24K
    assert "ulaw/8000Hz/mono" in repr(transcoder)


def test_pcm16_resampling_matches_the_resampler(speech_16k: np.ndarray) -> None:
    transcoder = Transcoder(PCM16_16K, PCM16_24K)
    resampler = StreamingResampler(16000, 24000)
    for start in range(0, 32000, 320):
        frame = speech_16k[start : start + 320]
        assert b"".join(transcoder.feed(frame.tobytes())) == resampler.process(frame).tobytes()
    assert b"".join(transcoder.flush()) == resampler.flush().tobytes()


FAST_PAIRS = [
    (PCM16_16K, PCM16_24K),
    (PCM16_48K, PCM16_16K),
    (ULAW_8K, PCM16_8K),
    (ULAW_8K, PCM16_24K),
    (ALAW_8K, PCM16_16K),
    (PCM16_8K, ULAW_8K),
    (PCM16_24K, ALAW_8K),
]


def _general(src: AudioFormat, dst: AudioFormat) -> Transcoder:
    """The base class's full chain, bypassing the fast path ``Transcoder(...)`` would pick."""
    transcoder = object.__new__(Transcoder)
    transcoder.__init__(src, dst)  # type: ignore[misc]
    return transcoder


@pytest.mark.parametrize(("src", "dst"), FAST_PAIRS)
def test_fast_paths_equal_the_full_chain(speech_16k: np.ndarray, src: AudioFormat, dst: AudioFormat) -> None:
    fast = Transcoder(src, dst)
    assert isinstance(fast, Transcoder) and type(fast) is not Transcoder  # a fast path was picked
    pcm = speech_16k[:8000]
    data = ulaw_encode(pcm) if src.encoding is Encoding.ULAW else pcm.tobytes()
    if src.encoding is Encoding.ALAW:
        data = alaw_encode(pcm)
    chunks = chunks_of(data, [src.bytes_for_ms(20), 7 * src.frame_bytes])
    assert run(fast, chunks) == run(_general(src, dst), chunks)


# ---------------------------------------------------------------------------------------------- chunking


def _split(data: bytes, sizes: list[int], unit: int) -> list[bytes]:
    return chunks_of(data, [size * unit for size in sizes])


@settings(max_examples=50, deadline=None)
@given(
    conversion=st.sampled_from(
        [
            (PCM16_16K, PCM16_24K),
            (PCM16_24K, PCM16_48K),
            (ULAW_8K, PCM16_24K),
            (F32_48K, ALAW_8K),
            (PCM16_24K, ULAW_8K),
        ]
    ),
    sizes=st.lists(st.integers(min_value=0, max_value=1200), min_size=1, max_size=10).filter(any),
    offset=st.integers(min_value=0, max_value=30000),
)
def test_any_chunking_gives_the_same_output(
    speech_16k: np.ndarray, conversion: tuple[AudioFormat, AudioFormat], sizes: list[int], offset: int
) -> None:
    src, dst = conversion
    pcm = speech_16k[offset : offset + 5000]
    if src.encoding is Encoding.ULAW:
        data = ulaw_encode(pcm)
    elif src.encoding is Encoding.F32:
        data = pcm16_to_f32(pcm).tobytes()
    else:
        data = pcm.tobytes()
    unit = src.frame_bytes
    whole = b"".join(run(Transcoder(src, dst), [data]))
    chunked = b"".join(run(Transcoder(src, dst), _split(data, sizes, unit)))
    assert chunked == whole
    assert len(whole) % dst.frame_bytes == 0


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=1200), min_size=1, max_size=6).filter(any))
def test_any_chunking_gives_the_same_opus_packets(speech_16k: np.ndarray, sizes: list[int]) -> None:
    data = speech_16k[8000:16000].tobytes()  # 0.5 s
    whole = run(Transcoder(PCM16_16K, OPUS_48K), [data])
    chunked = run(Transcoder(PCM16_16K, OPUS_48K), _split(data, sizes, 2))
    assert chunked == whole
    assert len(whole) == 25  # 0.5 s of 20 ms packets


# ---------------------------------------------------------------------------------------------- conversions


def test_g711_decode_and_encode_paths(speech_16k: np.ndarray) -> None:
    pcm = speech_16k[:1600]
    assert Transcoder(ULAW_8K, PCM16_8K).feed(ulaw_encode(pcm)) == [ulaw_decode(ulaw_encode(pcm)).tobytes()]
    assert Transcoder(PCM16_8K, ULAW_8K).feed(pcm.tobytes()) == [ulaw_encode(pcm)]
    assert Transcoder(ALAW_8K, PCM16_8K).feed(alaw_encode(pcm)) == [alaw_decode(alaw_encode(pcm)).tobytes()]
    assert Transcoder(PCM16_8K, ALAW_8K).feed(pcm.tobytes()) == [alaw_encode(pcm)]


def test_f32_in_equals_pcm16_in(speech_16k: np.ndarray) -> None:
    pcm = speech_16k[:4800]
    from_f32 = run(Transcoder(F32_48K, PCM16_24K), [pcm16_to_f32(pcm).tobytes()])
    from_pcm = run(Transcoder(PCM16_48K, PCM16_24K), [pcm.tobytes()])
    assert from_f32 == from_pcm


def test_f32_out(speech_16k: np.ndarray) -> None:
    pcm = speech_16k[:960]
    out = Transcoder(PCM16_24K, F32_24K).feed(pcm.tobytes())
    np.testing.assert_array_equal(np.frombuffer(out[0], dtype=np.float32), pcm.astype(np.float32) / 32768)


def test_stereo_source_is_down_mixed() -> None:
    left = np.array([100, 200, 300, -400], dtype=np.int16)
    right = np.array([300, 0, -300, -400], dtype=np.int16)
    stereo = np.stack([left, right], axis=1).reshape(-1)
    out = Transcoder(PCM16_16K_STEREO, PCM16_16K).feed(stereo.tobytes())
    np.testing.assert_array_equal(np.frombuffer(out[0], dtype=np.int16), [200, 100, 0, -400])
    with pytest.raises(InvalidAudio):
        Transcoder(PCM16_16K_STEREO, PCM16_16K).feed(bytes(6))  # one and a half stereo frames


def test_stereo_destination_duplicates_mono() -> None:
    mono = np.array([1, -2, 3], dtype=np.int16)
    out = Transcoder(PCM16_16K, PCM16_16K_STEREO).feed(mono.tobytes())
    np.testing.assert_array_equal(np.frombuffer(out[0], dtype=np.int16), [1, 1, -2, -2, 3, 3])


def test_opus_in_decodes_and_resamples(speech_48k: np.ndarray) -> None:
    packets = OpusEncoder().encode(speech_48k[: 50 * SAMPLES_PER_FRAME])
    transcoder = Transcoder(OPUS_48K, PCM16_16K)
    out = run(transcoder, packets)
    assert sum(len(chunk) for chunk in out) == 50 * 320 * 2  # 50 frames of 20 ms at 16 kHz


def test_opus_out_is_whole_20ms_packets(speech_16k: np.ndarray) -> None:
    transcoder = Transcoder(PCM16_24K, OPUS_48K)
    packets = run(transcoder, chunks_of(speech_16k[:24000].tobytes(), [1234]))  # 1 s, odd chunks
    assert len(packets) in (50, 51)  # 50 frames, plus one for the resampler tail padded to a frame
    decoder = OpusDecoder()
    assert all(decoder.decode(p).size == SAMPLES_PER_FRAME for p in packets)


def test_conceal_emits_20ms_through_the_chain(speech_48k: np.ndarray) -> None:
    packets = OpusEncoder().encode(speech_48k[: 20 * SAMPLES_PER_FRAME])
    transcoder = Transcoder(OPUS_48K, PCM16_24K)
    fed = sum(len(chunk) for packet in packets for chunk in transcoder.feed(packet))
    concealed = [b"".join(transcoder.conceal()) for _ in range(10)]
    tail = sum(len(chunk) for chunk in transcoder.flush())
    assert fed + sum(len(chunk) for chunk in concealed) + tail == 30 * 480 * 2  # 20 + 10 frames at 24 kHz
    assert any(np.frombuffer(chunk, dtype=np.int16).any() for chunk in concealed)
    assert Transcoder(PCM16_16K, PCM16_24K).conceal() == []
    assert Transcoder(OPUS_48K, OPUS_48K).conceal() == []
    same_rate = Transcoder(OPUS_48K, PCM16_48K)
    same_rate.feed(packets[0])
    assert len(b"".join(same_rate.conceal())) == SAMPLES_PER_FRAME * 2


def test_reset_drops_state(speech_16k: np.ndarray, speech_48k: np.ndarray) -> None:
    data = speech_16k[:16000].tobytes()
    for src, dst in ((PCM16_16K, PCM16_24K), (PCM16_16K, OPUS_48K), (PCM16_16K, ULAW_8K)):
        used = Transcoder(src, dst)
        used.feed(data[:3330])
        used.reset()
        assert run(used, chunks_of(data, [640])) == run(Transcoder(src, dst), chunks_of(data, [640]))
    packets = OpusEncoder().encode(speech_48k[: 30 * SAMPLES_PER_FRAME])
    used = Transcoder(OPUS_48K, PCM16_16K)
    for packet in packets[:10]:
        used.feed(packet)
    used.reset()
    assert run(used, packets[10:]) == run(Transcoder(OPUS_48K, PCM16_16K), packets[10:])


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("src", "dst", "data", "error"),
    [
        (PCM16_16K, PCM16_24K, b"\x00\x01\x02", InvalidAudio),  # odd byte count, fast path
        (PCM16_16K, ULAW_8K, b"\x00\x01\x02", InvalidAudio),  # odd byte count, general path
        (PCM16_16K, PCM16_16K, b"\x00", InvalidAudio),  # odd byte count, passthrough
        (F32_48K, PCM16_24K, bytes(6), InvalidAudio),  # f32 not a multiple of 4
        (OPUS_48K, PCM16_24K, b"\x03\x00", CorruptPacket),  # corrupt Opus packet
        (OPUS_48K, PCM16_24K, b"", InvalidAudio),  # empty Opus packet
    ],
)
def test_bad_input_raises_and_the_transcoder_stays_usable(
    speech_48k: np.ndarray, src: AudioFormat, dst: AudioFormat, data: bytes, error: type[Exception]
) -> None:
    if src.encoding is Encoding.OPUS:
        good = OpusEncoder().encode(speech_48k[: 10 * SAMPLES_PER_FRAME])
    elif src.encoding is Encoding.F32:
        good = chunks_of(pcm16_to_f32(speech_48k[:9600]).tobytes(), [3840])
    else:
        good = chunks_of(speech_48k[:3200].tobytes(), [640])
    transcoder = Transcoder(src, dst)
    reference = Transcoder(src, dst)
    expected = [reference.feed(chunk) for chunk in good[:2]]
    assert [transcoder.feed(chunk) for chunk in good[:2]] == expected
    with pytest.raises(error):
        transcoder.feed(data)
    assert [transcoder.feed(chunk) for chunk in good[2:]] == [reference.feed(chunk) for chunk in good[2:]]
    assert transcoder.flush() == reference.flush()


def test_bad_formats_raise_unsupported_format() -> None:
    with pytest.raises(UnsupportedFormat):
        AudioFormat(Encoding.PCM16, 12345)  # unsupported rate
    with pytest.raises(UnsupportedFormat):
        AudioFormat(Encoding.OPUS, 16000)  # opus at 16000
    with pytest.raises(UnsupportedFormat):
        AudioFormat.from_dict({"encoding": "speex"}, PCM16_16K)  # unknown encoding
