"""Latency statistics: a mergeable log-bucket histogram and quantiles of raw samples.

Per-frame figures (sender lateness, inter-frame gaps) come in at 50 per second per session, so they
go into a `Histogram` (fixed memory, mergeable across sessions and worker processes, serialisable
as a sparse dict). Per-turn figures (first audio) are few enough to keep raw, which lets the report
draw an exact CDF and pair relay with direct quantiles without bucket error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Final

# Bucket i (i >= 1) holds values in [MIN_MS * GROWTH**(i-1), MIN_MS * GROWTH**i); bucket 0 holds
# everything below MIN_MS (including zero and the small negative lateness of an early timer).
# 2 % buckets keep a p99 within 2 % of the truth, which is far below run-to-run noise here.
MIN_MS: Final = 0.01
GROWTH: Final = 1.02
_LOG_GROWTH: Final = math.log(GROWTH)
QUANTILES: Final = (0.5, 0.95, 0.99)


class Histogram:
    """Counts of millisecond values in 2 % log buckets, with exact count, sum and max."""

    __slots__ = ("buckets", "count", "max", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, ms: float) -> None:
        self.count += 1
        self.total += ms
        if ms > self.max:
            self.max = ms
        index = 0 if ms < MIN_MS else int(math.log(ms / MIN_MS) / _LOG_GROWTH) + 1
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + 1

    def merge(self, other: Histogram) -> None:
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n

    def quantile(self, q: float) -> float | None:
        """The upper edge of the bucket holding the q-quantile (never above the exact max)."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                upper = MIN_MS if index == 0 else MIN_MS * GROWTH**index
                return min(upper, self.max)
        return self.max

    def count_above(self, ms: float) -> int:
        """Values in buckets wholly above ``ms`` (a lower bound, within one 2 % bucket)."""
        floor = 0 if ms < MIN_MS else int(math.log(ms / MIN_MS) / _LOG_GROWTH) + 1
        return sum(n for index, n in self.buckets.items() if index > floor)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def summary(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "mean": _round(self.mean),
            "p50": _round(self.quantile(0.5)),
            "p95": _round(self.quantile(0.95)),
            "p99": _round(self.quantile(0.99)),
            "max": _round(self.max if self.count else None),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "min_ms": MIN_MS,
            "growth": GROWTH,
            "count": self.count,
            "total": self.total,
            "max": self.max,
            "buckets": {str(k): v for k, v in sorted(self.buckets.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Histogram:
        hist = cls()
        hist.count = int(data["count"])
        hist.total = float(data["total"])
        hist.max = float(data["max"])
        hist.buckets = {int(k): int(v) for k, v in data["buckets"].items()}
        return hist


def quantile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile of already sorted values (no interpolation: p99 of 50 samples is the max)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def describe(values: Iterable[float]) -> dict[str, Any]:
    """count, mean, p50, p95, p99, max of raw samples (ms), rounded for the report."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    return {
        "count": len(ordered),
        "mean": _round(sum(ordered) / len(ordered)),
        "p50": _round(quantile(ordered, 0.5)),
        "p95": _round(quantile(ordered, 0.95)),
        "p99": _round(quantile(ordered, 0.99)),
        "max": _round(ordered[-1]),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
