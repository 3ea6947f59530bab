"""The Gemini Live upstream connection: sockets around `GeminiTranslator`, and rollover.

`Dialer.dial` opens one WebSocket, sends the translator's ``setup`` and waits for ``setupComplete``.
`GeminiUpstreamSession` sends the translator's messages and runs one reader task per socket that
feeds it server frames and queues the events (`Outbox`) for `events()`.

**Rollover.** A Gemini connection lives about ten minutes; the server announces the end with
``goAway {timeLeft}``. The session then moves to a new connection that resumes the conversation
(``sessionResumption.handle`` = the latest handle), without the relay session noticing:

1. it waits for a turn boundary (`GeminiTranslator.at_boundary`: no model turn running, no manual
   activity open, a handle issued after the last turn), but no longer than the goAway allows, and
   at once if the old connection goes away first;
2. from then on, intents (audio, commits, texts, tool results) are held in order instead of sent;
3. the old connection is left (a response still in flight ends as failed, exactly once) and the
   new one is dialled with the handle;
4. the held intents go out on the new connection, in order, and reading continues there.

The same happens proactively once a connection is ``max_connection_s`` old (at a turn boundary,
with no deadline: if none comes, the server's goAway will), and after `update` (Gemini only takes
configuration in ``setup``). A socket that fails without a goAway is an error: the response in
flight ends as failed, then `events()` raises `UpstreamError`. Messages never carry the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Final, TypeAlias

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from audiocodecs.format import AudioFormat
from providers.base import UpstreamError
from providers.events import ProviderEvent
from providers.gemini.outbox import Outbox
from providers.gemini.translator import GeminiTranslator
from providers.gemini.wire import INPUT_FORMAT, Scrubber
from providers.sockets import describe_close, handshake_error, wire_logger

__all__ = [
    "CLOSE_TIMEOUT_S",
    "GO_AWAY_DEFAULT_S",
    "MAX_HELD_AUDIO_MS",
    "MAX_MESSAGE_BYTES",
    "UPDATE_MAX_WAIT_S",
    "Dialer",
    "GeminiUpstreamSession",
]

log = logging.getLogger(__name__)

#: largest server message accepted (audio chunks are small; grounding metadata can be large)
MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
#: how long a closing handshake may take before the TCP connection is dropped
CLOSE_TIMEOUT_S: Final = 2.0
#: a goAway without a readable ``timeLeft`` is taken to leave this long
GO_AWAY_DEFAULT_S: Final = 5.0
#: the swap starts at most this long (or a quarter of ``timeLeft``, if less) before the goAway deadline
GO_AWAY_MARGIN_S: Final = 1.0
#: after `update`, a turn boundary is awaited at most this long before the swap is forced
UPDATE_MAX_WAIT_S: Final = 10.0
#: input audio held during a swap; beyond it the oldest is dropped (and logged): ≈ 1 MB at 16 kHz
MAX_HELD_AUDIO_MS: Final = 30_000
_HELD_AUDIO_BYTES: Final = int(MAX_HELD_AUDIO_MS * INPUT_FORMAT.bytes_per_ms)
#: WebSocket close codes whose cause repeats on retry: 1007 invalid argument or key, 1008 not found / not allowed
_PERMANENT_CLOSE: Final = frozenset({1007, 1008})

#: an intent held during a swap: raw audio, a thunk asking the translator for messages when it is
#: sent (its state then matches the new connection), or messages computed already
_Op: TypeAlias = tuple[str, Any]


_WIRE_LOG: Final = wire_logger(__name__)


def _close_error(exc: ConnectionClosed, scrub: Scrubber, what: str) -> UpstreamError:
    permanent = exc.rcvd is not None and exc.rcvd.code in _PERMANENT_CLOSE
    return UpstreamError(f"Gemini {what} ({describe_close(exc, scrub)})", retryable=not permanent)


class Dialer:
    """Opens configured Gemini connections to one URL with one key (its repr never shows the key)."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        scrub: Scrubber,
        *,
        timeout_s: float = 10.0,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.url = url
        self._headers = dict(headers)
        self._scrub = scrub
        self.timeout_s = timeout_s
        self._ssl = ssl if url.startswith("wss:") else None

    def __repr__(self) -> str:
        return f"Dialer({self.url!r}, timeout_s={self.timeout_s})"

    async def dial(self, translator: GeminiTranslator) -> tuple[ClientConnection, list[ProviderEvent]]:
        """Connect, send the translator's ``setup``, wait for ``setupComplete``. Returns the socket and
        any events that came before it. Raises `UpstreamError` (also for ``timeout_s`` elapsed)."""
        ws: ClientConnection | None = None
        # websockets wants no ``ssl`` at all (not None) to use the system's trust for wss://
        tls: dict[str, Any] = {"ssl": self._ssl} if self._ssl is not None else {}
        try:
            async with asyncio.timeout(self.timeout_s):
                ws = await connect(
                    self.url,
                    additional_headers=self._headers,
                    **tls,
                    compression=None,  # permessage-deflate costs 2.3x per audio frame
                    max_size=MAX_MESSAGE_BYTES,
                    open_timeout=None,  # the enclosing timeout covers the upgrade and the setup
                    close_timeout=CLOSE_TIMEOUT_S,
                    logger=_WIRE_LOG,
                )
                await ws.send(orjson.dumps(translator.setup()), text=True)
                pending: list[ProviderEvent] = []
                while not translator.ready:
                    pending += translator.feed(await ws.recv(decode=False))
                return ws, pending
        except asyncio.CancelledError:
            translator.abort_setup()
            if ws is not None:
                ws.transport.abort()
            raise
        except (TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed, OSError) as exc:
            translator.abort_setup()
            if ws is not None:
                await ws.close()
            raise self._failure(exc) from None

    def _failure(self, exc: BaseException) -> UpstreamError:
        if isinstance(exc, TimeoutError):  # before OSError: TimeoutError is one
            return UpstreamError(f"Gemini did not get ready within {self.timeout_s:g} s")
        if isinstance(exc, ConnectionClosed):
            return _close_error(exc, self._scrub, "closed the connection during setup")
        return handshake_error("Gemini", exc, self._scrub)


class GeminiUpstreamSession:
    """One Gemini Live session over one or more connections (implements `providers.base.UpstreamSession`)."""

    def __init__(
        self,
        dialer: Dialer,
        translator: GeminiTranslator,
        ws: ClientConnection,
        pending: Sequence[ProviderEvent] = (),
        *,
        scrub: Scrubber,
        max_connection_s: float | None = None,
    ) -> None:
        self._dialer = dialer
        self._tr = translator
        self._ws = ws
        self._scrub = scrub
        self._max_connection_s = max_connection_s
        self._out = Outbox()
        self._out.extend(pending)
        self._closing = False
        self._iterating = False
        self._ops: deque[_Op] | None = None  # not None while a swap holds intents back
        self._held_audio_bytes = 0
        #: input audio dropped because a swap held more than `MAX_HELD_AUDIO_MS` (logged once per swap)
        self._dropped_audio_bytes = 0
        self._drop_logged = False
        self._roll_task: asyncio.Task[None] | None = None
        self._roll_deadline: float | None = None
        self._roll_wake = asyncio.Event()
        self._old_lost = False
        self._age_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: connections moved to (goAway, age or update), for logs and tests
        self.rollovers = 0
        self._reader = self._start_reader(ws)
        self._arm_age_timer()

    def __repr__(self) -> str:
        state = "closing" if self._closing else ("swapping" if self._ops is not None else "open")
        return f"<GeminiUpstreamSession {state} rollovers={self.rollovers}>"

    @property
    def input_format(self) -> AudioFormat:
        return self._tr.input_format

    @property
    def output_format(self) -> AudioFormat:
        return self._tr.output_format

    @property
    def swapping(self) -> bool:
        """Intents are being held for a new connection."""
        return self._ops is not None

    @property
    def dropped_audio_ms(self) -> float:
        """Input audio lost because a swap held more than `MAX_HELD_AUDIO_MS` of it."""
        return INPUT_FORMAT.duration_ms(self._dropped_audio_bytes)

    # -- intents -------------------------------------------------------------------------------

    async def send_audio(self, audio: bytes) -> None:
        if self._ops is not None:
            self._hold(("audio", audio))
            return
        tr = self._tr
        try:
            if tr.activity_start_due:
                await self._ws.send(tr.start_activity(), text=True)
            await self._ws.send(tr.append_audio(audio), text=True)
        except ConnectionClosed as exc:
            self._lost_while_sending(exc, ("audio", audio))

    async def commit(self, respond: bool) -> None:
        await self._intent(lambda: self._tr.commit(respond))

    async def send_text(self, text: str, *, final: bool, respond: bool) -> None:
        await self._intent(lambda: self._tr.send_text(text, final=final, respond=respond))

    async def create_response(self, instructions: str | None = None) -> None:
        await self._intent(lambda: self._tr.create_response(instructions))

    async def interrupt(self, response_id: str | None, played_ms: int | None) -> None:
        # The events go out at once: the response is over for the relay whatever the socket does.
        messages, events = self._tr.interrupt(response_id, played_ms)
        self._out.extend(events)
        if messages:
            await self._intent(lambda: messages)

    async def send_tool_result(self, call_id: str, output: str) -> None:
        await self._intent(lambda: self._tr.tool_result(call_id, output))

    async def update(
        self, *, instructions: str | None, voice: str | None, tools: tuple[Mapping[str, Any], ...] | None
    ) -> None:
        if self._tr.update(instructions=instructions, voice=voice, tools=tools):
            log.info("Gemini takes configuration only at setup: moving to a new connection")
            self._request_rollover(asyncio.get_running_loop().time() + UPDATE_MAX_WAIT_S)

    async def _intent(self, make: Callable[[], list[dict[str, Any]]]) -> None:
        if self._ops is not None:
            self._hold(("thunk", make))
            return
        messages = make()
        try:
            for message in messages:
                await self._ws.send(orjson.dumps(message), text=True)
        except ConnectionClosed as exc:
            self._lost_while_sending(exc, ("messages", messages))

    def _lost_while_sending(self, exc: ConnectionClosed, op: _Op) -> None:
        if self._closing:
            return  # we closed it: late intents are dropped
        if self._roll_task is not None:
            # The server closed the connection after its goAway, before we swapped: keep the intent.
            if self._ops is None:
                self._ops = deque()
            self._hold(op)
            return
        raise UpstreamError(f"Gemini connection lost ({describe_close(exc, self._scrub)})") from None

    def _hold(self, op: _Op) -> None:
        ops = self._ops
        assert ops is not None
        ops.append(op)
        if op[0] != "audio":
            return
        self._held_audio_bytes += len(op[1])
        if self._held_audio_bytes <= _HELD_AUDIO_BYTES:
            return
        # Drop the oldest audio, keeping every other intent in its place (in place: `_flush` may be
        # iterating this very deque).
        kept: list[_Op] = []
        while self._held_audio_bytes > _HELD_AUDIO_BYTES:
            kind, payload = old = ops.popleft()
            if kind == "audio":
                self._held_audio_bytes -= len(payload)
                self._dropped_audio_bytes += len(payload)
            else:
                kept.append(old)
        ops.extendleft(reversed(kept))
        if not self._drop_logged:
            self._drop_logged = True
            log.warning("Gemini swap takes long: dropping the oldest held input audio beyond %d ms", MAX_HELD_AUDIO_MS)

    # -- events --------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[ProviderEvent]:
        """Normalized events until the session ends, across connections.

        Ends quietly after our `close()` or a normal close (1000) without a goAway; otherwise raises
        `UpstreamError` — after a failed `ResponseDone` for the response in flight.
        """
        if self._iterating:
            raise RuntimeError("events() may be iterated only once per upstream session")
        self._iterating = True
        out = self._out
        while True:
            event = await out.get()
            if event is None:
                return
            yield event

    def _start_reader(self, ws: ClientConnection) -> asyncio.Task[None]:
        return asyncio.create_task(self._read(ws), name="gemini-reader")

    async def _read(self, ws: ClientConnection) -> None:
        tr, out = self._tr, self._out
        try:
            while True:
                frame = await ws.recv(decode=False)
                events = tr.feed(frame)
                if events:
                    out.extend(events)
                    if out.full:
                        await out.wait_for_room()
                if tr.go_away_pending:
                    self._on_go_away(tr.take_go_away())
                if self._roll_task is not None:
                    self._roll_wake.set()
        except ConnectionClosed as exc:
            if self._closing or ws is not self._ws:
                return
            out.extend(tr.connection_lost())
            if self._roll_task is not None:
                self._old_lost = True  # the swap goes on, now
                self._roll_wake.set()
                return
            received = exc.rcvd
            if received is not None and received.code == 1000:
                log.info("Gemini closed the connection normally")
                out.finish()
            else:
                out.finish(_close_error(exc, self._scrub, "connection lost"))
        except Exception:  # a bug in the adapter: fail this session's upstream loudly, not the relay
            log.exception("Gemini reader failed")
            out.extend(tr.connection_lost())
            out.finish(UpstreamError("Gemini adapter failed (see the relay log)"))

    # -- rollover ------------------------------------------------------------------------------

    def _arm_age_timer(self) -> None:
        if self._age_timer is not None:
            self._age_timer.cancel()
        if self._max_connection_s is not None and self._max_connection_s > 0:
            loop = asyncio.get_running_loop()
            self._age_timer = loop.call_later(self._max_connection_s, self._request_rollover, None)

    def _on_go_away(self, time_left_s: float | None) -> None:
        left = GO_AWAY_DEFAULT_S if time_left_s is None else time_left_s
        margin = min(GO_AWAY_MARGIN_S, left / 4)
        log.info("Gemini goAway: %.1f s left on this connection", left)
        self._request_rollover(asyncio.get_running_loop().time() + max(0.0, left - margin))

    def _request_rollover(self, deadline: float | None) -> None:
        """Move to a new connection at the next turn boundary, and by ``deadline`` (loop time) at the latest."""
        if self._closing or self._out.ended:
            return
        if deadline is not None:
            self._roll_deadline = deadline if self._roll_deadline is None else min(self._roll_deadline, deadline)
        if self._roll_task is None:
            self._roll_task = asyncio.create_task(self._roll_over(), name="gemini-rollover")
        self._roll_wake.set()

    async def _roll_over(self) -> None:
        try:
            await self._wait_for_boundary()
            await self._swap()
        except UpstreamError as exc:
            self._ops = None
            self._out.finish(exc)
            self._closing_ws(self._ws)
        finally:
            self._roll_task = None
            self._roll_deadline = None
            self._old_lost = False

    async def _wait_for_boundary(self) -> None:
        loop = asyncio.get_running_loop()
        tr, wake = self._tr, self._roll_wake
        while True:
            wake.clear()
            if self._old_lost or tr.at_boundary:
                return
            deadline = self._roll_deadline
            timeout = None if deadline is None else deadline - loop.time()
            if timeout is not None and timeout <= 0:
                log.info("Gemini rollover: no turn boundary before the deadline; moving mid-turn")
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout)

    async def _swap(self) -> None:
        if self._ops is None:
            self._ops = deque()
        old = self._ws
        if not self._old_lost:
            self._reader.cancel()
            self._out.extend(self._tr.connection_lost())
        self._closing_ws(old)
        new, pending = await self._dialer.dial(self._tr)
        if self._closing:
            self._closing_ws(new)
            return
        self._ws = new
        self._reader = self._start_reader(new)
        self._out.extend(pending)
        self.rollovers += 1
        self._arm_age_timer()
        log.info("Gemini session moved to a new connection (%s)", "resumed" if self._tr.resume_handle else "fresh")
        await self._flush(new)

    async def _flush(self, ws: ClientConnection) -> None:
        """Send the held intents in order; intents made meanwhile join the queue until it is empty."""
        ops = self._ops
        assert ops is not None
        tr = self._tr
        try:
            while ops:
                kind, payload = ops.popleft()
                if kind == "audio":
                    if tr.activity_start_due:
                        await ws.send(tr.start_activity(), text=True)
                    await ws.send(tr.append_audio(payload), text=True)
                    continue
                for message in payload() if kind == "thunk" else payload:
                    await ws.send(orjson.dumps(message), text=True)
        except ConnectionClosed:
            pass  # this connection's reader reports the loss
        finally:
            self._ops = None
            self._held_audio_bytes = 0
            self._drop_logged = False

    def _closing_ws(self, ws: ClientConnection) -> None:
        """Close a socket we are done with, in the background."""
        task = asyncio.create_task(ws.close(1000), name="gemini-close-old")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- closing ---------------------------------------------------------------------------------

    async def close(self) -> None:
        """Close with 1000. Idempotent; `events()` then ends without an error."""
        if self._closing:
            return
        self._closing = True
        if self._age_timer is not None:
            self._age_timer.cancel()
        tasks = [t for t in (self._roll_task, self._reader) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._out.finish()
        await self._ws.close(1000)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
