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
  `wait_for_event` knows client messages as ``generate``, ``cancel`` and ``invalid``.

Run it as its own process (the load tester does): ``python -m providers.cartesia.emulator --port 8767``.
"""

from __future__ import annotations

import argparse
import hmac
import re
import sys
import uuid
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response
from websockets.protocol import State

from providers.cartesia.emulator_connection import CartesiaEmulatedConnection
from providers.cartesia.emulator_request import STRUCTURED_ERRORS_VERSION
from providers.emulation.cli import CommonOptions, EmulatorCommand
from providers.emulation.faults import Faults
from providers.emulation.server import EmulatorServer

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
        if chunk_ms <= 0:
            raise ValueError(f"chunk_ms must be positive; got {chunk_ms}")
        super().__init__(host=host, port=port, speed=speed, api_key=api_key, faults=faults, record=record, tls=tls)
        self.chunk_ms = chunk_ms
        self.max_connections = max_connections
        self.max_contexts = max_contexts
        self.idle_timeout_s = idle_timeout_s
        self._open_sockets: set[ServerConnection] = set()

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self._server is not None else "stopped"
        return f"CartesiaEmulator({where}, speed={self.speed}, chunk_ms={self.chunk_ms})"

    @property
    def ws_url(self) -> str:
        return self.ws_base_url + TTS_PATH

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


# -- command line -------------------------------------------------------------------------------


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chunk-ms", type=int, default=40, help="audio per chunk message")
    parser.add_argument("--max-connections", type=int, default=None, help="open sockets before 429")
    parser.add_argument("--max-contexts", type=int, default=None, help="active contexts per socket before 429")


def _build(args: argparse.Namespace, options: CommonOptions) -> CartesiaEmulator:
    return CartesiaEmulator(
        **options, chunk_ms=args.chunk_ms, max_connections=args.max_connections, max_contexts=args.max_contexts
    )


COMMAND: Final = EmulatorCommand(
    name="Cartesia emulator",
    module="providers.cartesia.emulator",
    description="Serve a local Cartesia TTS WebSocket emulator.",
    default_port=DEFAULT_PORT,
    build=_build,
    endpoint=lambda emulator: emulator.ws_url,
    add_arguments=_add_arguments,
)


def main(argv: Sequence[str] | None = None) -> int:
    return COMMAND.main(argv)


if __name__ == "__main__":
    sys.exit(main())
