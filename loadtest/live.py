"""The terminal view while a run goes: one row per phase, redrawn in place with plain ANSI
(cursor-up and erase-line; no curses, no dependency). When stdout is not a terminal (CI, a pipe)
it degrades to plain lines: one when a phase starts, one every ``PLAIN_EVERY_S``, one at its end.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Final, TextIO

from loadtest.stats import quantile

PLAIN_EVERY_S: Final = 5.0
BAR_WIDTH: Final = 16
_HEADER: Final = (
    f"{'phase':<7} {'N':>4}  {'progress':<{BAR_WIDTH + 10}} {'open':>4} {'turns':>5} {'fa p50':>7} {'fa p99':>7} "
    f"{'under':>5} {'late':>5} {'err':>4} │ {'relay':>6} {'RSS':>6} │ {'emu':>6} │ {'client':>6} │ {'box':>5}"
)


@dataclass
class PhaseView:
    target: str
    n: int
    round: int
    ramp_s: float
    duration_s: float
    started_at: float = 0.0  # t0 of the phase (monotonic)
    status: str = "starting"
    open: int = 0
    turns: int = 0
    underruns: int = 0
    skipped: int = 0
    errors: int = 0
    first_audio_ms: list[float] = field(default_factory=list)
    cpu: dict[str, float | None] = field(default_factory=dict)
    rss_mb: float | None = None

    def progress(self, now: float) -> tuple[float, str]:
        if self.status == "done":
            return 1.0, "done"
        if not self.started_at or now < self.started_at:
            return 0.0, self.status
        elapsed = now - self.started_at
        if elapsed < self.ramp_s:
            return 0.0, f"ramp {elapsed:4.1f}s"
        run = min(self.duration_s, elapsed - self.ramp_s)
        if elapsed - self.ramp_s > self.duration_s:
            return 1.0, "closing"
        return run / self.duration_s, f"{run:4.1f}/{self.duration_s:.0f}s"

    def row(self, now: float) -> str:
        fraction, label = self.progress(now)
        filled = round(fraction * BAR_WIDTH)
        bar = f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {label:<8}"
        ordered = sorted(self.first_audio_ms)
        cpu = self.cpu
        return (
            f"{self.target:<7} {self.n:>4}  {bar} {self.open:>4} {self.turns:>5} "
            f"{_ms(quantile(ordered, 0.5))} {_ms(quantile(ordered, 0.99))} {self.underruns:>5} {self.skipped:>5} "
            f"{self.errors:>4} │ {_pct(cpu.get('relay'))} {_mb(self.rss_mb)} │ {_pct(cpu.get('emulator'))} │ "
            f"{_pct(cpu.get('client'))} │ {_pct(cpu.get('machine'), 5)}"
        )


def _ms(value: float | None) -> str:
    return f"{value:7.1f}" if value is not None else f"{'-':>7}"


def _pct(value: float | None, width: int = 6) -> str:
    return f"{value:{width - 1}.0f}%" if value is not None else f"{'-':>{width}}"


def _mb(value: float | None) -> str:
    return f"{value:4.0f}MB" if value is not None else f"{'-':>6}"


class Display:
    def __init__(self, title: str, live: bool | None = None, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.live = self.out.isatty() if live is None else live
        self.title = title
        self.rows: list[PhaseView] = []
        self._drawn = 0
        self._last_plain = 0.0

    def start(self) -> None:
        self.out.write(self.title + "\n")
        if self.live:
            self.out.write(_HEADER + "\n")
        self.out.flush()

    def add(self, view: PhaseView) -> None:
        self.rows.append(view)
        if not self.live:
            self.out.write(f"{view.target} N={view.n}: starting\n")
            self.out.flush()

    def refresh(self) -> None:
        now = time.monotonic()
        if self.live:
            if self._drawn:
                self.out.write(f"\x1b[{self._drawn}F")  # back to the first row drawn last time
            for view in self.rows:
                self.out.write("\x1b[2K" + view.row(now) + "\n")
            self._drawn = len(self.rows)
            self.out.flush()
        elif self.rows and now - self._last_plain >= PLAIN_EVERY_S:
            self._last_plain = now
            self.out.write(self.rows[-1].row(now) + "\n")
            self.out.flush()

    def done(self, view: PhaseView) -> None:
        view.status = "done"
        if self.live:
            self.refresh()
        else:
            self.out.write(view.row(time.monotonic()) + "\n")
            self.out.flush()

    def note(self, text: str) -> None:
        """A line outside the table (a warning); the table is redrawn below it."""
        if self.live and self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0
        self.out.write(text + "\n")
        self.out.flush()
        if self.live:
            self.refresh()
