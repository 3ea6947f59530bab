"""The harness's pure parts: statistics, pacing, the playout simulation, turn finding, the knee."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from loadtest.pacing import FrameClock
from loadtest.playout import Playout
from loadtest.recording import DEFAULT_RECORDING, find_turns, parse_format
from loadtest.report import knee
from loadtest.stats import Histogram, describe
from loadtest.tally import Tally


def test_histogram_quantiles_are_within_one_bucket() -> None:
    hist = Histogram()
    for v in range(1, 1001):
        hist.add(float(v))
    for q, exact in ((0.5, 500.0), (0.99, 990.0)):
        value = hist.quantile(q)
        assert value is not None and exact <= value <= exact * 1.021
    assert hist.max == 1000.0
    assert hist.count_above(20.0) >= 979


def test_histogram_round_trips_and_merges() -> None:
    a, b = Histogram(), Histogram()
    a.add(1.0)
    b.add(100.0)
    b.add(-0.5)  # an early timer: counted in the lowest bucket
    a.merge(Histogram.from_json(b.to_json()))
    assert a.count == 3 and a.max == 100.0


def test_describe_uses_nearest_rank() -> None:
    summary = describe([float(v) for v in range(1, 101)])
    assert (summary["p50"], summary["p99"], summary["max"]) == (50.0, 99.0, 100.0)
    assert describe([])["p99"] is None


def test_tally_round_trips() -> None:
    tally = Tally(window=(1.0, 2.0))
    tally.counts["turns"] += 3
    tally.errors["upstream_error"] += 1
    tally.first_audio_ms.append(512.5)
    again = Tally.from_json(tally.to_json())
    assert again.counts["turns"] == 3 and again.errors == tally.errors and again.first_audio_ms == [512.5]


def test_frame_clock_skips_instead_of_bursting() -> None:
    async def scenario() -> list[int]:
        clock = FrameClock(time.monotonic(), period_s=0.01)
        advances = [(await clock.wait())[0]]
        time.sleep(0.035)  # noqa: ASYNC251 - on purpose: a stalled event loop, three more slots pass
        advances.append((await clock.wait())[0])
        advances.append((await clock.wait())[0])
        return advances

    first, after_stall, next_one = asyncio.run(scenario())
    assert first == 1
    assert after_stall >= 3  # the missed slots are skipped in one step, not sent back to back
    assert next_one == 1


def test_playout_counts_gaps_only_when_the_buffer_runs_dry() -> None:
    play = Playout(now=0.0, duration_s=0.04, prebuffer_s=0.06)  # plays 0.06 .. 0.10
    play.feed(0.09, 0.04)  # in time: plays on to 0.14
    assert play.underruns == 0
    play.feed(0.20, 0.04)  # 60 ms after the buffer ran dry
    assert play.underruns == 1 and play.underrun_s == pytest.approx(0.06)
    assert play.behind_max_s == pytest.approx(0.12)  # 0.20 against an ideal arrival at 0.08


def test_turns_of_the_default_recording() -> None:
    turns = find_turns(DEFAULT_RECORDING)
    assert len(turns) == 3
    assert all(end > start for start, end in turns)


def test_format_parsing() -> None:
    assert parse_format("ulaw").sample_rate == 8000
    assert parse_format("pcm16/48000").sample_rate == 48000
    with pytest.raises(ValueError):
        parse_format("opus")


def _row(n: int, added_p99: float, relay_cpu: float) -> dict[str, Any]:
    return {"n": n, "relay": {"cpu_percent": {"relay": relay_cpu}}, "added_ms": {"p99": added_p99}}


def test_knee_is_interpolated_between_sweep_points() -> None:
    rows = [_row(25, 2.0, 10.0), _row(50, 10.0, 20.0), _row(100, 30.0, 40.0)]
    k = knee(rows)
    assert k["absolute"]["n"] == pytest.approx(75.0)  # 10 -> 30 ms between 50 and 100
    assert k["absolute"]["relay_cpu_percent"] == pytest.approx(30.0)
    assert k["absolute"]["sessions_per_relay_core"] == pytest.approx(250.0)
    assert k["over_low_load"]["n"] == pytest.approx(80.0)  # 8 -> 28 ms over the 2 ms at N=25
    assert knee([_row(25, 50.0, 10.0)])["absolute"]["n"] is None
