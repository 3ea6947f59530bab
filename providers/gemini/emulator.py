"""A local Gemini Live (``BidiGenerateContent``) server, good enough for google-genai, the relay and load tests.

    async with GeminiEmulator(tls=True) as emulator:
        client = genai.Client(api_key="k", http_options={
            "base_url": emulator.base_url, "api_version": "v1beta",
            "async_client_args": {"ssl": emulator.client_ssl_context()}})
        async with client.aio.live.connect(model="gemini-live-2.5-flash-preview", config=...) as session:
            ...

What it speaks (reference/protocols-openai-gemini.md §2 and the §3.3 checklist):

* ``…/ws/google.ai.generativelanguage.{v1,v1beta,v1alpha}.GenerativeService.BidiGenerateContent``
  (and ``…Constrained``) under any prefix, ``/healthz`` answers 200; the key in ``x-goog-api-key``,
  ``?key=``, ``Authorization: Token …`` or ``?access_token=``. With ``api_key`` set, a wrong key is
  refused after ``setup`` by close 1007 (missing: 1008), as the service does.
* ``setup`` first (or ``config``), snake_case or camelCase anywhere; ``setupComplete``; every server
  message is JSON in a binary frame with camelCase keys. ``tls=True`` serves ``wss`` with a
  self-signed certificate (`providers.emulation.tls`) that `client_ssl_context()` trusts.
* Turns by energy VAD (16 kHz) or by ``activityStart``/``activityEnd``, with interruption; answers,
  usage and the message sequence are in `emulator_turn`, the socket's handling in `emulator_connection`.
* Resumption: a ``sessionResumptionUpdate`` after each turn; a setup with a known handle continues
  that conversation. `send_go_away` (or the fault ``go_away_after_events``) announces the end of the
  current connections and closes them ``time_left_ms`` later (1011, "Deadline expired …").
* Faults for tests: ``emulator.faults`` or ``?emulator_faults=…`` (`GeminiFaults`); ``error_on_response``
  closes the socket with 1011 and the given reason when a turn would start. `wait_for_event` knows
  client messages by label (``setup``, ``realtimeInput.audio``, …).

Run it as its own process: ``python -m providers.gemini.emulator --port 8766``.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Sequence
from typing import Final

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from providers.emulation.cli import CommonOptions, EmulatorCommand
from providers.emulation.faults import Faults
from providers.emulation.server import EmulatorServer
from providers.gemini.emulator_connection import GeminiEmulatedConnection, SessionStore
from providers.gemini.emulator_protocol import CLOSE_INTERNAL, GeminiFaults

__all__ = ["DEFAULT_PORT", "LIVE_PATH", "GeminiEmulator", "main"]

DEFAULT_PORT: Final = 8766
#: the BidiGenerateContent path under any prefix (§3.3; the SDK's trailing-slash base URL gives ``//ws``)
LIVE_PATH: Final = re.compile(
    r"(?:/.*)?/+ws/google\.ai\.generativelanguage\.(v1|v1beta|v1alpha)\.GenerativeService\."
    r"BidiGenerateContent(Constrained)?/*"
)
_SPLIT_PATH: Final = re.compile(LIVE_PATH.pattern.replace("(?:/.*)?/+ws/", "/", 1))


class GeminiEmulator(EmulatorServer[GeminiEmulatedConnection]):
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
        tls: bool = False,
        go_away_close_code: int = CLOSE_INTERNAL,
    ) -> None:
        if chunk_ms <= 0:
            raise ValueError(f"chunk_ms must be positive; got {chunk_ms}")
        super().__init__(host=host, port=port, speed=speed, api_key=api_key, faults=faults, record=record, tls=tls)
        self.chunk_ms = chunk_ms
        self.go_away_close_code = go_away_close_code
        #: resumable conversations by handle, shared by every connection
        self.sessions = SessionStore()
        #: connections still open (kept even with ``record=False``, for `send_go_away`)
        self.live: set[GeminiEmulatedConnection] = set()

    # ``faults`` always holds `GeminiFaults`, whatever a test assigns, so per-connection query
    # overrides may name ``go_away_after_events`` too.
    @property
    def faults(self) -> GeminiFaults:
        return self._gemini_faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        self._gemini_faults = GeminiFaults.of(value)

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self._server is not None else "stopped"
        return f"GeminiEmulator({where}, speed={self.speed}, tls={self.tls is not None})"

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint (API version v1beta)."""
        return f"{self.ws_base_url}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"

    def accepts_path(self, path: str) -> bool:
        # The SDK's default base URL ends in "/", so its path starts "//ws/…"; `urlsplit` (in the shared
        # server) reads that "//ws" as a network location and leaves "/google.ai…" as the path.
        return LIVE_PATH.fullmatch(path) is not None or _SPLIT_PATH.fullmatch(path) is not None

    def create_connection(self, ws: ServerConnection, faults: Faults) -> GeminiEmulatedConnection:
        conn = GeminiEmulatedConnection(
            ws,
            faults,
            sessions=self.sessions,
            record=self.record,
            speed=self.speed,
            chunk_ms=self.chunk_ms,
            api_key=self.api_key,
            go_away_close_code=self.go_away_close_code,
        )
        self.live.add(conn)
        ws.connection_lost_waiter.add_done_callback(lambda _: self.live.discard(conn))
        return conn

    async def send_go_away(self, time_left_ms: int = 1_000) -> int:
        """Send ``goAway`` to every open connection, each closed ``time_left_ms`` later. Returns how many."""
        targets = [c for c in self.live if c.setup is not None and not c.dropped and c.ws.state is State.OPEN]
        for conn in targets:
            with contextlib.suppress(Exception):
                await conn.go_away(time_left_ms)
        return len(targets)


# -- command line -------------------------------------------------------------------------------


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chunk-ms", type=int, default=40, help="audio per serverContent.modelTurn message")
    parser.add_argument("--tls", action="store_true", help="serve wss with a self-signed certificate (printed)")


def _build(args: argparse.Namespace, options: CommonOptions) -> GeminiEmulator:
    return GeminiEmulator(**options, chunk_ms=args.chunk_ms, tls=args.tls)


COMMAND: Final = EmulatorCommand(
    name="Gemini Live emulator",
    module="providers.gemini.emulator",
    description="Serve a local Gemini Live emulator.",
    default_port=DEFAULT_PORT,
    build=_build,
    endpoint=lambda emulator: emulator.ws_url,
    add_arguments=_add_arguments,
    faults=GeminiFaults,
    faults_example="delay_ms:5,go_away_after_events:100",
)


def main(argv: Sequence[str] | None = None) -> int:
    return COMMAND.main(argv)


if __name__ == "__main__":
    sys.exit(main())
