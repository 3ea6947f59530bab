"""WebSocket transport for protocol v1: subprotocol negotiation, framing (JSON or msgpack), the
read loop feeding the session and the writer draining its outbound queue.

The transport knows framing, not providers: audio frames go to `Session.handle_audio` untouched,
control messages are parsed by `relay.protocol` and handed to `Session.handle`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from typing import Any

import msgpack
import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from relay import protocol as p
from relay.errors import CLOSE_INTERNAL, CLOSE_TOO_BIG, InvalidMessage, RelayError
from relay.outbound import OutItem
from relay.session import Session

LOG = logging.getLogger("relay.transport.ws")

# How long a closing session's writer may take to flush its last events (session.ended, close).
WRITER_FLUSH_S = 5.0


def choose_subprotocol(offered: list[str]) -> str | None:
    """The framing subprotocol to select. None when the client offered none (JSON is the default)."""
    for proto in offered:
        if proto in (p.SUBPROTOCOL_JSON, p.SUBPROTOCOL_MSGPACK):
            return proto
    return None


class WebSocketTransport:
    def __init__(self, ws: WebSocket, session: Session, subprotocol: str | None, max_message_bytes: int) -> None:
        self.ws = ws
        self.session = session
        self.msgpack = subprotocol == p.SUBPROTOCOL_MSGPACK
        self.max_message_bytes = max_message_bytes
        # The raw ASGI callables: Starlette's wrappers re-check connection state on every frame.
        self._send = ws._send
        self._receive = ws._receive
        self._disconnected = False

    async def run(self) -> None:
        writer = asyncio.create_task(self._writer(), name=f"writer-{self.session.session_id}")
        try:
            await self._reader()
        finally:
            if not self.session.closed.is_set():
                await self.session.client_gone()
            if self._disconnected:
                # Nobody will read what is left; a writer paused by flow control would otherwise
                # hold the connection (and uvicorn's TCP close) until the client gives up.
                writer.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(writer, WRITER_FLUSH_S)

    # -- reading -------------------------------------------------------------------------------

    async def _reader(self) -> None:
        receive = self._receive
        session = self.session
        while not session.closed.is_set():
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                self._disconnected = True
                if message.get("code") == CLOSE_TOO_BIG:
                    # The WebSocket layer enforced ws_max_size and already closed with 1009.
                    await session.finish("message_too_big", CLOSE_TOO_BIG)
                return
            data: bytes | None = message.get("bytes")
            text: str | None = message.get("text")
            try:
                if data is not None:
                    if len(data) > self.max_message_bytes:
                        await self._close_now(CLOSE_TOO_BIG, "message too big")
                        return
                    if self.msgpack:
                        obj = p.decode_msgpack(data)
                        await session.handle(p.parse_message(obj))
                    else:
                        await session.handle_audio(data)
                elif text is not None:
                    if len(text) > self.max_message_bytes:
                        await self._close_now(CLOSE_TOO_BIG, "message too big")
                        return
                    await session.handle(p.parse_message(p.decode_json(text)))
            except RelayError as exc:
                await self._report(exc)
            except Exception:  # a bug: the client gets 1011 and no details, the log gets the traceback
                LOG.exception("session %s: bug while handling a client message", session.session_id)
                await session.fail(RelayError("internal error"))
                return

    async def _report(self, exc: RelayError) -> None:
        session = self.session
        if exc.fatal:
            await session.fail(exc)
            return
        session.outbound.put_event({"type": "error", "code": exc.code, "message": exc.message, "fatal": False})
        if isinstance(exc, InvalidMessage):
            try:
                session.note_invalid()
            except RelayError as fatal:
                await session.fail(fatal)

    async def _close_now(self, code: int, reason: str) -> None:
        """Close without the writer (oversized input): the session still settles its usage."""
        self.session.outbound.close()
        await self.session.finish("message_too_big", code)
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)

    # -- writing -------------------------------------------------------------------------------

    async def _writer(self) -> None:
        queue = self.session.outbound
        send = self._send
        encode = self._encode
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                if item.event is not None and item.event.get("type") == "__close__":
                    with contextlib.suppress(Exception):
                        await self.ws.close(int(item.event["code"]))
                    return
                await send(encode(item))
        except (WebSocketDisconnect, OSError, RuntimeError):
            # The client went away mid-write; the reader sees the disconnect and settles the session.
            return
        except Exception:  # a bug in encoding: log it and close 1011 rather than hang the session
            LOG.exception("session %s: writer failed", self.session.session_id)
            with contextlib.suppress(Exception):
                await self.ws.close(CLOSE_INTERNAL)

    def _encode(self, item: OutItem) -> dict[str, Any]:
        if item.audio is not None:
            if self.msgpack:
                return {
                    "type": "websocket.send",
                    "bytes": msgpack.packb({"type": "audio", "audio": item.audio, "response_id": item.response_id}),
                }
            if self.session.output_framing == "base64":
                return {
                    "type": "websocket.send",
                    "text": orjson.dumps(
                        {
                            "type": "audio",
                            "audio": base64.b64encode(item.audio).decode(),
                            "response_id": item.response_id,
                        }
                    ).decode(),
                }
            return {"type": "websocket.send", "bytes": item.audio}
        if self.msgpack:
            return {"type": "websocket.send", "bytes": msgpack.packb(item.event)}
        return {"type": "websocket.send", "text": orjson.dumps(item.event).decode()}
