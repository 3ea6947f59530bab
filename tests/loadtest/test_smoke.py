"""CI smoke test of the load harness: a few real sessions through a real relay and emulator.

It fails on functional faults only — an error event, a refused or unexpectedly closed session, a
turn without an answer, a completed response that delivered less audio than it reported (minus one
frame) — and never on timing, which depends on the machine running CI.
"""

from __future__ import annotations

from pathlib import Path

from loadtest.cli import build_parser, config_from, problems, run


def test_four_sessions_through_the_relay(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["-n", "4", "--duration", "6", "--ramp", "1", "--gap", "0", "--plain", "--no-png", "--out", str(tmp_path)]
    )
    result = run(config_from(args), png=False)

    assert problems(result) == []
    (phase,) = result["phases"]
    assert phase["target"] == "relay"
    assert phase["sessions"] == {"opened": 4, "failed": 0, "closed_ok": 4}
    assert phase["first_audio_ms"]["count"] >= 4  # every session had at least one turn answered
    assert phase["sender"]["frames_sent"] > 0
    assert phase["delivery"]["audio_received_ms"] > 0
    assert list(tmp_path.glob("*/report.json"))
