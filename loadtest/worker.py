"""A load-client process: runs its share of a phase's sessions in one event loop.

    python -m loadtest.worker        (started by the orchestrator; speaks JSON lines on stdin/stdout)

Protocol with the orchestrator (one JSON object per line):

* stdin ``WorkerSpec`` → the worker reads and encodes the recording, then prints ``{"type": "ready"}``;
* stdin ``{"t0": <monotonic seconds>}`` → the shared start (CLOCK_MONOTONIC is one clock for every
  process on the machine, so all workers ramp on one schedule);
* stdout ``{"type": "progress", ...}`` every ``progress_s`` while running;
* stdout ``{"type": "result", "tally": ...}`` once, at the end.

Session ``i`` of ``N`` starts at ``t0 + ramp_s * i / N``; the measurement window is
``[t0 + ramp_s, t0 + ramp_s + duration_s]`` and every session stops at its end. Several workers
split one phase by session index (``i % procs``), so the ramp stays one smooth ramp.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from loadtest.dialects import Dialect, DirectDialect, RelayDialect
from loadtest.pacing import FRAME_MS
from loadtest.recording import load, parse_format, provider_format
from loadtest.session import CLOSE_WAIT_S, CONNECT_TIMEOUT_S, LoadSession, Script
from loadtest.tally import Tally

# After the stop, sessions get this long to end cleanly before the worker gives up on them.
END_GRACE_S: Final = CONNECT_TIMEOUT_S + 2 * CLOSE_WAIT_S


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    dialect: str  # "relay" | "direct"
    url: str
    sessions: tuple[int, ...]  # global session indices this worker runs
    n_total: int
    ramp_s: float
    duration_s: float
    recording: str
    input_format: str
    output_format: str
    manual: bool
    use_msgpack: bool
    provider: str
    model: str | None
    prebuffer_ms: float
    progress_s: float = 0.5
    use_uvloop: bool = True

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerSpec:
        return cls(**{**data, "sessions": tuple(data["sessions"])})


def make_dialect(spec: WorkerSpec) -> Dialect:
    input_fmt, output_fmt = parse_format(spec.input_format), parse_format(spec.output_format)
    if spec.dialect == "direct":
        return DirectDialect(spec.url, input_fmt=input_fmt, output_fmt=output_fmt, manual=spec.manual)
    return RelayDialect(
        spec.url,
        provider=spec.provider,
        model=spec.model,
        input_fmt=input_fmt,
        output_fmt=output_fmt,
        manual=spec.manual,
        use_msgpack=spec.use_msgpack,
    )


def make_script(spec: WorkerSpec, dialect: Dialect) -> Script:
    """The recording in the wire format this dialect sends, each frame encoded once for all sessions."""
    client_fmt = parse_format(spec.input_format)
    fmt = provider_format(client_fmt) if spec.dialect == "direct" else client_fmt
    recording = load(Path(spec.recording), fmt)
    turns = tuple(tuple(dialect.audio_message(f) for f in recording.turn_frames(t)) for t in recording.turns)
    # Long enough for the echo of the turn to arrive and be played, plus slack for a loaded box.
    timeouts = tuple(5.0 + 2 * len(t) * FRAME_MS / 1000 for t in turns)
    return Script(
        turns=turns,
        silence=dialect.audio_message(recording.silence),
        manual=spec.manual,
        prebuffer_s=spec.prebuffer_ms / 1000,
        listen_timeout_s=timeouts,
    )


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")
    sys.stdout.buffer.flush()


async def _progress(tally: Tally, every_s: float, stop: asyncio.Event) -> None:
    sent = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
        new = tally.first_audio_ms[sent:]
        sent += len(new)
        _emit(
            {
                "type": "progress",
                "open": tally.counts["open"],
                "counts": dict(tally.counts),
                "errors": sum(tally.errors.values()),
                "first_audio_ms": new,
            }
        )


async def _cpu_window(tally: Tally) -> None:
    """This process's CPU time inside the measurement window (both ends sampled on time)."""
    start, end = tally.window
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    cpu0, t0 = time.process_time(), time.monotonic()
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    cpu1, t1 = time.process_time(), time.monotonic()
    # Scale to the nominal window in case the loop woke late at either end.
    tally.cpu_s = (cpu1 - cpu0) * (end - start) / max(1e-9, t1 - t0)


async def run_sessions(spec: WorkerSpec, script: Script, dialect: Dialect, t0: float) -> Tally:
    window = (t0 + spec.ramp_s, t0 + spec.ramp_s + spec.duration_s)
    tally = Tally(window=window)
    sessions = [
        LoadSession(i, dialect, script, tally, t0 + spec.ramp_s * i / spec.n_total, window[1]) for i in spec.sessions
    ]
    stop = asyncio.Event()
    reporter = asyncio.create_task(_progress(tally, spec.progress_s, stop))
    cpu = asyncio.create_task(_cpu_window(tally))
    tasks = [asyncio.create_task(s.run()) for s in sessions]
    limit = window[1] - time.monotonic() + END_GRACE_S
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=max(1.0, limit))
        for task in pending:  # bounded: a session that did not end in time is cancelled and counted
            task.cancel()
            tally.errors["session_stuck_at_end"] += 1
        await asyncio.gather(*pending, return_exceptions=True)
    for task in tasks:
        exc = None if task.cancelled() else task.exception()
        if exc is not None:  # a bug in the harness: count it and show it in the worker's log
            tally.errors[f"client_bug_{type(exc).__name__}"] += 1
            traceback.print_exception(exc, file=sys.stderr)
    stop.set()
    await reporter
    if not cpu.done():
        cpu.cancel()
    return tally


def main() -> int:
    spec = WorkerSpec.from_json(orjson.loads(sys.stdin.buffer.readline()))
    dialect = make_dialect(spec)
    script = make_script(spec, dialect)
    # The prepared frames live for the whole run: keep them out of every garbage collection, so a
    # full collection does not stall all sessions' senders at once (it showed as skipped frames).
    gc.collect()
    gc.freeze()
    _emit({"type": "ready"})
    t0 = float(orjson.loads(sys.stdin.buffer.readline())["t0"])
    coro = run_sessions(spec, script, dialect, t0)
    tally: Tally
    if spec.use_uvloop:
        try:
            import uvloop
        except ImportError:
            tally = asyncio.run(coro)
        else:
            tally = uvloop.run(coro)
    else:
        tally = asyncio.run(coro)
    _emit({"type": "result", "tally": tally.to_json()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
