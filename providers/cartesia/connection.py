"""The Cartesia TTS upstream connection: a thin asyncio shell around `CartesiaTranslator`.

- `connector()` makes the opener of the upgraded socket (``X-API-Key`` and ``Cartesia-Version``
  headers) that `open_session()` calls, and that reopens the socket later if need be.
  Cartesia says nothing on connect, so the session is ready once the upgrade succeeds; a refused
  upgrade becomes an `UpstreamError` (401/403 permanent, 429 ``concurrency_limited`` retryable).
- A reader task feeds every frame to the translator and posts the events to a small bounded
  `_Mailbox` that `events()` drains. A full mailbox stops the reader, so TCP pushes back on Cartesia
  when the client is slow. Intents post their own events (`ResponseStarted`, the `ResponseDone` of a
  cancel) to the same mailbox: a cancelled response ends at once even though Cartesia sends
  nothing more for it, and its audio still waiting in the mailbox is dropped.
- Cartesia closes a socket after 5 idle minutes. A clean close while no utterance is in flight is
  not a failure: the socket is reopened when the next utterance needs it.

Everything protocol-shaped lives in the translator; this module only moves bytes and turns socket
failures into `UpstreamError`s whose messages never carry the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from audiocodecs.format import PCM16_16K, AudioFormat
from providers.base import UpstreamError
from providers.cartesia.translator import CartesiaTranslator, Scrubber, error_details
from providers.events import Alignment, AudioDelta, ProviderEvent
from providers.sockets import PERMANENT_HTTP_STATUSES, describe_close, handshake_error, wire_logger

__all__ = [
    "CLOSE_TIMEOUT_S",
    "MAILBOX_EVENTS",
    "MAX_MESSAGE_BYTES",
    "CartesiaUpstreamSession",
    "Connector",
    "connector",
    "open_session",
]

log = logging.getLogger(__name__)

#: largest upstream message accepted (audio chunks are small; this is a sanity bound)
MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
#: how long a closing handshake may take before the TCP connection is dropped
CLOSE_TIMEOUT_S: Final = 2.0
#: provider events waiting for `events()` before the reader stops reading the socket
MAILBOX_EVENTS: Final = 64
#: close codes of a deliberate close by Cartesia (idle timeout, restart), not a failure when idle
_CLEAN_CLOSE: Final = frozenset({1000, 1001})

#: opens one upgraded WebSocket (raises `UpstreamError`)
Connector = Callable[[], Awaitable[ClientConnection]]


_WIRE_LOG: Final = wire_logger(__name__)


def _refusal(exc: InvalidStatus, scrub: Scrubber) -> UpstreamError:
    """A refused upgrade: Cartesia answers with ``{error_code, title, message, …}`` (2026-03-01 and
    later) or plain ``Title: message`` text."""
    response = exc.response
    status = response.status_code
    body = bytes(response.body or b"")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        code, detail = error_details({"status_code": status, **parsed})
    else:
        code, detail = error_details({"status_code": status, "error": body.decode("utf-8", "replace").strip()})
    if status == 429:
        # Over the plan's concurrency (or 10x that in sockets): another provider may have room.
        return UpstreamError(f"Cartesia is at its concurrency limit: {scrub(detail)}", code=code, retryable=True)
    return UpstreamError(
        f"Cartesia refused the connection: HTTP {status}: {scrub(detail)}",
        code=code,
        retryable=status not in PERMANENT_HTTP_STATUSES,
    )


def connector(
    url: str, api_key: str, version: str, *, timeout_s: float, ssl_context: ssl.SSLContext | None = None
) -> Connector:
    """A `Connector` for `url` (``ws[s]://…/tts/websocket``). The key goes in ``X-API-Key``."""
    scrub = Scrubber(api_key)
    headers = {"X-API-Key": api_key, "Cartesia-Version": version}
    # `ssl` may only be passed for wss:// (True: the system's trust store).
    tls: dict[str, Any] = {"ssl": ssl_context or True} if url.startswith("wss:") else {}

    async def open_socket() -> ClientConnection:
        try:
            async with asyncio.timeout(timeout_s):
                return await connect(
                    url,
                    additional_headers=headers,
                    compression=None,  # permessage-deflate costs 2.3x per audio frame
                    max_size=MAX_MESSAGE_BYTES,
                    open_timeout=None,  # the enclosing timeout covers DNS, TCP, TLS and the upgrade
                    close_timeout=CLOSE_TIMEOUT_S,
                    **tls,
                    logger=_WIRE_LOG,
                )
        except TimeoutError:  # before OSError: TimeoutError is one
            raise UpstreamError(f"Cartesia did not answer within {timeout_s:g} s") from None
        except InvalidStatus as exc:
            raise _refusal(exc, scrub) from None
        except (InvalidURI, InvalidHandshake, OSError) as exc:
            raise handshake_error("Cartesia", exc, scrub) from None

    return open_socket


async def open_session(
    open_socket: Connector, translator: CartesiaTranslator, scrub: Scrubber
) -> CartesiaUpstreamSession:
    """Open the socket and wrap it. Raises `UpstreamError`."""
    ws = await open_socket()
    log.debug("Cartesia session ready (output %s)", translator.output_format)
    return CartesiaUpstreamSession(ws, translator, scrub, open_socket)


class _Mailbox:
    """Provider events on their way to `events()`: a deque with one waiting getter, a soft capacity
    the reader respects, and an end (clean, or an exception for the getter to raise)."""

    __slots__ = ("_capacity", "_end", "_ended", "_getter", "_items", "_room")

    def __init__(self, capacity: int) -> None:
        self._items: deque[ProviderEvent] = deque()
        self._capacity = capacity
        self._getter: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None
        self._ended = False
        self._end: BaseException | None = None

    @property
    def ended(self) -> bool:
        return self._ended

    def put(self, events: Iterable[ProviderEvent]) -> None:
        if self._ended:
            return
        self._items.extend(events)
        if self._items:
            _wake(self._getter)

    def discard_response(self, response_id: str) -> None:
        """Drop the audio and alignment of a response that was just cancelled."""
        self._items = deque(
            e for e in self._items if not (isinstance(e, AudioDelta | Alignment) and e.response_id == response_id)
        )
        _wake(self._room)

    def finish(self, error: BaseException | None = None, *, drop: bool = False) -> None:
        """No more events after those queued (none, with `drop`); then end, or raise `error`."""
        if self._ended:
            return
        self._ended, self._end = True, error
        if drop:
            self._items.clear()
        _wake(self._getter)
        _wake(self._room)

    async def wait_for_room(self) -> None:
        while len(self._items) >= self._capacity and not self._ended:
            self._room = asyncio.get_running_loop().create_future()
            await self._room

    async def get(self) -> ProviderEvent | None:
        """The next event; None at a clean end; raises the end's error."""
        while not self._items:
            if self._ended:
                if self._end is not None:
                    raise self._end
                return None
            self._getter = asyncio.get_running_loop().create_future()
            await self._getter
        event = self._items.popleft()
        if len(self._items) < self._capacity:
            _wake(self._room)
        return event


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


class CartesiaUpstreamSession:
    """One Cartesia TTS connection (implements `providers.base.UpstreamSession`).

    Audio in does not exist for TTS: `send_audio` and `commit` do nothing (the session never sends
    audio to a TTS provider, and an ``audio.commit`` from the client is harmless). Tool results
    and instructions have no meaning here either and are ignored. Intents never raise: a failed
    connection is reported once, by `events()`, and intents after it are dropped.
    """

    def __init__(
        self, ws: ClientConnection, translator: CartesiaTranslator, scrub: Scrubber, open_socket: Connector
    ) -> None:
        self._ws: ClientConnection | None = ws
        self._translator = translator
        self._scrub = scrub
        self._open_socket = open_socket
        self._mailbox = _Mailbox(MAILBOX_EVENTS)
        self._send_lock = asyncio.Lock()
        self._closing = False
        self._failure: UpstreamError | None = None
        self._iterating = False
        self._reader: asyncio.Task[None] | None = asyncio.create_task(self._read(ws), name="cartesia-reader")

    def __repr__(self) -> str:
        state = "closing" if self._closing else ("failed" if self._failure else "open")
        return f"<CartesiaUpstreamSession {state} output={self.output_format}>"

    @property
    def input_format(self) -> AudioFormat:
        """TTS takes no audio; a nominal format so the session has one to report."""
        return PCM16_16K

    @property
    def output_format(self) -> AudioFormat:
        return self._translator.output_format

    # -- intents -------------------------------------------------------------------------------

    async def send_audio(self, audio: bytes) -> None:
        """Nothing: Cartesia TTS takes no audio."""

    async def commit(self, respond: bool) -> None:
        """Nothing: there is no audio turn to end."""

    async def send_text(self, text: str, *, final: bool, respond: bool) -> None:
        """A piece of the utterance being streamed; `final` ends it. `respond` has no meaning for
        TTS: every utterance is spoken."""
        if self._failure is not None:
            return
        self._mailbox.put(self._translator.send_text(text, final=final))
        await self._transmit()

    async def create_response(self, instructions: str | None = None) -> None:
        """Speak what Cartesia has buffered for the current utterance now (a manual flush)."""
        if self._failure is not None:
            return
        self._translator.flush()
        await self._transmit()

    async def interrupt(self, response_id: str | None, played_ms: int | None) -> None:
        """Cancel `response_id` upstream at once; it ends here as cancelled. Cartesia keeps no
        transcript, so `played_ms` has nothing to truncate."""
        if self._closing or self._failure is not None:
            return
        events = self._translator.interrupt(response_id)
        if events and response_id is not None:
            self._mailbox.discard_response(response_id)
            self._mailbox.put(events)
            await self._transmit()

    async def send_tool_result(self, call_id: str, output: str) -> None:
        """Nothing: TTS has no tools."""

    async def update(
        self, *, instructions: str | None, voice: str | None, tools: tuple[Mapping[str, Any], ...] | None
    ) -> None:
        """A new voice applies to utterances started from now on (a context keeps its voice)."""
        if voice:
            self._translator.voice = voice

    async def _transmit(self) -> None:
        """Send what the translator queued, in order, reopening an idle-closed socket first."""
        async with self._send_lock:
            if self._closing or self._failure is not None or not self._translator.has_data_to_send:
                return
            # Reopen before taking the messages: if that fails they were never sent, and the
            # translator does not count their characters in the failed response's usage.
            ws = self._ws or await self._reopen()
            if ws is None:
                return
            messages = self._translator.data_to_send()
            try:
                for message in messages:
                    await ws.send(orjson.dumps(message), text=True)
            except ConnectionClosed as exc:
                if not self._closing:
                    self._fail(UpstreamError(f"Cartesia connection lost ({describe_close(exc, self._scrub)})"))

    async def _reopen(self) -> ClientConnection | None:
        try:
            ws = await self._open_socket()
        except UpstreamError as exc:
            self._fail(exc)
            return None
        if self._closing:  # closed while reopening
            await ws.close(1000)
            return None
        log.info("Cartesia connection reopened")
        self._ws = ws
        self._reader = asyncio.create_task(self._read(ws), name="cartesia-reader")
        return ws

    def _fail(self, error: UpstreamError) -> None:
        """The upstream is gone: what was in flight ends as failed, then `events()` raises `error`.
        The failure is reported there, once; intents from now on are dropped."""
        if self._failure is not None:
            return
        self._failure = error
        self._ws = None
        self._mailbox.put(self._translator.connection_lost())
        self._mailbox.finish(error)

    # -- events --------------------------------------------------------------------------------

    async def _read(self, ws: ClientConnection) -> None:
        translator, mailbox = self._translator, self._mailbox
        try:
            while True:
                frame = await ws.recv(decode=False)
                events = translator.feed(frame)
                if events:
                    mailbox.put(events)
                if translator.has_data_to_send:
                    await self._transmit()  # a `done` let the next waiting utterance start
                await mailbox.wait_for_room()
        except ConnectionClosed as exc:
            self._closed_by_peer(ws, exc)
        except Exception as exc:  # a bug: let `events()` raise it rather than hang
            log.exception("Cartesia reader failed")
            self._mailbox.finish(exc)

    def _closed_by_peer(self, ws: ClientConnection, exc: ConnectionClosed) -> None:
        if self._closing or ws is not self._ws:
            return
        if exc.rcvd is not None and exc.rcvd.code in _CLEAN_CLOSE and not self._translator.busy:
            log.info("Cartesia closed the idle connection (%s); it reopens on the next utterance", exc.rcvd.code)
            self._ws = None
            # With nothing in flight the outbox can only hold cancels for contexts of the closed
            # socket: moot, and not worth reopening a socket for.
            self._translator.data_to_send()
            return
        self._fail(UpstreamError(f"Cartesia connection lost ({describe_close(exc, self._scrub)})"))

    async def events(self) -> AsyncIterator[ProviderEvent]:
        """Normalized events until `close()`. Raises `UpstreamError` when the connection fails —
        after a failed `ResponseDone` for the utterance in flight, so what it was sent is metered."""
        if self._iterating:
            raise RuntimeError("events() may be iterated only once per upstream session")
        self._iterating = True
        while (event := await self._mailbox.get()) is not None:
            yield event

    async def close(self) -> None:
        """Close with 1000. Idempotent; `events()` then ends without an error."""
        self._closing = True
        self._mailbox.finish(drop=True)
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close(1000)
