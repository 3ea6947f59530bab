"""The deterministic synthesizer."""

from __future__ import annotations

import numpy as np
import pytest

from providers.emulation import synth


def test_same_text_gives_identical_bytes() -> None:
    text = "Deterministic: same text, same samples."
    assert synth.synthesize(text).tobytes() == synth.synthesize(text).tobytes()
    assert synth.synthesize(text).dtype == np.int16


def test_duration_is_proportional_to_length() -> None:
    for text in ("a", "hello", "hello world, this is longer"):
        samples = synth.synthesize(text)
        assert samples.size == len(text) * synth.CHAR_MS * synth.SAMPLE_RATE // 1000
        assert samples.size * 1000 // synth.SAMPLE_RATE == synth.duration_ms(text)
    assert synth.synthesize("").size == 0


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_any_rate(rate: int) -> None:
    assert synth.synthesize("abc", rate).size == 3 * synth.samples_per_char(rate)


def test_letters_are_voiced_and_spaces_silent() -> None:
    n = synth.samples_per_char(synth.SAMPLE_RATE)
    samples = synth.synthesize("a b.")
    voiced, space, voiced2, dot = (samples[i * n : (i + 1) * n] for i in range(4))
    assert np.abs(voiced).max() > 4000 and np.abs(voiced2).max() > 4000
    assert not space.any() and not dot.any()
    rms_db = 20 * np.log10(np.sqrt(np.mean(voiced.astype(float) ** 2)) / 32768)
    assert -25 < rms_db < -10  # loud enough for any VAD, far from clipping
    assert voiced[0] == 0 and abs(int(voiced[-1])) < 200  # faded edges: no clicks


def test_pitch_follows_the_character() -> None:
    def dominant_hz(char: str) -> float:
        samples = synth.synthesize(char).astype(float)
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
        return float(np.argmax(spectrum) * synth.SAMPLE_RATE / samples.size)

    for char in "aMz7":
        assert abs(dominant_hz(char) - synth.char_pitch_hz(char)) < 20
    assert synth.char_pitch_hz("a") != synth.char_pitch_hz("b")
