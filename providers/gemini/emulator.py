"""A local Gemini Live (``BidiGenerateContent``) server, good enough for google-genai, the relay and load tests.

    async with GeminiEmulator(tls=True) as emulator:
        client = genai.Client(api_key="k", http_options={
            "base_url": emulator.base_url, "api_version": "v1beta",
            "async_client_args": {"ssl": emulator.ssl_context_for_clients()}})
        async with client.aio.live.connect(model="gemini-live-2.5-flash-preview", config=...) as session:
            ...

What it speaks (reference/protocols-openai-gemini.md §2 and the §3.3 checklist):

* ``…/ws/google.ai.generativelanguage.{v1,v1beta,v1alpha}.GenerativeService.BidiGenerateContent``
  (and ``…Constrained``) under any prefix, ``/healthz`` answers 200; the key in ``x-goog-api-key``,
  ``?key=``, ``Authorization: Token …`` or ``?access_token=``. With ``api_key`` set, a wrong key is
  refused after ``setup`` by close 1007 (missing: 1008), as the service does.
* ``setup`` first (or ``config``), snake_case or camelCase anywhere; ``setupComplete``; every server
  message is JSON in a binary frame with camelCase keys. ``tls=True`` serves ``wss`` with a
  self-signed certificate (`providers.emulation.tls`) that `ssl_context_for_clients` trusts.
* Turns by energy VAD (16 kHz) or by ``activityStart``/``activityEnd``, with interruption; answers,
  usage and the message sequence are in `emulator_turn`, the socket's handling in `emulator_connection`.
* Resumption: a ``sessionResumptionUpdate`` after each turn; a setup with a known handle continues
  that conversation. `send_go_away` (or the fault ``go_away_after_events``) announces the end of the
  current connections and closes them ``time_left_ms`` later (1011, "Deadline expired …").
* Faults for tests: ``emulator.faults`` or ``?emulator_faults=…`` (`GeminiFaults`); ``error_on_response``
  closes the socket with 1011 and the given reason when a turn would start.

Run it as its own process: ``python -m providers.gemini.emulator --port 8766``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from providers.emulation.faults import Faults
from providers.emulation.server import DEFAULT_WAIT_S, EmulatorServer
from providers.emulation.tls import self_signed
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
        if speed < 0:
            raise ValueError(f"speed must be >= 0; got {speed}")
        self._tls = self_signed() if tls else None
        super().__init__(
            host=host,
            port=port,
            faults=faults,
            record=record,
            ssl=self._tls.server_context() if self._tls is not None else None,
        )
        self.speed = speed
        self.chunk_ms = chunk_ms
        self.api_key = api_key
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
        return f"GeminiEmulator({where}, speed={self.speed}, tls={self._tls is not None})"

    @property
    def base_url(self) -> str:
        """What to pass as ``GeminiProvider(base_url=...)`` or the SDK's ``http_options["base_url"]``."""
        return f"{self.http_scheme}://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint (API version v1beta)."""
        return f"{self.ws_scheme}://{self.host}:{self.port}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"

    @property
    def ca_pem_path(self) -> Path:
        """The self-signed certificate as a PEM file (for ``SSL_CERT_FILE``); only with ``tls=True``."""
        if self._tls is None:
            raise RuntimeError("this emulator was started without tls=True")
        return self._tls.ca_file

    def ssl_context_for_clients(self) -> ssl.SSLContext:
        """A client context that trusts this emulator's certificate; only with ``tls=True``."""
        if self._tls is None:
            raise RuntimeError("this emulator was started without tls=True")
        return self._tls.client_context()

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

    async def wait_for_event(
        self,
        type: str,
        timeout: float = DEFAULT_WAIT_S,  # noqa: ASYNC109 - the helper's documented signature
        *,
        count: int = 1,
    ) -> dict[str, Any]:
        """The ``count``-th client message labelled ``type`` (``setup``, ``realtimeInput.audio``, …) on the
        most recent connection (waiting for both if needed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conn = self.connections[-1] if self.connections else await self.wait_for_connection(1, timeout)
        return await conn.wait_for_event(type, max(0.0, deadline - loop.time()), count=count)


# -- command line -------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m providers.gemini.emulator", description="Serve a local Gemini Live emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port (printed at start)")
    parser.add_argument("--speed", type=float, default=1.0, help="output pacing x real time; 0 = unpaced")
    parser.add_argument("--chunk-ms", type=int, default=40, help="audio per serverContent.modelTurn message")
    parser.add_argument("--api-key", default=None, help="accept only this key (default: any key)")
    parser.add_argument("--tls", action="store_true", help="serve wss with a self-signed certificate (printed)")
    parser.add_argument("--faults", default="", help="e.g. delay_ms:5,go_away_after_events:100 (every connection)")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    emulator = GeminiEmulator(
        host=args.host,
        port=args.port,
        speed=args.speed,
        chunk_ms=args.chunk_ms,
        api_key=args.api_key,
        faults=GeminiFaults.parse(args.faults),
        record=False,  # a long-running process must not keep every message
        tls=args.tls,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    async with emulator:
        extra = f", CA certificate {emulator.ca_pem_path}" if args.tls else ""
        print(f"Gemini Live emulator listening on {emulator.ws_url} (speed {emulator.speed}{extra})", flush=True)
        await stop.wait()
    print("Gemini Live emulator stopped", flush=True)


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
