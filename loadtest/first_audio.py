"""Relay-added latency to the first audio byte: the same manual turn, straight to the OpenAI
emulator and through the relay, alternating, in one run.

    python -m loadtest.first_audio --turns 30

Starts the emulator and the relay as their own processes (so the measuring client does not share
their event loop), then for each turn measures the time from the end of the user's turn (commit)
to the first byte of answer audio. The difference of the two is what the relay adds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from websockets.asyncio.client import connect

from audiocodecs.files import read_pcm16

SPEECH = Path(__file__).resolve().parent.parent / "tests" / "audio" / "weather-paris-en-16k.wav"
FRAME_BYTES = 960  # 20 ms at 24 kHz pcm16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def _process(args: list[str], env: dict[str, str], health: str) -> Iterator[None]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(health, timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{args[0]} did not start") from None
                time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def _paced(frames: list[bytes]) -> AsyncIterator[bytes]:
    """Frames at real-time pace, as a microphone sends them (no backlog at the end of the turn)."""
    start = time.perf_counter()
    for i, frame in enumerate(frames):
        delay = start + i * 0.02 - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        yield frame


async def direct_turn(url: str, frames: list[bytes]) -> float:
    async with connect(url, additional_headers={"Authorization": "Bearer k"}, compression=None, max_queue=None) as ws:
        await ws.recv()  # session.created
        update = {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
        }
        await ws.send(orjson.dumps(update).decode())
        while orjson.loads(await ws.recv())["type"] != "session.updated":
            pass
        async for frame in _paced(frames):
            payload = {"type": "input_audio_buffer.append", "audio": base64.b64encode(frame).decode()}
            await ws.send(orjson.dumps(payload).decode())
        await ws.send('{"type":"input_audio_buffer.commit"}')
        await ws.send('{"type":"response.create"}')
        t0 = time.perf_counter()
        while True:
            event = orjson.loads(await ws.recv())
            if event["type"] == "response.output_audio.delta":
                return time.perf_counter() - t0


async def relay_turn(url: str, frames: list[bytes]) -> float:
    async with connect(url, subprotocols=["relay.v1.json"], compression=None, max_queue=None) as ws:  # type: ignore[list-item]
        start = {
            "type": "session.start",
            "provider": "openai",
            "turn_detection": "manual",
            "input_audio": {"encoding": "pcm16", "sample_rate": 24000, "channels": 1},
            "output_audio": {"encoding": "pcm16", "sample_rate": 24000, "channels": 1},
        }
        await ws.send(orjson.dumps(start).decode())
        await ws.recv()  # session.started
        async for frame in _paced(frames):
            await ws.send(frame)
        await ws.send('{"type":"audio.commit"}')
        t0 = time.perf_counter()
        while True:
            message = await ws.recv()
            if isinstance(message, bytes):
                return time.perf_counter() - t0


def _summary(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"{name:>7}: p50 {statistics.median(ms):6.2f} ms  p95 {p95:6.2f} ms  max {ms[-1]:6.2f} ms  (n={len(ms)})"


async def _measure(
    turns: int, emulator_url: str, relay_url: str, frames: list[bytes]
) -> tuple[list[float], list[float]]:
    direct: list[float] = []
    relayed: list[float] = []
    for _ in range(turns):
        direct.append(await direct_turn(emulator_url, frames))
        relayed.append(await relay_turn(relay_url, frames))
    return direct, relayed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--turn-ms", type=int, default=1000, help="length of each user turn (paced in real time)")
    args = parser.parse_args(argv)
    pcm = read_pcm16(SPEECH, 24000).tobytes()
    frames = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]
    frames = frames[: max(5, args.turn_ms // 20)]
    emu_port, relay_port = free_port(), free_port()
    env = {**os.environ, "RELAY_LOG_LEVEL": "warning"}
    bindir = Path(sys.executable).parent
    emulator = [sys.executable, "-m", "providers.openai.emulator", "--port", str(emu_port), "--speed", "0"]
    relay = [str(bindir / "realtime-relay"), "serve", "--port", str(relay_port)]
    relay_env = {**env, "OPENAI_API_KEY": "k", "OPENAI_BASE_URL": f"http://127.0.0.1:{emu_port}/v1"}
    with (
        _process(emulator, env, f"http://127.0.0.1:{emu_port}/healthz"),
        _process(relay, relay_env, f"http://127.0.0.1:{relay_port}/healthz"),
    ):
        direct, relayed = asyncio.run(
            _measure(
                args.turns,
                f"ws://127.0.0.1:{emu_port}/v1/realtime?model=gpt-realtime",
                f"ws://127.0.0.1:{relay_port}/v1/session",
                frames,
            )
        )
    print(
        f"commit -> first audio byte, manual {args.turn_ms} ms turns paced in real time, "
        "24 kHz pcm16 both ends, emulator unpaced"
    )
    print(_summary("direct", direct))
    print(_summary("relay", relayed))
    added = sorted((r - d) * 1000 for d, r in zip(direct, relayed, strict=True))
    print(f"  added: p50 {statistics.median(added):6.2f} ms (paired per turn)")


if __name__ == "__main__":
    main()
