"""The ElevenLabs upstream connection: a thin asyncio shell around `ElevenLabsTranslator`.

`open_session()` opens the ``multi-stream-input`` WebSocket with the key in the ``xi-api-key``
header and confirms it with one ping round trip: the protocol has no server greeting, and a refused
key arrives as a close right after the upgrade, before the pong. `ElevenLabsUpstreamSession` then
sends what the translator produces and feeds it every frame received.

Events reach `events()` through one queue, because two sources make them: frames (read by a reader
task) and the intents themselves (`send_text` starts a response, `interrupt` ends one at once, without
waiting for the service). The reader stops reading while `MAX_QUEUED_EVENTS` wait, so a slow session
still pushes back on the service through TCP. Every send goes through one lock, in the order the
translator produced the messages. A keepalive goes out after `keepalive_s` without a send: the
service closes connections and contexts that hear nothing for 20 s, and a relay session may well be
silent longer between utterances.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from audiocodecs.format import AudioFormat
from providers.base import UpstreamError
from providers.elevenlabs.translator import ElevenLabsTranslator, Scrubber, Step, is_permanent_failure
from providers.events import ProviderEvent
from providers.sockets import describe_close, handshake_error, wire_logger

__all__ = [
    "CLOSE_TIMEOUT_S",
    "KEEPALIVE_S",
    "MAX_MESSAGE_BYTES",
    "MAX_QUEUED_EVENTS",
    "ElevenLabsUpstreamSession",
    "open_session",
]

log = logging.getLogger(__name__)

#: largest upstream message accepted (an audio chunk of a long generation at 48 kHz, base64)
MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
#: how long a closing handshake may take before the TCP connection is dropped
CLOSE_TIMEOUT_S: Final = 2.0
#: send a keepalive after this long without sending anything (the service's timeout is 20 s)
KEEPALIVE_S: Final = 10.0
#: events waiting for the session before the reader stops reading the socket
MAX_QUEUED_EVENTS: Final = 64


_WIRE_LOG: Final = wire_logger(__name__)


class _End:
    """Queue marker: `events()` ends here."""


_END: Final = _End()
_Item = ProviderEvent | _End | UpstreamError


def _setup_failure(exc: BaseException, timeout_s: float, scrub: Scrubber) -> UpstreamError:
    """An `UpstreamError` with a clean message for anything that went wrong while opening."""
    if isinstance(exc, TimeoutError):  # before OSError: TimeoutError is one
        return UpstreamError(f"ElevenLabs did not answer within {timeout_s:g} s")
    if isinstance(exc, ConnectionClosed):
        detail = describe_close(exc, scrub)
        return UpstreamError(f"ElevenLabs refused the session ({detail})", retryable=not is_permanent_failure(detail))
    return handshake_error("ElevenLabs", exc, scrub)


async def open_session(
    url: str,
    api_key: str,
    translator: ElevenLabsTranslator,
    scrub: Scrubber,
    *,
    timeout_s: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
    keepalive_s: float = KEEPALIVE_S,
) -> ElevenLabsUpstreamSession:
    """Connect to `url` (a ``…/multi-stream-input?…`` WebSocket URL) and confirm the connection.

    Raises `UpstreamError` — refused upgrade, refused key (close during the first round trip), or
    `timeout_s` elapsed for the whole of it.
    """
    ws: ClientConnection | None = None
    tls: ssl.SSLContext | bool | None = None  # websockets refuses any ssl argument for a ws:// URL
    if url.startswith("wss:"):
        tls = ssl_context if ssl_context is not None else True
    try:
        async with asyncio.timeout(timeout_s):
            ws = await connect(
                url,
                additional_headers={"xi-api-key": api_key},
                compression=None,  # permessage-deflate costs 2.3x per audio frame
                max_size=MAX_MESSAGE_BYTES,
                open_timeout=None,  # the enclosing timeout covers the upgrade and the round trip
                close_timeout=CLOSE_TIMEOUT_S,
                ping_interval=None,  # our keepalive messages keep the service's own timer happy
                logger=_WIRE_LOG,
                ssl=tls,
            )
            await (await ws.ping())
    except asyncio.CancelledError:
        if ws is not None:
            ws.transport.abort()
        raise
    except (TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed, OSError) as exc:
        if ws is not None:
            await ws.close()
        raise _setup_failure(exc, timeout_s, scrub) from None
    log.debug("ElevenLabs connection open (output %s)", translator.wire_output_format)
    return ElevenLabsUpstreamSession(ws, translator, scrub, keepalive_s=keepalive_s)


class ElevenLabsUpstreamSession:
    """One ElevenLabs multi-context connection (implements `providers.base.UpstreamSession`)."""

    def __init__(
        self,
        ws: ClientConnection,
        translator: ElevenLabsTranslator,
        scrub: Scrubber,
        *,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        self._ws = ws
        self._translator = translator
        self._scrub = scrub
        self._keepalive_s = keepalive_s
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._room = asyncio.Event()
        self._room.set()
        self._send_lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self._last_send = self._loop.time()
        self._closing = False
        self._iterating = False
        self._reader = asyncio.create_task(self._read(), name="elevenlabs-reader")
        self._keeper = asyncio.create_task(self._keep_alive(), name="elevenlabs-keepalive") if keepalive_s > 0 else None

    def __repr__(self) -> str:
        state = "closing" if self._closing else "open"
        return f"<ElevenLabsUpstreamSession {state} output={self._translator.wire_output_format}>"

    @property
    def input_format(self) -> AudioFormat:
        """TTS takes no audio; this names a harmless format so generic code has one to show."""
        return self._translator.input_format

    @property
    def output_format(self) -> AudioFormat:
        return self._translator.output_format

    # -- intents -------------------------------------------------------------------------------

    async def send_audio(self, audio: bytes) -> None:
        """TTS takes no audio (the session never sends any to a TTS provider)."""

    async def commit(self, respond: bool) -> None:
        """No audio turns on a TTS provider."""

    async def send_text(self, text: str, *, final: bool, respond: bool) -> None:
        # `respond` is for chat and realtime providers: a TTS utterance is spoken as it streams in.
        await self._apply(self._translator.send_text(text, final=final))

    async def create_response(self, instructions: str | None = None) -> None:
        """A TTS provider speaks what it is given; there is nothing to ask for."""

    async def interrupt(self, response_id: str | None, played_ms: int | None) -> None:
        # ElevenLabs keeps no transcript, so there is nothing to truncate at `played_ms`.
        await self._apply(self._translator.interrupt(response_id))

    async def send_tool_result(self, call_id: str, output: str) -> None:
        """No tools on a TTS provider."""

    async def update(
        self, *, instructions: str | None, voice: str | None, tools: tuple[Mapping[str, Any], ...] | None
    ) -> None:
        await self._apply(self._translator.update(voice=voice))

    async def _apply(self, step: Step) -> None:
        for event in step.events:
            self._queue.put_nowait(event)  # never waits: an intent must not block on a slow consumer
        if step.send:
            try:
                await self._send(step.send)
            except ConnectionClosed as exc:
                if not self._closing:  # after our close(), late intents are dropped
                    raise UpstreamError(f"ElevenLabs connection lost ({describe_close(exc, self._scrub)})") from None

    async def _send(self, messages: list[dict[str, Any]]) -> None:
        async with self._send_lock:
            for message in messages:
                await self._ws.send(orjson.dumps(message), text=True)
            self._last_send = self._loop.time()

    # -- events --------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[ProviderEvent]:
        """Normalized events until the connection ends.

        Ends quietly after our `close()` or a normal close (1000) by ElevenLabs; otherwise raises
        `UpstreamError` — after a failed `ResponseDone` for every response still running.
        """
        if self._iterating:
            raise RuntimeError("events() may be iterated only once per upstream session")
        self._iterating = True
        queue = self._queue
        while True:
            item = await queue.get()
            if queue.qsize() < MAX_QUEUED_EVENTS:
                self._room.set()
            if isinstance(item, _End):
                return
            if isinstance(item, UpstreamError):
                raise item
            yield item

    async def _read(self) -> None:
        ws, translator, queue = self._ws, self._translator, self._queue
        try:
            while True:
                if queue.qsize() >= MAX_QUEUED_EVENTS:
                    self._room.clear()
                    await self._room.wait()
                step = translator.feed(await ws.recv(decode=False))
                for event in step.events:
                    queue.put_nowait(event)
                if step.send:  # held-back utterances whose turn has come
                    await self._send(step.send)
        except ConnectionClosed as exc:
            self._finish(exc)
        except Exception:  # a bug here must still end events() rather than leave it waiting forever
            log.exception("ElevenLabs reader failed")
            self._finish(None)

    def _finish(self, closed: ConnectionClosed | None) -> None:
        if self._closing:
            self._queue.put_nowait(_END)
            return
        for event in self._translator.connection_lost():
            self._queue.put_nowait(event)
        pending = self._translator.pending_error
        if closed is None:
            self._queue.put_nowait(UpstreamError("ElevenLabs adapter failed; see the relay log"))
        elif closed.rcvd is not None and closed.rcvd.code == 1000 and pending is None:
            log.info("ElevenLabs closed the connection normally")
            self._queue.put_nowait(_END)
        else:
            detail = describe_close(closed, self._scrub)
            if pending is not None and closed.rcvd is not None:
                # The error message says it whole; the close reason is the same text cut to 123 bytes.
                detail = f"code {closed.rcvd.code}: {pending}"
            self._queue.put_nowait(
                UpstreamError(f"ElevenLabs connection lost ({detail})", retryable=not is_permanent_failure(detail))
            )

    async def _keep_alive(self) -> None:
        interval = self._keepalive_s
        while True:
            await asyncio.sleep(max(0.0, self._last_send + interval - self._loop.time()))
            if self._loop.time() - self._last_send < interval:
                continue  # something was sent meanwhile
            try:
                await self._send(self._translator.keepalive().send)
            except ConnectionClosed:
                return  # the reader reports the loss

    async def close(self) -> None:
        """Close with 1000. Idempotent; `events()` then ends without an error."""
        self._closing = True
        if self._keeper is not None:
            self._keeper.cancel()
        await self._ws.close(1000)
        if not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._queue.put_nowait(_END)
