"""G.711 against the oracle: CPython's audioop (stdlib on 3.11/3.12, audioop-lts on 3.13+)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from audiocodecs import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from audiocodecs.g711 import ALAW_ENCODE_TABLE, ULAW_ENCODE_TABLE

with warnings.catch_warnings():  # deprecated in 3.11/3.12 stdlib; audioop-lts on 3.13+ is not
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


def test_ulaw_encode_is_bit_exact_for_every_int16() -> None:
    assert ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES.tobytes(), 2)


def test_alaw_encode_is_bit_exact_for_every_int16() -> None:
    assert alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES.tobytes(), 2)


def test_ulaw_decode_is_bit_exact_for_every_code() -> None:
    expected = np.frombuffer(audioop.ulaw2lin(ALL_CODES, 2), dtype=np.int16)
    np.testing.assert_array_equal(ulaw_decode(ALL_CODES), expected)


def test_alaw_decode_is_bit_exact_for_every_code() -> None:
    expected = np.frombuffer(audioop.alaw2lin(ALL_CODES, 2), dtype=np.int16)
    np.testing.assert_array_equal(alaw_decode(ALL_CODES), expected)


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [(0, 0xFF, 0xD5), (-1, 0x7E, 0x55), (32767, 0x80, 0xAA), (-32768, 0x00, 0x2A), (1000, 0xCE, 0xFA)],
)
def test_known_vectors(sample: int, ulaw: int, alaw: int) -> None:
    pcm = np.array([sample], dtype=np.int16)
    assert ulaw_encode(pcm) == bytes([ulaw])
    assert alaw_encode(pcm) == bytes([alaw])


def test_known_decoded_values() -> None:
    np.testing.assert_array_equal(ulaw_decode(b"\xff\x7f\x80\x00"), [0, 0, 32124, -32124])
    np.testing.assert_array_equal(alaw_decode(b"\xd5\x55\xaa\x2a"), [8, -8, 32256, -32256])


def test_encode_decode_encode_is_stable() -> None:
    # decoding a code and encoding the result gives the code back (G.711 idempotence), except for the
    # two μ-law zeros (0x7F, 0xFF) which both decode to 0 and re-encode as 0xFF
    for encode, decode in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        again = encode(decode(ALL_CODES))
        differing = [code for code in range(256) if again[code] != code]
        assert differing in ([], [0x7F])


def test_round_trip_error_is_within_the_quantization_step(speech_16k: np.ndarray) -> None:
    for encode, decode in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        decoded = decode(encode(speech_16k)).astype(np.int32)
        error = np.abs(decoded - speech_16k)
        # the step of the top segment is 1024 (μ-law) / 1024 (A-law): error at most half of it + bias
        assert error.max() <= 1024
        snr = 10 * np.log10(np.sum(speech_16k.astype(float) ** 2) / np.sum(error.astype(float) ** 2))
        assert snr > 30, f"G.711 round-trip SNR {snr:.1f} dB"


def test_works_on_strided_views_and_rejects_other_dtypes() -> None:
    pcm = np.arange(-1000, 1000, dtype=np.int16)
    assert ulaw_encode(pcm[::2]) == ulaw_encode(pcm[::2].copy())
    with pytest.raises(TypeError):
        ulaw_encode(pcm.astype(np.int32))
    with pytest.raises(TypeError):
        alaw_encode(pcm.astype(np.float32))


def test_tables_are_read_only() -> None:
    with pytest.raises(ValueError):
        ULAW_ENCODE_TABLE[0] = 1
    with pytest.raises(ValueError):
        ALAW_ENCODE_TABLE[0] = 1
