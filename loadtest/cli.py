"""``python -m loadtest``: N concurrent voice sessions through the relay (and straight to the
emulator with ``--compare``), in real time, with a live table, a JSON report and a PNG.

    python -m loadtest -n 25                                  # 25 sessions through the relay
    python -m loadtest --sweep 25,50,100,200 --compare        # the sweep in docs/performance.md
    python -m loadtest -n 4 --duration 6 --check              # CI smoke: exit 1 on errors or lost audio

By default it starts its own OpenAI Realtime emulator and relay (127.0.0.1, free ports) and stops
them at the end; ``--relay-url`` (and ``--direct-url``) target running ones instead.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from loadtest import report
from loadtest.config import RunConfig
from loadtest.live import Display
from loadtest.orchestrator import Orchestrator
from loadtest.recording import DEFAULT_RECORDING, parse_format
from loadtest.services import start_services

# Every load is bounded: sessions and seconds per phase.
MAX_SESSIONS = 2000
MAX_DURATION_S = 600.0


def _sweep(text: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.split(",") if v.strip())
    if not values or any(not 1 <= v <= MAX_SESSIONS for v in values):
        raise argparse.ArgumentTypeError(f"sessions must be 1..{MAX_SESSIONS}, comma separated")
    return values


def _format(text: str) -> str:
    try:
        parse_format(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    load = parser.add_argument_group("load")
    load.add_argument("-n", "--sessions", type=_sweep, default=(25,), help="concurrent sessions (default 25)")
    load.add_argument("--sweep", type=_sweep, help="several N in one run, e.g. 25,50,100,200 (overrides -n)")
    load.add_argument("--duration", type=float, default=20.0, help="measured seconds per phase, after the ramp")
    load.add_argument("--ramp", type=float, default=5.0, help="seconds over which sessions start (default 5)")
    load.add_argument("--gap", type=float, default=2.0, help="pause between phases (default 2 s)")
    load.add_argument("--compare", action="store_true", help="also run each N straight against the emulator")
    load.add_argument("--rounds", type=int, default=1, help="with --compare: direct/relay pairs per N (2 = A-B-B-A)")
    load.add_argument("--client-procs", type=int, default=1, help="load-client processes sharing the sessions")
    load.add_argument("--no-uvloop", action="store_true", help="run the load client on the stdlib event loop")
    scenario = parser.add_argument_group("scenario")
    scenario.add_argument("--recording", type=Path, default=DEFAULT_RECORDING, help="any file soundfile reads")
    scenario.add_argument("--input", type=_format, default="pcm16/16000", help="client input ENCODING/RATE")
    scenario.add_argument("--output", type=_format, default="pcm16/24000", help="client output ENCODING/RATE")
    scenario.add_argument("--turns", choices=("vad", "manual"), default="vad", help="server VAD or audio.commit")
    scenario.add_argument("--msgpack", action="store_true", help="relay.v1.msgpack framing instead of JSON+binary")
    scenario.add_argument("--provider", default="openai", help="provider the relay sessions ask for")
    scenario.add_argument("--model", help="model for session.start (default: the provider's)")
    scenario.add_argument("--prebuffer-ms", type=float, default=60.0, help="simulated client jitter buffer")
    scenario.add_argument("--emulator-speed", type=float, default=1.0, help="emulator output pace x real time")
    scenario.add_argument(
        "--relay-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a RELAY_* setting for the relay the harness starts (repeatable)",
    )
    target = parser.add_argument_group("targets (default: start an emulator and a relay)")
    target.add_argument("--relay-url", help="an existing relay, e.g. ws://127.0.0.1:8000/v1/session")
    target.add_argument("--relay-pid", type=int, help="its pid, to sample its CPU and memory")
    target.add_argument("--direct-url", help="an existing OpenAI emulator's realtime URL, for --compare")
    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, default=Path("loadtest/results"), help="run directory parent")
    out.add_argument("--json", type=Path, help="report path (default <out>/<stamp>/report.json)")
    out.add_argument("--png", type=Path, help="plot path (default <out>/<stamp>/sweep.png)")
    out.add_argument("--no-png", action="store_true")
    out.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    out.add_argument("--py-spy", action="store_true", help="profile the relay with py-spy in each relay phase")
    out.add_argument(
        "--quiet-below",
        type=float,
        help="shared box: before a phase wait (<= 3 min) until the box is below this CPU %%; "
        "redo a phase (<= 2x) when other work took more than this during it",
    )
    out.add_argument("--from-json", type=Path, help="no run: recompute the figures and plot of a saved report")
    out.add_argument("--check", action="store_true", help="exit 1 on errors, unexpected closes or lost audio")
    return parser


def config_from(args: argparse.Namespace) -> RunConfig:
    sessions: tuple[int, ...] = args.sweep or args.sessions
    if not 0 < args.duration <= MAX_DURATION_S or args.ramp < 0 or args.gap < 0:
        raise SystemExit(f"--duration must be in (0, {MAX_DURATION_S:.0f}] s; --ramp and --gap >= 0")
    if args.compare and args.provider != "openai" and not args.direct_url:
        raise SystemExit("--compare speaks OpenAI Realtime to the emulator: it needs --provider openai")
    if args.compare and args.relay_url and not args.direct_url:
        raise SystemExit("--compare with --relay-url needs --direct-url (the emulator that relay uses)")
    if args.client_procs < 1 or args.rounds < 1:
        raise SystemExit("--client-procs and --rounds must be >= 1")
    return RunConfig(
        sessions=sessions,
        duration_s=args.duration,
        ramp_s=args.ramp,
        gap_s=args.gap,
        compare=args.compare,
        rounds=args.rounds,
        client_procs=args.client_procs,
        recording=args.recording,
        input_format=args.input,
        output_format=args.output,
        manual=args.turns == "manual",
        use_msgpack=args.msgpack,
        provider=args.provider,
        model=args.model,
        prebuffer_ms=args.prebuffer_ms,
        emulator_speed=args.emulator_speed,
        relay_settings=tuple(_setting(item) for item in args.relay_setting),
        relay_url=args.relay_url,
        relay_pid=args.relay_pid,
        direct_url=args.direct_url,
        out_dir=args.out,
        json_path=args.json,
        png_path=None if args.no_png else args.png,
        py_spy=args.py_spy,
        use_uvloop=not args.no_uvloop,
        quiet_below=args.quiet_below,
        live=False if args.plain else None,
    )


def problems(result: dict[str, Any]) -> list[str]:
    """What ``--check`` fails on: functional faults only, never timing."""
    found: list[str] = []
    for phase in result["phases"]:
        where = f"{phase['target']} N={phase['n']}"
        if phase["error_count"]:
            found.append(f"{where}: errors {phase['errors']}")
        if phase["closes"]:
            found.append(f"{where}: unexpected closes {phase['closes']}")
        if phase["delivery"]["lost_responses"]:
            found.append(f"{where}: {phase['delivery']['lost_responses']} responses lost audio")
        if phase["sessions"]["failed"] or phase["worker_failures"]:
            found.append(f"{where}: sessions failed {phase['sessions']['failed']} {phase['worker_failures']}")
        if phase["no_response"]:
            found.append(f"{where}: {phase['no_response']} turns got no answer")
        if not phase["first_audio_ms"]["count"]:
            found.append(f"{where}: no turn was answered")
    return found


def run(config: RunConfig, *, png: bool = True) -> dict[str, Any]:
    """One run, start to finish; returns the report (also written to JSON, and PNG if asked)."""
    run_dir = config.out_dir / time.strftime("%Y%m%d-%H%M%S")
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    targets = "direct and relay" if config.compare else "relay"
    title = (
        f"loadtest: N={','.join(map(str, config.sessions))} · {targets} · {config.ramp_s:.0f} s ramp + "
        f"{config.duration_s:.0f} s · {config.input_format} in, {config.output_format} out · "
        f"turns {'manual' if config.manual else 'server VAD'} · {config.client_procs} client proc(s)"
    )
    display = Display(title, config.live)
    with start_services(
        log_dir=log_dir,
        provider=config.provider,
        model=config.model,
        emulator_speed=config.emulator_speed,
        relay_settings=config.relay_settings,
        max_sessions=config.max_sessions * 2 + 10,
        relay_url=config.relay_url,
        direct_url=config.direct_url,
        need_emulator=config.relay_url is None,  # a relay we start needs one; a given relay has its own
    ) as services:
        display.start()
        orchestrator = Orchestrator(config, services, display, log_dir)
        outcomes = asyncio.run(orchestrator.run())
        series = orchestrator.sampler.series(orchestrator.started)
    result = report.build(config, outcomes, series)
    png_path = (config.png_path or run_dir / "sweep.png") if png else None
    publish(result, config.json_path or run_dir / "report.json", png_path)
    print(f"logs:   {log_dir}")
    return result


def publish(result: dict[str, Any], json_path: Path, png_path: Path | None) -> None:
    """Write the JSON (and the PNG), print the table and the knee."""
    report.write_json(result, json_path)
    print()
    print(report.table(result["sweep"]))
    if result.get("knee") is not None:
        print(report.knee_text(result["knee"]))
    print(f"report: {json_path}")
    if png_path is not None:
        if importlib.util.find_spec("matplotlib") is None:
            print("plot skipped: matplotlib is not installed (pip install matplotlib)")
        else:
            from loadtest import plot

            plot.render(result, png_path)
            print(f"plot:   {png_path}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.from_json is not None:
        result = report.rebuild(orjson.loads(args.from_json.read_bytes()))
        png = None if args.no_png else (args.png or args.from_json.with_name("sweep.png"))
        publish(result, args.json or args.from_json, png)
        return 1 if args.check and problems(result) else 0
    config = config_from(args)
    try:
        result = run(config, png=not args.no_png)
    except KeyboardInterrupt:
        print("interrupted: every process started was stopped", file=sys.stderr)
        return 130
    if args.check:
        found = problems(result)
        for problem in found:
            print(f"check failed: {problem}", file=sys.stderr)
        return 1 if found else 0
    return 0


def _setting(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name.startswith("RELAY_"):
        raise SystemExit(f"--relay-setting takes RELAY_NAME=VALUE, got {item!r}")
    return name, value
