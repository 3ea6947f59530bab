"""The energy VAD, tuned on the recordings in tests/audio."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
import soxr

from providers.emulation import synth
from providers.emulation.vad import EnergyVad, VadConfig, VadEventKind, detect_turns, threshold_dbfs
from tests.conftest import AUDIO_DIR

RATE = 24_000


def load(name: str, rate: int = RATE) -> npt.NDArray[np.int16]:
    samples, file_rate = sf.read(AUDIO_DIR / name, dtype="int16")
    if file_rate != rate:
        samples = soxr.resample(samples, file_rate, rate)
    return np.asarray(samples, dtype=np.int16)


def with_tail(samples: npt.NDArray[np.int16], rate: int = RATE, ms: int = 1000) -> npt.NDArray[np.int16]:
    return np.concatenate([samples, np.zeros(rate * ms // 1000, dtype=np.int16)])


def add_noise(samples: npt.NDArray[np.int16], dbfs: float, gain_db: float = 0.0) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(7)
    noise = rng.normal(0.0, 32768 * 10 ** (dbfs / 20), samples.size)
    mixed = samples * 10 ** (gain_db / 20) + noise
    return np.clip(np.round(mixed), -32768, 32767).astype(np.int16)


# Turn boundaries (ms) the defaults find; the recording's pauses between turns are ≈ 2.3 s,
# the longest pause inside a turn ≈ 0.46 s (privet-ru).
CONVERSATION_TURNS = [(920, 6600), (8120, 11180), (12760, 16680)]


@pytest.mark.parametrize("name", ["conversation-3-turns-24k.wav", "conversation-3-turns-16k.wav"])
@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_three_turn_conversation(name: str, rate: int) -> None:
    turns = detect_turns(with_tail(load(name, rate), rate), rate)
    assert turns == CONVERSATION_TURNS


@pytest.mark.parametrize(
    "name", ["hello-book-table-en-16k.wav", "privet-ru-16k.wav", "weather-paris-en-16k.wav", "wiersz-pl-16k.wav"]
)
def test_single_utterances_are_one_turn(name: str) -> None:
    speech = load(name)
    turns = detect_turns(with_tail(speech), RATE)
    assert len(turns) == 1
    start, end = turns[0]
    assert start == 0  # speech starts at once; prefix padding cannot reach before the stream
    assert end - 500 <= speech.size * 1000 // RATE  # ends with the 500 ms of silence that closed it


@pytest.mark.parametrize(("noise_dbfs", "gain_db"), [(-70, 0), (-60, -12), (-50, 0), (-45, 0), (-40, 0)])
def test_robust_to_background_noise_and_level(noise_dbfs: float, gain_db: float) -> None:
    speech = with_tail(load("conversation-3-turns-24k.wav"))
    turns = detect_turns(add_noise(speech, noise_dbfs, gain_db), RATE)
    assert len(turns) == 3
    for (start, end), (ref_start, ref_end) in zip(turns, CONVERSATION_TURNS, strict=True):
        assert abs(start - ref_start) <= 200 and abs(end - ref_end) <= 200


def test_noise_alone_is_not_speech() -> None:
    assert detect_turns(add_noise(np.zeros(RATE * 5, dtype=np.int16), -40), RATE) == []
    assert detect_turns(np.zeros(RATE * 5, dtype=np.int16), RATE) == []


def test_silence_duration_decides_what_a_pause_is() -> None:
    speech = with_tail(load("conversation-3-turns-24k.wav"))
    assert len(detect_turns(speech, RATE, VadConfig(silence_duration_ms=200))) > 3
    assert len(detect_turns(speech, RATE, VadConfig(silence_duration_ms=3000))) == 1


def test_chunking_does_not_change_the_result() -> None:
    speech = with_tail(load("conversation-3-turns-24k.wav"))
    whole = [(e.kind, e.sample) for e in EnergyVad(RATE).process(speech)]
    vad = EnergyVad(RATE)
    chunked = []
    rng = np.random.default_rng(1)
    position = 0
    while position < speech.size:
        size = int(rng.integers(1, 4000))
        chunked += [(e.kind, e.sample) for e in vad.process(speech[position : position + size])]
        position += size
    assert chunked == whole
    assert [k for k, _ in whole] == 3 * [VadEventKind.SPEECH_STARTED, VadEventKind.SPEECH_STOPPED]


def test_positions_are_absolute_and_include_padding_and_silence() -> None:
    tone = synth.synthesize("aaaaaaaaaa")  # 700 ms of voice
    stream = np.concatenate([np.zeros(RATE, dtype=np.int16), tone, np.zeros(RATE, dtype=np.int16)])
    vad = EnergyVad(RATE, VadConfig(prefix_padding_ms=300, silence_duration_ms=500), position=RATE * 10)
    events = vad.process(stream)
    assert [e.kind for e in events] == [VadEventKind.SPEECH_STARTED, VadEventKind.SPEECH_STOPPED]
    start_ms, end_ms = (vad.ms(e.sample) for e in events)
    assert start_ms == 10_000 + 1000 - 300
    assert 10_000 + 1700 + 500 - 40 <= end_ms <= 10_000 + 1700 + 500
    assert vad.position == RATE * 10 + stream.size


def test_threshold_mapping() -> None:
    assert threshold_dbfs(0.5) == -45.0
    assert threshold_dbfs(0.0) < threshold_dbfs(0.9) < threshold_dbfs(1.0) == threshold_dbfs(7.0)
    quiet = (synth.synthesize("hello there") // 16).astype(np.int16)  # ≈ -41 dBFS
    assert detect_turns(with_tail(quiet), RATE, VadConfig(threshold=0.5)) != []
    assert detect_turns(with_tail(quiet), RATE, VadConfig(threshold=0.9)) == []


def test_short_clicks_are_not_speech() -> None:
    click = np.zeros(RATE, dtype=np.int16)
    click[1000 : 1000 + RATE * 60 // 1000] = 10_000  # 60 ms burst, under MIN_SPEECH_MS
    assert detect_turns(click, RATE) == []
