"""The input audio buffer: VAD turns, manual commits, clock, bounded idle audio."""

from __future__ import annotations

import numpy as np

from providers.emulation import synth
from providers.emulation.turns import InputAudioBuffer, SpeechStarted, SpeechStopped
from providers.emulation.vad import VadConfig

RATE = 24_000


def zeros(ms: int, rate: int = RATE) -> np.ndarray:
    return np.zeros(rate * ms // 1000, dtype=np.int16)


def test_vad_turn_carries_its_audio() -> None:
    buffer = InputAudioBuffer(RATE, VadConfig())
    voice = synth.synthesize("abcdefghij")
    stream = np.concatenate([zeros(1000), voice, zeros(1000)])
    events = []
    for i in range(0, stream.size, 960):
        events += buffer.append(stream[i : i + 960])
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped]
    started, stopped = events
    assert isinstance(started, SpeechStarted) and isinstance(stopped, SpeechStopped)
    assert started.start_ms == stopped.start_ms == 700
    assert stopped.audio.size == (stopped.end_ms - stopped.start_ms) * RATE // 1000
    assert np.array_equal(stopped.audio, stream[700 * 24 : stopped.end_ms * 24])
    assert buffer.buffered_ms == buffer.position_ms - stopped.end_ms  # the rest stays buffered


def test_manual_commit_takes_everything() -> None:
    buffer = InputAudioBuffer(RATE, None)
    audio = synth.synthesize("hello")
    assert buffer.append(audio) == []
    start, end, taken = buffer.commit()
    assert (start, end) == (0, 350) and np.array_equal(taken, audio)
    assert buffer.buffered_ms == 0
    buffer.append(audio)
    assert buffer.commit()[:2] == (350, 700)  # the session clock keeps counting


def test_clear_and_reconfigure_keep_the_clock() -> None:
    buffer = InputAudioBuffer(RATE, None)
    buffer.append(zeros(500))
    buffer.clear()
    assert buffer.buffered_ms == 0 and buffer.position_ms == 500
    buffer.reconfigure(8000, VadConfig())
    buffer.append(zeros(250, 8000))
    assert buffer.position_ms == 750 and buffer.sample_rate == 8000


def test_idle_audio_is_bounded() -> None:
    buffer = InputAudioBuffer(RATE, VadConfig(), max_idle_ms=1000)
    for _ in range(100):
        buffer.append(zeros(100))
    assert buffer.buffered_ms <= 2000
    assert buffer.position_ms == 10_000
