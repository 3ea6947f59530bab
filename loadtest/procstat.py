"""CPU and memory of the processes under test, read straight from /proc (no psutil).

`/proc/<pid>/stat` gives user+system CPU in clock ticks (fields 14 and 15, counted after the
parenthesised command name, which may itself hold spaces); `/proc/<pid>/status` gives ``VmRSS``;
the first line of `/proc/stat` gives the whole machine's busy and idle ticks. A `Sampler` reads
them for a set of named processes every ``interval_s`` and keeps the series, so a phase's CPU % is
the tick difference between the samples nearest to its window's ends divided by the time between
them — the same as `top`, without its rounding.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Final

TICKS_PER_S: Final = os.sysconf("SC_CLK_TCK")
CORES: Final = os.cpu_count() or 1


def cpu_ticks(pid: int) -> int | None:
    """user + system ticks of one process; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of the full line)


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def machine_ticks() -> tuple[int, int]:
    """(busy, total) ticks of all cores since boot; steal counts as busy (the VM lost it)."""
    with open("/proc/stat", "rb") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values)
    return total - idle, total


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


@dataclass(slots=True)
class Sample:
    t: float
    ticks: dict[str, int | None]
    rss: dict[str, int | None]
    machine: tuple[int, int]


@dataclass
class Sampler:
    """Samples the named pids; `pids` may change between phases (workers come and go)."""

    interval_s: float = 0.5
    pids: dict[str, list[int]] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    max_samples: int = 20_000  # ≈ 2.8 h at 0.5 s: bounded even if left running

    def sample(self) -> Sample:
        ticks: dict[str, int | None] = {}
        rss: dict[str, int | None] = {}
        for name, pids in self.pids.items():
            per = [cpu_ticks(p) for p in pids]
            known = [t for t in per if t is not None]
            ticks[name] = sum(known) if known else None
            sizes = [r for r in (rss_bytes(p) for p in pids) if r is not None]
            rss[name] = sum(sizes) if sizes else None
        sample = Sample(time.monotonic(), ticks, rss, machine_ticks())
        if len(self.samples) < self.max_samples:
            self.samples.append(sample)
        return sample

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)

    def latest_percent(self) -> dict[str, float | None]:
        """CPU % of each name over the last interval (100 % = one core), for the live table."""
        if len(self.samples) < 2:
            return {}
        return cpu_between(self.samples[-2], self.samples[-1])

    def window(self, start: float, end: float) -> dict[str, Any]:
        """CPU % (mean over the window) and peak RSS of each name; CPU % of the whole ``machine``."""
        inside = [s for s in self.samples if start - self.interval_s <= s.t <= end + self.interval_s]
        if len(inside) < 2:
            return {}
        first = min(inside, key=lambda s: abs(s.t - start))
        last = min(inside, key=lambda s: abs(s.t - end))
        if last.t <= first.t:
            return {}
        result: dict[str, Any] = {"cpu_percent": cpu_between(first, last), "rss_max_bytes": {}}
        for name in last.rss:
            sizes = [r for s in inside if (r := s.rss.get(name)) is not None]
            result["rss_max_bytes"][name] = max(sizes) if sizes else None
        result["seconds"] = round(last.t - first.t, 3)
        return result

    def series(self, since: float) -> list[dict[str, Any]]:
        """The samples after ``since`` as CPU % per interval, for the JSON report."""
        out: list[dict[str, Any]] = []
        previous: Sample | None = None
        for s in self.samples:
            if s.t < since:
                previous = s
                continue
            if previous is not None:
                out.append({"t": round(s.t - since, 3), "cpu_percent": cpu_between(previous, s), "rss": s.rss})
            previous = s
        return out


def cpu_between(a: Sample, b: Sample) -> dict[str, float | None]:
    seconds = b.t - a.t
    out: dict[str, float | None] = {}
    for name, end in b.ticks.items():
        start = a.ticks.get(name)
        if start is None or end is None or seconds <= 0 or end < start:  # end < start: a pid set changed
            out[name] = None
        else:
            out[name] = round(100 * (end - start) / TICKS_PER_S / seconds, 1)
    busy = b.machine[0] - a.machine[0]
    total = b.machine[1] - a.machine[1]
    out["machine"] = round(100 * busy / total * CORES, 1) if total else None
    return out
