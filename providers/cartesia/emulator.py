"""A local Cartesia TTS WebSocket server, good enough for the official SDK, the relay and load tests.

    async with CartesiaEmulator(speed=0.0) as emulator:
        provider = CartesiaProvider("sk_car_test", base_url=emulator.base_url)
        client = AsyncCartesia(api_key="sk_car_test", websocket_base_url=emulator.ws_base_url)

What it speaks (reference/protocols-tts-gateways-pricing.md §1 and the §5 checklist):

* ``GET /tts/websocket`` (``/healthz`` answers 200). The key in ``X-API-Key``, ``Authorization:
  Bearer``, ``?api_key=`` or ``?access_token=``; with ``api_key`` set only that key passes, without
  it any non-empty key does. A missing or wrong key is refused at the handshake with 401.
* A ``Cartesia-Version`` header or ``?cartesia_version=`` query (the query wins) is required
  (400 without it). From 2026-03-01 on, handshake refusals and ``error`` events are structured
  JSON (``error_code``, ``title``, ``message``, ``request_id``); before, the legacy shapes.
* ``max_connections`` open sockets at most: the next upgrade gets 429 ``concurrency_limited`` (the
  service allows 10x the plan's concurrency in sockets). ``max_contexts`` active contexts per socket:
  the next context gets an ``error`` 429 ``concurrency_limited``.
* Contexts, text buffering, audio, word timestamps, flushes and cancels: `emulator_connection` and
  `emulator_context`. Output is paced at ``speed`` x real time (0 = as fast as the socket takes it).
* TLS with ``tls=True`` (a self-signed loopback certificate; clients trust it with
  `client_ssl_context()`), and faults for tests: ``emulator.faults`` or ``?emulator_faults=…``.

Run it as its own process (the load tester does): ``python -m providers.cartesia.emulator --port 8767``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import re
import signal
import ssl
import sys
import uuid
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response
from websockets.protocol import State

from providers.cartesia.emulator_connection import CartesiaEmulatedConnection
from providers.cartesia.emulator_request import STRUCTURED_ERRORS_VERSION
from providers.emulation.faults import Faults
from providers.emulation.server import DEFAULT_WAIT_S, EmulatorServer
from providers.emulation.tls import self_signed

__all__ = ["DEFAULT_PORT", "TTS_PATH", "CartesiaEmulator", "main", "requested_version"]

DEFAULT_PORT: Final = 8767
TTS_PATH: Final = "/tts/websocket"
#: Cartesia closes sockets idle this long
IDLE_TIMEOUT_S: Final = 300.0
_VERSION: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


def requested_version(request: Request) -> str | None:
    """The ``Cartesia-Version`` a handshake asks for: the query parameter wins over the header."""
    query = parse_qs(urlsplit(request.path).query)
    values = query.get("cartesia_version") or [request.headers.get("Cartesia-Version", "")]
    return values[0] or None


def _presented_key(request: Request) -> str | None:
    headers = request.headers
    if key := headers.get("X-API-Key"):
        return key
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    query = parse_qs(urlsplit(request.path).query)
    for name in ("api_key", "access_token"):
        if query.get(name):
            return query[name][0]
    return None


class CartesiaEmulator(EmulatorServer[CartesiaEmulatedConnection]):
    """The server. ``speed``: output pacing as a multiple of real time (0 = as fast as possible)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 0.0,
        api_key: str | None = None,
        faults: Faults | None = None,
        record: bool = True,
        tls: bool = False,
        chunk_ms: int = 40,
        max_connections: int | None = None,
        max_contexts: int | None = None,
        idle_timeout_s: float | None = IDLE_TIMEOUT_S,
    ) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0; got {speed}")
        if chunk_ms <= 0:
            raise ValueError(f"chunk_ms must be positive; got {chunk_ms}")
        server_ssl = self_signed().server_context() if tls else None
        super().__init__(host=host, port=port, faults=faults, record=record, ssl=server_ssl)
        self.speed = speed
        self.api_key = api_key
        self.chunk_ms = chunk_ms
        self.max_connections = max_connections
        self.max_contexts = max_contexts
        self.idle_timeout_s = idle_timeout_s
        self._open_sockets: set[ServerConnection] = set()

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self._server is not None else "stopped"
        return f"CartesiaEmulator({where}, speed={self.speed}, chunk_ms={self.chunk_ms})"

    @property
    def base_url(self) -> str:
        """What to pass as `CartesiaProvider`'s ``base_url`` (or the SDK's ``base_url``)."""
        return f"{self.http_scheme}://{self.host}:{self.port}"

    @property
    def ws_base_url(self) -> str:
        """What to pass as the SDK's ``websocket_base_url`` (it would otherwise force ``wss``)."""
        return f"{self.ws_scheme}://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return self.ws_base_url + TTS_PATH

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts this emulator's certificate (``tls=True``)."""
        return self_signed().client_context()

    @property
    def billed_characters(self) -> int:
        """Characters of every accepted request on the recorded connections."""
        return sum(c.billed_characters for c in self.connections)

    def accepts_path(self, path: str) -> bool:
        return path.rstrip("/") == TTS_PATH

    def create_connection(self, ws: ServerConnection, faults: Faults) -> CartesiaEmulatedConnection:
        assert ws.request is not None
        return CartesiaEmulatedConnection(
            ws,
            faults,
            version=requested_version(ws.request) or STRUCTURED_ERRORS_VERSION,
            record=self.record,
            speed=self.speed,
            chunk_ms=self.chunk_ms,
            max_contexts=self.max_contexts,
            idle_timeout_s=self.idle_timeout_s,
        )

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """The base checks (health, path, refusal faults), then Cartesia's: key, version, socket cap."""
        refused = super()._process_request(connection, request)
        if refused is not None:
            return refused
        version = requested_version(request)
        key = _presented_key(request)
        if key is None:
            return self._refuse(connection, version, 401, "unauthorized", "Unauthorized", "No API key was provided.")
        if self.api_key is not None and not hmac.compare_digest(key.encode(), self.api_key.encode()):
            return self._refuse(connection, version, 401, "unauthorized", "Unauthorized", "Invalid API key.")
        if version is None or not _VERSION.fullmatch(version):
            return self._refuse(
                connection,
                version,
                400,
                "invalid_version",
                "Invalid version",
                "Send a Cartesia-Version header (or ?cartesia_version=) with a date like 2026-03-01.",
            )
        self._open_sockets = {s for s in self._open_sockets if s.state is not State.CLOSED}
        if self.max_connections is not None and len(self._open_sockets) >= self.max_connections:
            return self._refuse(
                connection,
                version,
                429,
                "concurrency_limited",
                "Too many concurrent requests",
                "You have exceeded your plan's concurrency limit.",
            )
        self._open_sockets.add(connection)
        return None

    def _refuse(
        self, connection: ServerConnection, version: str | None, status: int, code: str, title: str, message: str
    ) -> Response:
        """An HTTP refusal in the shape of the asked version: JSON from 2026-03-01, else ``Title: message``."""
        if version is not None and version >= STRUCTURED_ERRORS_VERSION:
            body: dict[str, Any] = {
                "error_code": code,
                "title": title,
                "message": message,
                "request_id": str(uuid.uuid4()),
            }
            response = connection.respond(HTTPStatus(status), orjson.dumps(body).decode())
            response.headers["Content-Type"] = "application/json"
            return response
        return connection.respond(HTTPStatus(status), f"{title}: {message}")

    async def wait_for_event(
        self,
        type: str,
        timeout: float = DEFAULT_WAIT_S,  # noqa: ASYNC109 - the helper's documented signature
        *,
        count: int = 1,
    ) -> dict[str, Any]:
        """The ``count``-th client message of ``type`` (``generate``, ``cancel``, ``invalid``) on the
        most recent connection, waiting for both if needed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conn = self.connections[-1] if self.connections else await self.wait_for_connection(1, timeout)
        return await conn.wait_for_event(type, max(0.0, deadline - loop.time()), count=count)


# -- command line -------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m providers.cartesia.emulator", description="Serve a local Cartesia TTS WebSocket emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port (printed at start)")
    parser.add_argument("--speed", type=float, default=1.0, help="output pacing x real time; 0 = unpaced")
    parser.add_argument("--chunk-ms", type=int, default=40, help="audio per chunk message")
    parser.add_argument("--api-key", default=None, help="accept only this key (default: any key)")
    parser.add_argument("--max-connections", type=int, default=None, help="open sockets before 429")
    parser.add_argument("--max-contexts", type=int, default=None, help="active contexts per socket before 429")
    parser.add_argument("--faults", default="", help="e.g. delay_ms:5,drop_after_events:100 (for every connection)")
    return parser.parse_args(argv)


def _options(args: argparse.Namespace) -> Mapping[str, Any]:
    return {
        "host": args.host,
        "port": args.port,
        "speed": args.speed,
        "chunk_ms": args.chunk_ms,
        "api_key": args.api_key,
        "max_connections": args.max_connections,
        "max_contexts": args.max_contexts,
        "faults": Faults.parse(args.faults),
        "record": False,  # a long-running process must not keep every message
    }


async def _serve(args: argparse.Namespace) -> None:
    emulator = CartesiaEmulator(**_options(args))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    async with emulator:
        print(f"Cartesia emulator listening on {emulator.ws_url} (speed {emulator.speed})", flush=True)
        await stop.wait()
    print("Cartesia emulator stopped", flush=True)


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
