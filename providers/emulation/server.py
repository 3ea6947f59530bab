"""A small `websockets` server base for emulators, and the connection base it hands sockets to.

`EmulatorServer` binds ``host:port`` (0 = ephemeral), answers ``GET /healthz`` with 200, refuses
paths the emulator does not serve (404) and handshakes a fault asks to refuse, then gives each
socket to ``create_connection(ws, faults)`` and awaits its ``run()``. It keeps every connection in
``connections`` (unless ``record=False``, for long load tests) so tests can look at what was
received and sent and wait for a client event without sleeping. Recording is bounded all the same:
at most ``MAX_RECORDED_EVENTS`` per list per connection (later ones are counted, not kept) and the
``MAX_RECORDED_CONNECTIONS`` most recent connections, so an emulator left running records safely.

`EmulatedConnection.send_message` is the one way out for server messages (`send_event` for those
with a ``type``); it applies the connection's `Faults` (delay before each message, a malformed frame
after N messages, an abrupt drop after N messages) and records a label for each.

What every emulator has is here too: ``speed`` (output pacing as a multiple of real time, 0 = as fast
as the socket takes it), ``api_key`` (accept only this key; None: any), ``tls`` (serve ``wss``/``https``
with a throwaway loopback certificate that `EmulatorServer.client_ssl_context` trusts), `base_url`
and `ws_base_url`, and `wait_for_event` on the most recent connection.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Final, Generic, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from providers.emulation.faults import Faults, FaultSpecError
from providers.emulation.tls import SelfSignedTLS, self_signed

__all__ = [
    "MALFORMED_FRAME",
    "ConnectionDropped",
    "EmulatedConnection",
    "EmulatorServer",
    "new_id",
]

#: the non-JSON frame sent by the ``malformed_after_events`` fault
MALFORMED_FRAME: Final = "emulator fault: this frame is not JSON {"
#: largest client message accepted (OpenAI allows 15 MiB audio appends, base64 makes that 20 MiB)
MAX_MESSAGE_BYTES: Final = 32 * 1024 * 1024
#: how long a drop waits for already queued bytes to reach the socket before aborting it
_DROP_FLUSH_S: Final = 1.0
_DROP_POLL_S: Final = 0.002
DEFAULT_WAIT_S: Final = 5.0
#: recording limits (see the module docstring)
MAX_RECORDED_EVENTS: Final = 20_000
MAX_RECORDED_CONNECTIONS: Final = 100


def new_id(prefix: str, nbytes: int = 10) -> str:
    """``prefix`` + random hex, e.g. ``new_id("item_")`` → ``"item_3f9c0a…"``."""
    return prefix + os.urandom(nbytes).hex()


class ConnectionDropped(Exception):
    """The connection was dropped on purpose by a fault; stop using it."""


class EmulatedConnection:
    """One client socket on an emulator. Subclasses implement `run` (receive loop and protocol)."""

    #: send server events in binary frames (Gemini) instead of text frames (OpenAI)
    binary_frames: ClassVar[bool] = False

    def __init__(self, ws: ServerConnection, faults: Faults, *, record: bool = True) -> None:
        self.ws = ws
        self.faults = faults
        self.record = record
        #: every client event, parsed (audio payloads replaced by their decoded byte length)
        self.received: list[dict[str, Any]] = []
        #: the ``type`` of every server event sent, in order
        self.sent_types: list[str] = []
        #: server events sent so far (counted even when not recording)
        self.events_sent = 0
        self.dropped = False
        self._delay_s = faults.delay_ms / 1000.0
        #: [type, events still to see, future] per pending `wait_for_event`
        self._waiters: list[list[Any]] = []
        request = ws.request
        split = urlsplit(request.path if request is not None else "/")
        self.path: str = split.path
        self.query: dict[str, list[str]] = parse_qs(split.query)

    async def run(self) -> None:
        raise NotImplementedError

    # -- sending ------------------------------------------------------------------------------

    async def send_event(self, event: dict[str, Any]) -> None:
        """Send one server event (JSON), recorded by its ``type``; see `send_message`."""
        await self.send_message(event, event["type"])

    async def send_message(self, message: dict[str, Any], label: str) -> int:
        """Send one server message (JSON, in a binary frame if `binary_frames`), applying the connection's
        faults, and record it in `sent_types` as `label`. Returns how many were sent so far, this one included."""
        if self.dropped:
            raise ConnectionDropped
        if self._delay_s:
            await asyncio.sleep(self._delay_s)
            if self.dropped:
                raise ConnectionDropped
        data = orjson.dumps(message)
        self.events_sent += 1
        if self.record and len(self.sent_types) < MAX_RECORDED_EVENTS:
            self._record_sent(label, data)
        await self.ws.send(data, text=not self.binary_frames)
        count = self.events_sent
        await self._after_event(count)
        return count

    def _record_sent(self, label: str, data: bytes) -> None:
        """Record one sent message (only while recording, and below `MAX_RECORDED_EVENTS`)."""
        self.sent_types.append(label)

    async def apply_initial_faults(self) -> None:
        """Faults set to fire after 0 events fire before the first one."""
        await self._after_event(0)

    async def _after_event(self, count: int) -> None:
        if count == self.faults.malformed_after_events:
            await self.ws.send(MALFORMED_FRAME, text=not self.binary_frames)
        if count == self.faults.drop_after_events:
            await self.drop()
            raise ConnectionDropped

    async def drop(self) -> None:
        """Close the TCP connection abruptly: no close frame. Bytes already queued still go out."""
        self.dropped = True
        transport = self.ws.transport
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _DROP_FLUSH_S
        # There is no event for "the transport's buffer is empty"; on loopback it nearly always is.
        while transport.get_write_buffer_size() and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(_DROP_POLL_S)
        transport.abort()

    # -- recording and waiting ------------------------------------------------------------------

    def record_received(self, event: dict[str, Any]) -> None:
        if not self.record:
            return
        if len(self.received) < MAX_RECORDED_EVENTS:
            self.received.append(event)
        if self._waiters:
            kind = event.get("type")
            for waiter in self._waiters:
                if waiter[0] == kind:
                    waiter[1] -= 1
                    if waiter[1] == 0 and not waiter[2].done():
                        waiter[2].set_result(event)

    def received_types(self) -> list[str]:
        return [str(event.get("type")) for event in self.received]

    async def wait_for_event(
        self,
        type: str,
        timeout: float = DEFAULT_WAIT_S,  # noqa: ASYNC109 - the helper's documented signature
        *,
        count: int = 1,
    ) -> dict[str, Any]:
        """The ``count``-th client event of this ``type`` on this connection (waiting for it if needed)."""
        if not self.record:
            raise RuntimeError("this emulator was started with record=False")
        seen = [event for event in self.received if event.get("type") == type]
        if len(seen) >= count:
            return seen[count - 1]
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        waiter: list[Any] = [type, count - len(seen), future]
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise TimeoutError(
                f"no {type!r} #{count} received within {timeout} s; received {self.received_types()}"
            ) from None
        finally:
            self._waiters.remove(waiter)


ConnT = TypeVar("ConnT", bound=EmulatedConnection)


class EmulatorServer(Generic[ConnT]):
    """Start/stop a `websockets` server whose sockets become ``ConnT`` connections."""

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
    ) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0; got {speed}")
        self.host = host
        self._requested_port = port
        #: output pacing as a multiple of real time (0 = as fast as the socket takes it)
        self.speed = speed
        #: accept only this key (None: any key)
        self.api_key = api_key
        #: applies to connections opened after it is set; ``?emulator_faults=`` overrides per connection
        self.faults = faults or Faults()
        self.record = record
        #: the throwaway certificate served with ``tls=True`` (None: plain ``ws``/``http``)
        self.tls: SelfSignedTLS | None = self_signed() if tls else None
        self._ssl = self.tls.server_context() if self.tls is not None else None
        self._server: Server | None = None
        #: every connection opened (in order), unless ``record=False``
        self.connections: list[ConnT] = []
        self._connection_waiters: list[tuple[int, asyncio.Future[None]]] = []

    # -- hooks ----------------------------------------------------------------------------------

    def accepts_path(self, path: str) -> bool:
        return True

    def select_subprotocol(self, offered: Sequence[str]) -> str | None:
        return None

    def create_connection(self, ws: ServerConnection, faults: Faults) -> ConnT:
        raise NotImplementedError

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("emulator already started")
        self._server = await serve(
            self._handle,
            self.host,
            self._requested_port,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            compression=None,
            max_size=MAX_MESSAGE_BYTES,
            ping_interval=None,
            ssl=self._ssl,
        )

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def ws_scheme(self) -> str:
        return "ws" if self._ssl is None else "wss"

    @property
    def http_scheme(self) -> str:
        return "http" if self._ssl is None else "https"

    @property
    def base_url(self) -> str:
        """What to pass as the provider's (or its SDK's) ``base_url``: here, the HTTP origin."""
        return f"{self.http_scheme}://{self.host}:{self.port}"

    @property
    def ws_base_url(self) -> str:
        """The WebSocket origin, ``ws[s]://host:port``."""
        return f"{self.ws_scheme}://{self.host}:{self.port}"

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client SSL context that trusts this emulator's certificate; only with ``tls=True``."""
        return self._tls_only().client_context()

    @property
    def ca_pem_path(self) -> Path:
        """The certificate as a PEM file (for clients told through ``SSL_CERT_FILE``); only with ``tls=True``."""
        return self._tls_only().ca_file

    def _tls_only(self) -> SelfSignedTLS:
        if self.tls is None:
            raise RuntimeError("this emulator was started without tls=True")
        return self.tls

    async def wait_for_connection(self, count: int = 1, timeout: float = DEFAULT_WAIT_S) -> ConnT:  # noqa: ASYNC109
        """The ``count``-th connection opened (1-based), waiting for it if needed."""
        if not self.record:
            raise RuntimeError("this emulator was started with record=False")
        if len(self.connections) < count:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._connection_waiters.append((count, future))
            try:
                async with asyncio.timeout(timeout):
                    await future
            except TimeoutError:
                raise TimeoutError(f"fewer than {count} connections within {timeout} s") from None
            finally:
                self._connection_waiters = [(c, f) for c, f in self._connection_waiters if f is not future]
        return self.connections[count - 1]

    async def wait_for_event(
        self,
        type: str,
        timeout: float = DEFAULT_WAIT_S,  # noqa: ASYNC109 - the helper's documented signature
        *,
        count: int = 1,
    ) -> dict[str, Any]:
        """The ``count``-th client event labelled ``type`` on the most recent connection, waiting for both
        if needed (labels are each emulator's own: an OpenAI event ``type``, a Gemini message kind, …)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conn = self.connections[-1] if self.connections else await self.wait_for_connection(1, timeout)
        return await conn.wait_for_event(type, max(0.0, deadline - loop.time()), count=count)

    # -- websockets callbacks ---------------------------------------------------------------------

    def _faults_for(self, path: str) -> Faults:
        return self.faults.merged_with_query(parse_qs(urlsplit(path).query))

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path.rstrip("/") == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if not self.accepts_path(path):
            return connection.respond(HTTPStatus.NOT_FOUND, f"no emulated endpoint at {path}\n")
        try:
            faults = self._faults_for(request.path)
        except FaultSpecError as exc:
            return connection.respond(HTTPStatus.BAD_REQUEST, f"{exc}\n")
        if faults.reject_connect is not None:
            return connection.respond(faults.reject_connect, "emulator fault: connection refused\n")
        return None

    def _select_subprotocol(self, connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
        chosen = self.select_subprotocol(offered)
        return Subprotocol(chosen) if chosen is not None else None

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        faults = self._faults_for(request.path if request is not None else "/")
        conn = self.create_connection(ws, faults)
        if self.record:
            if len(self.connections) >= MAX_RECORDED_CONNECTIONS:
                del self.connections[: len(self.connections) - MAX_RECORDED_CONNECTIONS + 1]
            self.connections.append(conn)
            self._notify_connection_waiters()
        try:
            await conn.apply_initial_faults()
            await conn.run()
        except (ConnectionDropped, ConnectionClosed):
            pass

    def _notify_connection_waiters(self) -> None:
        opened = len(self.connections)
        for count, future in self._connection_waiters:
            if count <= opened and not future.done():
                future.set_result(None)
