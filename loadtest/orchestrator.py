"""A run: start the services, then for each N (and each target) one phase of worker processes,
sampling every process's CPU and memory, and drawing the live table.

Phases are sequential, never concurrent: running the direct and the relay sessions at the same
time would make each the other's load on a 2-core box. With ``--compare`` each N runs a direct
phase and a relay phase back to back, seconds apart, on the same emulator process; ``--rounds 2``
runs them A-B-B-A so that a slow drift of the machine's speed (physical-limits.md: up to 2x within
a run) cancels out of the relay-minus-direct difference instead of landing on one side.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final

import orjson

from loadtest import profile
from loadtest.config import DIRECT, RELAY, RunConfig
from loadtest.live import Display, PhaseView
from loadtest.procstat import CORES, Sampler, machine_ticks
from loadtest.services import Services, die_with_parent
from loadtest.tally import Tally
from loadtest.worker import END_GRACE_S, WorkerSpec

READY_TIMEOUT_S: Final = 60.0
RESULT_LINE_LIMIT: Final = 64 << 20  # a result line carries raw samples and histograms
NOISY_RETRIES: Final = 2
GO_DELAY_S: Final = 0.3  # from "go" to the first session: the workers must all be listening


@dataclass
class PhaseOutcome:
    target: str
    n: int
    round: int
    window: tuple[float, float]
    tally: Tally
    processes: dict[str, Any]
    profile: dict[str, Any] | None = None
    worker_failures: list[str] = field(default_factory=list)


class Orchestrator:
    def __init__(self, config: RunConfig, services: Services, display: Display, log_dir: Path) -> None:
        self.config = config
        self.services = services
        self.display = display
        self.log_dir = log_dir
        self.sampler = Sampler()
        self.started = time.monotonic()
        pids: dict[str, list[int]] = {"harness": [os.getpid()]}
        relay_pid = services.relay.pid if services.relay else config.relay_pid
        if relay_pid is not None:
            pids["relay"] = [relay_pid]
        if services.emulator is not None:
            pids["emulator"] = [services.emulator.pid]
        self.relay_pid = relay_pid
        self.sampler.pids = pids

    async def run(self) -> list[PhaseOutcome]:
        stop = asyncio.Event()
        sampling = asyncio.create_task(self.sampler.run(stop))
        outcomes: list[PhaseOutcome] = []
        try:
            for n in self.config.sessions:
                for round_index in range(self.config.rounds):
                    for target in self.config.targets(round_index):
                        outcomes.append(await self._measured(target, n, round_index, first=not outcomes))
        finally:
            stop.set()
            await sampling
        return outcomes

    async def _measured(self, target: str, n: int, round_index: int, *, first: bool) -> PhaseOutcome:
        """One phase; on a shared box (``quiet_below``) run again, a bounded number of times, while
        other work took more than ``quiet_below`` % CPU during it, and keep the least disturbed run."""
        c = self.config
        best: PhaseOutcome | None = None
        for attempt in range(1 + (NOISY_RETRIES if c.quiet_below is not None else 0)):
            if not first or attempt:
                await asyncio.sleep(c.gap_s)
            if c.quiet_below is not None:
                await self._wait_for_quiet(c.quiet_below, c.quiet_wait_s)
            outcome = await self.phase(target, n, round_index)
            outcome.processes["attempt"] = attempt + 1
            others = others_percent(outcome.processes)
            if best is None or (others is not None and others < (others_percent(best.processes) or 0.0)):
                best = outcome
            if c.quiet_below is None or others is None or others <= c.quiet_below:
                break
            self.display.note(f"{target} N={n}: other work took {others:.0f} % CPU during the phase; again")
        assert best is not None
        return best

    async def _wait_for_quiet(self, below: float, limit_s: float) -> None:
        """On a shared box, start a phase only once other work has calmed down (bounded wait)."""
        deadline = time.monotonic() + limit_s
        told = False
        while True:
            a = machine_ticks()
            await asyncio.sleep(1.0)
            b = machine_ticks()
            busy = 100 * (b[0] - a[0]) / max(1, b[1] - a[1]) * CORES
            if busy < below:
                return
            if not told:
                self.display.note(f"waiting for the box to calm down: {busy:.0f} % busy, want < {below:.0f} %")
                told = True
            if time.monotonic() >= deadline:
                self.display.note(f"warning: the box stayed {busy:.0f} % busy; measuring anyway")
                return

    def _spec(self, target: str, n: int, indices: tuple[int, ...]) -> WorkerSpec:
        c = self.config
        url = self.services.direct_url if target == DIRECT else self.services.relay_url
        if url is None:
            raise RuntimeError(f"no URL to run {target!r} sessions against")
        return WorkerSpec(
            dialect=target,
            url=url,
            sessions=indices,
            n_total=n,
            ramp_s=c.ramp_s,
            duration_s=c.duration_s,
            recording=str(c.recording),
            input_format=c.input_format,
            output_format=c.output_format,
            manual=c.manual,
            use_msgpack=c.use_msgpack,
            provider=c.provider,
            model=c.model,
            prebuffer_ms=c.prebuffer_ms,
            use_uvloop=c.use_uvloop,
        )

    async def phase(self, target: str, n: int, round_index: int) -> PhaseOutcome:
        c = self.config
        view = PhaseView(target, n, round_index, c.ramp_s, c.duration_s)
        self.display.add(view)
        procs = min(c.client_procs, n)
        workers: list[asyncio.subprocess.Process] = []
        logs: list[BinaryIO] = []
        try:
            for k in range(procs):
                log = _open_log(self.log_dir / f"worker-{target}-{n}-r{round_index}-{k}.log")
                logs.append(log)
                worker = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "loadtest.worker",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log,
                    limit=RESULT_LINE_LIMIT,
                    preexec_fn=die_with_parent,
                )
                workers.append(worker)
                indices = tuple(range(k, n, procs))
                assert worker.stdin is not None
                worker.stdin.write(self._spec(target, n, indices).to_json() + b"\n")
                await worker.stdin.drain()
            self.sampler.pids["client"] = [w.pid for w in workers]
            await asyncio.wait_for(asyncio.gather(*(_expect_ready(w) for w in workers)), READY_TIMEOUT_S)
            t0 = time.monotonic() + GO_DELAY_S
            window = (t0 + c.ramp_s, t0 + c.ramp_s + c.duration_s)
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.write(orjson.dumps({"t0": t0}) + b"\n")
                await worker.stdin.drain()
            view.started_at = t0
            view.status = "running"
            profiling = None
            if c.py_spy and target == RELAY and self.relay_pid is not None:
                out = self.log_dir / f"relay-N{n}-r{round_index}.pyspy.txt"
                profiling = asyncio.create_task(self._profile(window, out))
            tallies = await self._collect(workers, view, window)
            tally = Tally(window=window)
            failures: list[str] = []
            for k, (worker, result) in enumerate(zip(workers, tallies, strict=True)):
                if result is None:
                    failures.append(f"worker {k} (pid {worker.pid}) gave no result; see {logs[k].name}")
                else:
                    tally.merge(result)
            processes = self.sampler.window(*window)
            processes["client_cpu_percent_exact"] = round(100 * tally.cpu_s / c.duration_s, 1)
            profiled = await profiling if profiling is not None else None
        finally:
            for worker in workers:
                await _stop_worker(worker)
            for log in logs:
                log.close()
            self.sampler.pids.pop("client", None)
        self.display.done(view)
        for failure in failures:
            self.display.note(f"warning: {failure}")
        return PhaseOutcome(target, n, round_index, window, tally, processes, profiled, failures)

    async def _profile(self, window: tuple[float, float], out: Path) -> dict[str, Any] | None:
        await asyncio.sleep(max(0.0, window[0] - time.monotonic()))
        assert self.relay_pid is not None
        recorded = await profile.record(self.relay_pid, window[1] - window[0], out)
        result = await asyncio.to_thread(profile.top_self, out) if recorded else None
        if result is None:
            self.display.note("warning: py-spy did not record the relay (not installed, or not permitted)")
        return result

    async def _collect(
        self, workers: list[asyncio.subprocess.Process], view: PhaseView, window: tuple[float, float]
    ) -> list[Tally | None]:
        """Read every worker's progress and result lines, refreshing the view; bounded in time."""
        progress: dict[int, dict[str, Any]] = {}
        results: list[Tally | None] = [None] * len(workers)

        async def read(k: int, worker: asyncio.subprocess.Process) -> None:
            assert worker.stdout is not None
            while line := await worker.stdout.readline():
                message = orjson.loads(line)
                if message.get("type") == "progress":
                    progress[k] = message
                    view.first_audio_ms.extend(message["first_audio_ms"])
                elif message.get("type") == "result":
                    results[k] = Tally.from_json(message["tally"])

        async def render() -> None:
            while True:
                counts = [p["counts"] for p in progress.values()]
                view.open = sum(p["open"] for p in progress.values())
                view.turns = sum(cnt.get("turns", 0) for cnt in counts)
                view.underruns = sum(cnt.get("underruns", 0) for cnt in counts)
                view.skipped = sum(cnt.get("frames_skipped", 0) for cnt in counts)
                view.errors = sum(p["errors"] for p in progress.values())
                view.cpu = self.sampler.latest_percent()
                latest = self.sampler.samples[-1] if self.sampler.samples else None
                rss = latest.rss.get("relay") if latest is not None else None
                view.rss_mb = rss / 2**20 if rss is not None else None
                self.display.refresh()
                await asyncio.sleep(0.5)

        drawing = asyncio.create_task(render())
        limit = window[1] - time.monotonic() + END_GRACE_S + 30
        try:
            await asyncio.wait_for(asyncio.gather(*(read(k, w) for k, w in enumerate(workers))), limit)
        except TimeoutError:
            self.display.note("warning: workers did not finish in time; stopping them")
        finally:
            drawing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drawing
        return results


def _open_log(path: Path) -> BinaryIO:
    return open(path, "wb")  # closed by the phase's finally


def others_percent(processes: dict[str, Any]) -> float | None:
    """CPU % the run cannot account for in a phase window: the box minus every process we sampled."""
    cpu = processes.get("cpu_percent") or {}
    machine = cpu.get("machine")
    if machine is None:
        return None
    client = processes.get("client_cpu_percent_exact")
    ours = [
        cpu.get("relay"),
        cpu.get("emulator"),
        cpu.get("harness"),
        client if client is not None else cpu.get("client"),
    ]
    return max(0.0, float(machine) - sum(float(v) for v in ours if v is not None))


async def _expect_ready(worker: asyncio.subprocess.Process) -> None:
    assert worker.stdout is not None
    line = await worker.stdout.readline()
    if not line or orjson.loads(line).get("type") != "ready":
        raise RuntimeError(f"load worker {worker.pid} failed to start (see its log)")


async def _stop_worker(worker: asyncio.subprocess.Process) -> None:
    """Close its stdin, let it exit; terminate, then kill, this one pid if it does not."""
    if worker.stdin is not None:
        worker.stdin.close()
    try:
        await asyncio.wait_for(worker.wait(), 5.0)
        return
    except TimeoutError:
        pass
    with contextlib.suppress(ProcessLookupError):
        worker.terminate()
    try:
        await asyncio.wait_for(worker.wait(), 5.0)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            worker.kill()
        await worker.wait()
