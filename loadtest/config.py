"""One typed description of a load run, built by the command line (or by a test)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from loadtest.recording import DEFAULT_RECORDING

DIRECT: Final = "direct"
RELAY: Final = "relay"


@dataclass(frozen=True, slots=True)
class RunConfig:
    sessions: tuple[int, ...] = (25,)  # one N, or the sweep's Ns
    duration_s: float = 20.0  # measurement window per phase, after the ramp
    ramp_s: float = 5.0  # sessions start evenly spread over this
    gap_s: float = 2.0  # pause between phases, for sockets to close and CPU to settle
    compare: bool = False  # also run the same N straight against the emulator
    rounds: int = 1  # compare: (direct, relay) pairs per N; odd rounds run relay first
    client_procs: int = 1
    recording: Path = DEFAULT_RECORDING
    input_format: str = "pcm16/16000"
    output_format: str = "pcm16/24000"
    manual: bool = False  # turns ended by audio.commit instead of server VAD
    use_msgpack: bool = False
    provider: str = "openai"
    model: str | None = None  # None: the provider's default (gpt-realtime on the direct URL)
    prebuffer_ms: float = 60.0  # the simulated client's jitter buffer
    emulator_speed: float = 1.0
    relay_settings: tuple[tuple[str, str], ...] = ()  # extra RELAY_* variables for the relay we start
    relay_url: str | None = None  # an existing relay (nothing is started for it)
    relay_pid: int | None = None  # … and its pid, to sample its CPU
    direct_url: str | None = None  # an existing emulator for --compare with --relay-url
    out_dir: Path = Path("loadtest/results")
    json_path: Path | None = None
    png_path: Path | None = None
    py_spy: bool = False  # profile the relay during each relay phase
    use_uvloop: bool = True  # the load client's event loop
    quiet_below: float | None = None  # before each phase, wait until the box's CPU is below this %
    quiet_wait_s: float = 180.0  # … but no longer than this
    live: bool | None = None  # None: live table when stdout is a terminal

    def targets(self, round_index: int) -> tuple[str, ...]:
        if not self.compare:
            return (RELAY,)
        return (DIRECT, RELAY) if round_index % 2 == 0 else (RELAY, DIRECT)

    @property
    def max_sessions(self) -> int:
        return max(self.sessions)
