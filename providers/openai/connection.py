"""The OpenAI Realtime upstream connection: a thin asyncio shell around `OpenAITranslator`.

`open_session()` opens the WebSocket, waits for `session.created`, sends the configuring
`session.update` and waits for `session.updated`. `OpenAIUpstreamSession` then sends the
translator's client events and feeds it every frame it receives. Everything protocol-shaped lives in
the translator; this module only moves bytes, keeps time and turns socket failures into
`UpstreamError`s whose messages never carry the key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Final

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.protocol import State

from audiocodecs.format import AudioFormat
from providers.base import SessionConfig, UpstreamError
from providers.events import ProviderError, ProviderEvent
from providers.openai.translator import OpenAITranslator, Phase, Scrubber, is_permanent_error
from providers.sockets import describe_close, handshake_error, wire_logger

__all__ = ["CLOSE_TIMEOUT_S", "MAX_MESSAGE_BYTES", "OpenAIUpstreamSession", "open_session"]

log = logging.getLogger(__name__)

#: largest upstream message accepted; audio deltas are small, but a `response.done` or
#: `session.updated` with long instructions, tools and transcripts can be large
MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
#: how long a closing handshake may take before the TCP connection is dropped
CLOSE_TIMEOUT_S: Final = 2.0
#: WebSocket close code OpenAI uses for a refused key (IANA: 3000 "Unauthorized")
_CLOSE_UNAUTHORIZED: Final = 3000


_WIRE_LOG: Final = wire_logger(__name__)


def _setup_failure(exc: BaseException, timeout_s: float, scrub: Scrubber) -> UpstreamError:
    """An `UpstreamError` with a clean message for anything that went wrong before the session was ready."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, TimeoutError):  # before OSError: TimeoutError is one
        return UpstreamError(f"OpenAI did not get ready within {timeout_s:g} s")
    if isinstance(exc, ConnectionClosed):
        permanent = exc.rcvd is not None and exc.rcvd.code == _CLOSE_UNAUTHORIZED
        return UpstreamError(
            f"OpenAI closed the connection during setup ({describe_close(exc, scrub)})", retryable=not permanent
        )
    return handshake_error("OpenAI", exc, scrub)


async def open_session(
    url: str, api_key: str, config: SessionConfig, *, timeout_s: float = 10.0
) -> OpenAIUpstreamSession:
    """Connect to `url` (a `…/realtime?model=…` WebSocket URL) and configure the session.

    Raises `UpstreamError` — refused upgrade, close during setup, an `error` event before
    `session.updated`, or `timeout_s` elapsed for the whole of it.
    """
    scrub = Scrubber(api_key)
    translator = OpenAITranslator(config, scrub)
    ws: ClientConnection | None = None
    try:
        async with asyncio.timeout(timeout_s):
            ws = await connect(
                url,
                additional_headers={"Authorization": f"Bearer {api_key}"},
                compression=None,  # permessage-deflate costs 2.3x per audio frame, and OpenAI does not offer it
                max_size=MAX_MESSAGE_BYTES,
                open_timeout=None,  # the enclosing timeout covers the upgrade and the setup
                close_timeout=CLOSE_TIMEOUT_S,
                logger=_WIRE_LOG,
            )
            pending = await _set_up(ws, translator)
    except asyncio.CancelledError:
        if ws is not None:
            ws.transport.abort()
        raise
    except (UpstreamError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed, OSError) as exc:
        if ws is not None:
            await ws.close()
        raise _setup_failure(exc, timeout_s, scrub) from None
    log.debug("OpenAI session ready (input %s, output %s)", translator.input_format, translator.output_format)
    return OpenAIUpstreamSession(ws, translator, scrub, pending)


async def _set_up(ws: ClientConnection, translator: OpenAITranslator) -> list[ProviderEvent]:
    """Drive the translator from `session.created` to `session.updated`; returns events that came meanwhile."""
    pending: list[ProviderEvent] = []
    while not translator.ready:
        frame = await ws.recv(decode=False)
        for event in translator.feed(frame):
            if isinstance(event, ProviderError):
                raise UpstreamError(
                    f"OpenAI refused the session: {event.code}: {event.message}",
                    retryable=not is_permanent_error(event.code),
                )
            pending.append(event)
        if translator.phase is Phase.CREATED:
            for message in translator.configure():
                await ws.send(orjson.dumps(message), text=True)
    return pending


class OpenAIUpstreamSession:
    """One configured OpenAI Realtime connection (implements `providers.base.UpstreamSession`)."""

    def __init__(
        self,
        ws: ClientConnection,
        translator: OpenAITranslator,
        scrub: Scrubber,
        pending: Sequence[ProviderEvent] = (),
    ) -> None:
        self._ws = ws
        self._translator = translator
        self._scrub = scrub
        self._pending = list(pending)
        self._closing = False
        self._iterating = False

    def __repr__(self) -> str:
        state = "closing" if self._closing else "open"
        return f"<OpenAIUpstreamSession {state} input={self.input_format} output={self.output_format}>"

    @property
    def input_format(self) -> AudioFormat:
        return self._translator.input_format

    @property
    def output_format(self) -> AudioFormat:
        return self._translator.output_format

    # -- intents -------------------------------------------------------------------------------

    async def send_audio(self, audio: bytes) -> None:
        frame = self._translator.append_audio(audio)
        ws = self._ws
        # The per-frame hot path. While the connection is open, nothing is mid-fragment and the
        # socket is not paused, do what `send()` does — hand the frame to the sans-I/O protocol and
        # write it — without its per-call context manager (a measurable share of the relay's CPU
        # at 50 frames/s/session). Anything else takes the regular path: flow control, closing.
        if ws.protocol.state is State.OPEN and ws.send_in_progress is None and not ws.paused:
            ws.protocol.send_text(frame)
            ws.send_data()
            return
        try:
            await ws.send(frame, text=True)
        except ConnectionClosed as exc:
            self._lost_while_sending(exc)

    async def commit(self, respond: bool) -> None:
        await self._send(self._translator.commit(respond))

    async def send_text(self, text: str, *, final: bool, respond: bool) -> None:
        await self._send(self._translator.send_text(text, final=final, respond=respond))

    async def create_response(self, instructions: str | None = None) -> None:
        await self._send(self._translator.create_response(instructions))

    async def interrupt(self, response_id: str | None, played_ms: int | None) -> None:
        await self._send(self._translator.interrupt(response_id, played_ms))

    async def send_tool_result(self, call_id: str, output: str) -> None:
        await self._send(self._translator.tool_result(call_id, output))

    async def update(
        self, *, instructions: str | None, voice: str | None, tools: tuple[Mapping[str, Any], ...] | None
    ) -> None:
        await self._send(self._translator.update(instructions=instructions, voice=voice, tools=tools))

    async def _send(self, messages: list[dict[str, Any]]) -> None:
        try:
            for message in messages:
                await self._ws.send(orjson.dumps(message), text=True)
        except ConnectionClosed as exc:
            self._lost_while_sending(exc)

    def _lost_while_sending(self, exc: ConnectionClosed) -> None:
        if self._closing:
            return  # we closed it: late intents are dropped
        raise UpstreamError(f"OpenAI connection lost ({describe_close(exc, self._scrub)})") from None

    # -- events --------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[ProviderEvent]:
        """Normalized events until the connection ends.

        Ends quietly after our `close()` or a normal close (1000) by OpenAI; otherwise raises
        `UpstreamError` — after yielding a failed `ResponseDone` for the response in flight, so
        what it produced is still metered.
        """
        if self._iterating:
            raise RuntimeError("events() may be iterated only once per upstream session")
        self._iterating = True
        pending, self._pending = self._pending, []
        for event in pending:
            yield event
        ws, translator = self._ws, self._translator
        try:
            while True:
                frame = await ws.recv(decode=False)
                for event in translator.feed(frame):
                    yield event
        except ConnectionClosed as exc:
            closed = exc
        if self._closing:
            return
        for event in translator.connection_lost():
            yield event
        if closed.rcvd is not None and closed.rcvd.code == 1000:
            log.info("OpenAI closed the connection normally")
            return
        raise UpstreamError(f"OpenAI connection lost ({describe_close(closed, self._scrub)})")

    async def close(self) -> None:
        """Close with 1000. Idempotent; `events()` then ends without an error."""
        self._closing = True
        await self._ws.close(1000)
