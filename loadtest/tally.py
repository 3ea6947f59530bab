"""What one phase measured: counters, histograms and raw first-audio samples, mergeable across
worker processes and serialisable to JSON.

One `Tally` per worker process is shared by all of its sessions (one event loop, no locks). Timing
figures count only inside the measurement window (after the ramp, before the stop) so the ramp's
connection storm and the closing handshakes do not blur the steady state; errors and closes count
always, because a session refused during the ramp is a failure all the same.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from loadtest.stats import Histogram

COUNTERS = (
    "sessions_opened",
    "sessions_failed",
    "sessions_closed_ok",
    "frames_sent",
    "frames_skipped",
    "audio_messages_received",
    "turns",
    "responses",
    "responses_completed",
    "responses_cancelled",
    "responses_other",
    "early_responses",
    "no_response",
    "underruns",
    "lost_responses",
    "audio_out_reported_ms",
    "audio_received_ms",
)


@dataclass
class Tally:
    window: tuple[float, float] = (0.0, float("inf"))
    counts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # error events and failures, by code
    closes: Counter[str] = field(default_factory=Counter)  # close codes we did not ask for
    first_audio_ms: list[float] = field(default_factory=list)
    lateness_ms: Histogram = field(default_factory=Histogram)  # sender loop lateness per tick
    gap_ms: Histogram = field(default_factory=Histogram)  # arrival gaps between audio messages
    behind_ms: Histogram = field(default_factory=Histogram)  # per response: jitter buffer it needed
    underrun_ms: float = 0.0
    lost_ms: float = 0.0
    cpu_s: float = 0.0  # this process's CPU time inside the window

    def in_window(self, t: float) -> bool:
        return self.window[0] <= t <= self.window[1]

    def merge(self, other: Tally) -> None:
        self.counts.update(other.counts)
        self.errors.update(other.errors)
        self.closes.update(other.closes)
        self.first_audio_ms.extend(other.first_audio_ms)
        self.lateness_ms.merge(other.lateness_ms)
        self.gap_ms.merge(other.gap_ms)
        self.behind_ms.merge(other.behind_ms)
        self.underrun_ms += other.underrun_ms
        self.lost_ms += other.lost_ms
        self.cpu_s += other.cpu_s

    def to_json(self) -> dict[str, Any]:
        return {
            "window": list(self.window),
            "counts": {k: self.counts.get(k, 0) for k in COUNTERS},
            "errors": dict(self.errors),
            "closes": dict(self.closes),
            "first_audio_ms": [round(v, 3) for v in self.first_audio_ms],
            "lateness_ms": self.lateness_ms.to_json(),
            "gap_ms": self.gap_ms.to_json(),
            "behind_ms": self.behind_ms.to_json(),
            "underrun_ms": round(self.underrun_ms, 3),
            "lost_ms": round(self.lost_ms, 3),
            "cpu_s": self.cpu_s,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tally:
        return cls(
            window=(float(data["window"][0]), float(data["window"][1])),
            counts=Counter({k: int(v) for k, v in data["counts"].items()}),
            errors=Counter({k: int(v) for k, v in data["errors"].items()}),
            closes=Counter({k: int(v) for k, v in data["closes"].items()}),
            first_audio_ms=[float(v) for v in data["first_audio_ms"]],
            lateness_ms=Histogram.from_json(data["lateness_ms"]),
            gap_ms=Histogram.from_json(data["gap_ms"]),
            behind_ms=Histogram.from_json(data["behind_ms"]),
            underrun_ms=float(data["underrun_ms"]),
            lost_ms=float(data["lost_ms"]),
            cpu_s=float(data["cpu_s"]),
        )
