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
import sys
from collections.abc import Sequence
from typing import Final

from websockets.asyncio.server import ServerConnection

from providers.emulation.cli import CommonOptions, EmulatorCommand
from providers.emulation.faults import Faults
from providers.emulation.server import EmulatorServer
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
        super().__init__(host=host, port=port, speed=speed, api_key=api_key, faults=faults, record=record)
        self.chunk_ms = chunk_ms

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self._server is not None else "stopped"
        return f"OpenAIRealtimeEmulator({where}, speed={self.speed}, chunk_ms={self.chunk_ms})"

    @property
    def base_url(self) -> str:
        """What to pass to ``AsyncOpenAI(base_url=...)``."""
        return f"{super().base_url}/v1"

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint (add ``?model=...``)."""
        return f"{self.ws_base_url}/v1/realtime"

    def accepts_path(self, path: str) -> bool:
        return path.rstrip("/").endswith("/realtime")

    def select_subprotocol(self, offered: Sequence[str]) -> str | None:
        return REALTIME_SUBPROTOCOL if REALTIME_SUBPROTOCOL in offered else None

    def create_connection(self, ws: ServerConnection, faults: Faults) -> OpenAIEmulatedConnection:
        return OpenAIEmulatedConnection(
            ws, faults, record=self.record, speed=self.speed, chunk_ms=self.chunk_ms, api_key=self.api_key
        )


# -- command line -------------------------------------------------------------------------------


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chunk-ms", type=int, default=40, help="audio per response.output_audio.delta")


def _build(args: argparse.Namespace, options: CommonOptions) -> OpenAIRealtimeEmulator:
    return OpenAIRealtimeEmulator(**options, chunk_ms=args.chunk_ms)


COMMAND: Final = EmulatorCommand(
    name="OpenAI Realtime emulator",
    module="providers.openai.emulator",
    description="Serve a local OpenAI Realtime (GA) emulator.",
    default_port=DEFAULT_PORT,
    build=_build,
    endpoint=lambda emulator: emulator.ws_url,
    add_arguments=_add_arguments,
)


def main(argv: Sequence[str] | None = None) -> int:
    return COMMAND.main(argv)


if __name__ == "__main__":
    sys.exit(main())
