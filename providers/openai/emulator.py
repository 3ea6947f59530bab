"""A local OpenAI Realtime (GA) server, good enough for the official SDK, the relay and load tests.

    async with OpenAIRealtimeEmulator(speed=0.0) as emulator:
        client = AsyncOpenAI(api_key="sk-test", base_url=emulator.base_url)
        async with client.realtime.connect(model="gpt-realtime") as conn:
            ...

What it speaks (reference/protocols-openai-gemini.md §1 and the §3.3 checklist):

* ``GET …/realtime?model=…`` with or without a ``/v1`` prefix (``/healthz`` answers 200); the
  key in ``Authorization: Bearer`` or in the ``openai-insecure-api-key.<key>`` subprotocol (the
  ``realtime`` subprotocol is selected when offered). With ``api_key`` set, a wrong or missing key
  gets an ``error`` (``invalid_api_key``) and close 3000 ``invalid_request_error.invalid_api_key``.
* ``session.created`` at once; every GA client event (see `emulator_connection`); server VAD on an
  energy detector (`providers.emulation.vad`), barge-in included; audio/pcm 24 kHz, audio/pcmu and
  audio/pcma in and out.
* Answers: an audio turn is echoed back, a text message is read aloud by a deterministic
  synthesizer, a message naming a configured tool gets a function call (`emulator_reply`); the
  event sequence, pacing (``speed`` x real time, 0 = unpaced) and usage are in `emulator_response`.
* Faults for tests: ``emulator.faults`` or ``?emulator_faults=…`` (`providers.emulation.faults`).

Run it as its own process (the load tester does): ``python -m providers.openai.emulator --port 8765``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from typing import Any, Final

from websockets.asyncio.server import ServerConnection

from providers.emulation.faults import Faults
from providers.emulation.server import DEFAULT_WAIT_S, EmulatorServer
from providers.openai.emulator_connection import OpenAIEmulatedConnection

__all__ = ["DEFAULT_PORT", "OpenAIRealtimeEmulator", "main"]

DEFAULT_PORT: Final = 8765
REALTIME_SUBPROTOCOL: Final = "realtime"


class OpenAIRealtimeEmulator(EmulatorServer[OpenAIEmulatedConnection]):
    """The server. ``speed``: output pacing as a multiple of real time (0 = as fast as possible)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 0.0,
        chunk_ms: int = 40,
        api_key: str | None = None,
        faults: Faults | None = None,
        record: bool = True,
    ) -> None:
        if chunk_ms <= 0:
            raise ValueError(f"chunk_ms must be positive; got {chunk_ms}")
        if speed < 0:
            raise ValueError(f"speed must be >= 0; got {speed}")
        super().__init__(host=host, port=port, faults=faults, record=record)
        self.speed = speed
        self.chunk_ms = chunk_ms
        self.api_key = api_key

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self._server is not None else "stopped"
        return f"OpenAIRealtimeEmulator({where}, speed={self.speed}, chunk_ms={self.chunk_ms})"

    @property
    def base_url(self) -> str:
        """What to pass to ``AsyncOpenAI(base_url=...)``."""
        return f"{self.http_scheme}://{self.host}:{self.port}/v1"

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint (add ``?model=...``)."""
        return f"{self.ws_scheme}://{self.host}:{self.port}/v1/realtime"

    def accepts_path(self, path: str) -> bool:
        return path.rstrip("/").endswith("/realtime")

    def select_subprotocol(self, offered: Sequence[str]) -> str | None:
        return REALTIME_SUBPROTOCOL if REALTIME_SUBPROTOCOL in offered else None

    def create_connection(self, ws: ServerConnection, faults: Faults) -> OpenAIEmulatedConnection:
        return OpenAIEmulatedConnection(
            ws, faults, record=self.record, speed=self.speed, chunk_ms=self.chunk_ms, api_key=self.api_key
        )

    async def wait_for_event(
        self,
        type: str,
        timeout: float = DEFAULT_WAIT_S,  # noqa: ASYNC109 - the helper's documented signature
        *,
        count: int = 1,
    ) -> dict[str, Any]:
        """The ``count``-th client event of ``type`` on the most recent connection (waiting for both if needed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conn = self.connections[-1] if self.connections else await self.wait_for_connection(1, timeout)
        return await conn.wait_for_event(type, max(0.0, deadline - loop.time()), count=count)


# -- command line -------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m providers.openai.emulator", description="Serve a local OpenAI Realtime (GA) emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port (printed at start)")
    parser.add_argument("--speed", type=float, default=1.0, help="output pacing x real time; 0 = unpaced")
    parser.add_argument("--chunk-ms", type=int, default=40, help="audio per response.output_audio.delta")
    parser.add_argument("--api-key", default=None, help="accept only this key (default: any key)")
    parser.add_argument("--faults", default="", help="e.g. delay_ms:5,drop_after_events:100 (for every connection)")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    emulator = OpenAIRealtimeEmulator(
        host=args.host,
        port=args.port,
        speed=args.speed,
        chunk_ms=args.chunk_ms,
        api_key=args.api_key,
        faults=Faults.parse(args.faults),
        record=False,  # a long-running process must not keep every event
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    async with emulator:
        print(f"OpenAI Realtime emulator listening on {emulator.ws_url} (speed {emulator.speed})", flush=True)
        await stop.wait()
    print("OpenAI Realtime emulator stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
