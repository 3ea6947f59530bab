"""An energy voice-activity detector, streaming, over 20 ms windows.

Each window's RMS level is compared with a threshold in dBFS derived from the provider-style
``threshold`` (0..1, default 0.5; see `threshold_dbfs`):

* **onset** — speech starts once ``min_speech_ms`` (100 ms) of windows are above the threshold,
  where a single quiet window inside the onset does not reset it (plosives, short stops);
* **hangover** — during speech a window counts as voiced down to ``HYSTERESIS_DB`` below the
  threshold, so soft word endings do not start the silence clock;
* **end** — speech stops once ``silence_duration_ms`` have passed since the last voiced window;
* **noise floor** — the quietest window of the last ≈ 3 s is taken as the noise floor, and both
  levels are raised to stay 10 dB (onset) and 5 dB (hangover) above it, so steady background noise
  louder than the threshold does not read as endless speech.

Reported positions are absolute sample indices on the stream (since the detector was created or
`reset` to a position), in the provider's convention: a start includes ``prefix_padding_ms`` before
the detected onset (never reaching back before the previous turn's end or the reset point), an end
includes the trailing ``silence_duration_ms``.

Tuned on ``tests/audio``: the within-utterance pauses there are at most ≈ 0.46 s, the pauses between
the turns of ``conversation-3-turns-*.wav`` ≈ 2.3 s, silence is near digital zero and speech sits
between -45 and -12 dBFS; the defaults give one turn per single-utterance file and three turns on the
conversation, also with white noise at -60 dBFS added (tests/emulation/test_vad.py).
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "HYSTERESIS_DB",
    "MIN_SPEECH_MS",
    "WINDOW_MS",
    "EnergyVad",
    "VadConfig",
    "VadEvent",
    "VadEventKind",
    "detect_turns",
    "threshold_dbfs",
]

WINDOW_MS: Final = 20
#: voiced time needed before speech is declared
MIN_SPEECH_MS: Final = 100
#: during speech, windows down to this far below the threshold still count as voiced
HYSTERESIS_DB: Final = 6.0
#: quiet windows tolerated inside an onset before it is abandoned
MAX_ONSET_GAP_WINDOWS: Final = 1
#: the noise floor is the quietest window of the last ``NOISE_BLOCKS`` blocks of ``NOISE_BLOCK_WINDOWS``
#: windows (≈ 3 s); the thresholds rise to stay ``ON_MARGIN_DB``/``OFF_MARGIN_DB`` above it
NOISE_BLOCK_WINDOWS: Final = 25
NOISE_BLOCKS: Final = 6
ON_MARGIN_DB: Final = 10.0
OFF_MARGIN_DB: Final = 5.0
_ON_FACTOR: Final = 10.0 ** (ON_MARGIN_DB / 10.0)
_OFF_FACTOR: Final = 10.0 ** (OFF_MARGIN_DB / 10.0)
#: ``threshold`` 0 → -75 dBFS, 0.5 → -45 dBFS, 1 → -15 dBFS
_DB_AT_ZERO: Final = -75.0
_DB_SPAN: Final = 60.0
_FULL_SCALE: Final = 32768.0
_EMPTY: Final = np.zeros(0, dtype=np.int16)
_EMPTY.flags.writeable = False


def threshold_dbfs(threshold: float) -> float:
    """Map a provider VAD ``threshold`` in 0..1 (clamped) to an RMS level in dBFS."""
    return _DB_AT_ZERO + _DB_SPAN * min(1.0, max(0.0, threshold))


def _mean_square(dbfs: float) -> float:
    amplitude = _FULL_SCALE * math.pow(10.0, dbfs / 20.0)
    return amplitude * amplitude


@dataclass(frozen=True, slots=True)
class VadConfig:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    min_speech_ms: int = MIN_SPEECH_MS


class VadEventKind(enum.Enum):
    SPEECH_STARTED = "speech_started"
    SPEECH_STOPPED = "speech_stopped"


@dataclass(frozen=True, slots=True)
class VadEvent:
    kind: VadEventKind
    #: absolute sample index: for a start, where the turn's audio begins (prefix padding included);
    #: for a stop, where it ends (trailing silence included)
    sample: int


class EnergyVad:
    """Feed int16 samples with `process`; get speech started/stopped events back."""

    __slots__ = (
        "_block_count",
        "_block_min",
        "_blocks",
        "_carry",
        "_config",
        "_floor",
        "_gap",
        "_history_min",
        "_in_speech",
        "_last_voiced_end",
        "_off_level",
        "_on_level",
        "_onset_start",
        "_onset_voiced",
        "_position",
        "_prefix",
        "_rate",
        "_silence",
        "_voiced_needed",
        "_window",
    )

    def __init__(self, sample_rate: int, config: VadConfig | None = None, *, position: int = 0) -> None:
        if sample_rate <= 0 or sample_rate * WINDOW_MS % 1000:
            raise ValueError(f"sample rate must give whole {WINDOW_MS} ms windows; got {sample_rate}")
        self._rate = sample_rate
        self._window = sample_rate * WINDOW_MS // 1000
        self._config = config or VadConfig()
        db = threshold_dbfs(self._config.threshold)
        # levels are compared as window energies (sum of squares): no division per window
        self._on_level = _mean_square(db) * self._window
        self._off_level = _mean_square(db - HYSTERESIS_DB) * self._window
        self._prefix = self._config.prefix_padding_ms * sample_rate // 1000
        self._silence = max(self._window, self._config.silence_duration_ms * sample_rate // 1000)
        self._voiced_needed = max(1, math.ceil(self._config.min_speech_ms / WINDOW_MS))
        self._carry = _EMPTY
        self._blocks: deque[float] = deque(maxlen=NOISE_BLOCKS)
        self._history_min = math.inf
        self._block_min = math.inf
        self._block_count = 0
        self.reset(position)

    @property
    def config(self) -> VadConfig:
        return self._config

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def position(self) -> int:
        """Absolute index of the next sample `process` expects."""
        return self._position + self._carry.size

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def reset(self, position: int | None = None) -> None:
        """Forget any speech in progress; continue counting from ``position`` (default: where we are).

        The noise-floor history is kept: the room did not change.
        """
        self._position = self.position if position is None else position
        self._carry = _EMPTY
        self._floor = self._position
        self._in_speech = False
        self._onset_start: int | None = None
        self._onset_voiced = 0
        self._gap = 0
        self._last_voiced_end = self._position

    def process(self, samples: npt.NDArray[np.int16]) -> list[VadEvent]:
        """Consume samples (any length); return the events decided by the complete windows seen."""
        if self._carry.size:
            samples = np.concatenate((self._carry, samples))
        w = self._window
        count = samples.size // w
        self._carry = samples[count * w :].copy() if samples.size > count * w else _EMPTY
        if not count:
            return []
        frames = samples[: count * w].reshape(count, w).astype(np.float64)
        levels = np.einsum("ij,ij->i", frames, frames)
        events: list[VadEvent] = []
        for level in levels.tolist():
            start = self._position
            end = start + w
            self._position = end
            floor = self._track_floor(level)
            if self._in_speech:
                if level >= self._off_level and level >= floor * _OFF_FACTOR:
                    self._last_voiced_end = end
                elif end - self._last_voiced_end >= self._silence:
                    events.append(VadEvent(VadEventKind.SPEECH_STOPPED, end))
                    self._in_speech = False
                    self._floor = end
                    self._onset_start = None
            elif level >= self._on_level and level >= floor * _ON_FACTOR:
                if self._onset_start is None:
                    self._onset_start = start
                    self._onset_voiced = 0
                self._onset_voiced += 1
                self._gap = 0
                if self._onset_voiced >= self._voiced_needed:
                    self._in_speech = True
                    self._last_voiced_end = end
                    events.append(
                        VadEvent(VadEventKind.SPEECH_STARTED, max(self._floor, self._onset_start - self._prefix))
                    )
            elif self._onset_start is not None:
                self._gap += 1
                if self._gap > MAX_ONSET_GAP_WINDOWS:
                    self._onset_start = None
        return events

    def _track_floor(self, level: float) -> float:
        if level < self._block_min:
            self._block_min = level
        self._block_count += 1
        floor = min(self._history_min, self._block_min)
        if self._block_count == NOISE_BLOCK_WINDOWS:
            self._blocks.append(self._block_min)
            self._history_min = min(self._blocks)
            self._block_min = math.inf
            self._block_count = 0
        return floor

    def ms(self, sample: int) -> int:
        return sample * 1000 // self._rate


def detect_turns(
    samples: npt.NDArray[np.int16], sample_rate: int, config: VadConfig | None = None
) -> list[tuple[int, int]]:
    """Offline helper: the (start_ms, end_ms) of every turn in a recording, as a stream would see it.

    A turn still open at the end of the recording ends there.
    """
    vad = EnergyVad(sample_rate, config)
    turns: list[tuple[int, int]] = []
    start: int | None = None
    for event in vad.process(samples):
        if event.kind is VadEventKind.SPEECH_STARTED:
            start = event.sample
        elif start is not None:
            turns.append((vad.ms(start), vad.ms(event.sample)))
            start = None
    if start is not None:
        turns.append((vad.ms(start), vad.ms(samples.size)))
    return turns
