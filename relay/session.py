"""The session core: one client joined to one upstream provider.

Two pumps move data: the transport's read loop calls `handle`/`handle_audio` (client → upstream),
and `_upstream_pump` reads provider events (upstream → client) into the bounded `OutboundQueue`
that the transport's writer drains. The session knows neither the client's framing nor the
provider's wire format: it speaks `relay.protocol` messages on one side and `providers.events`
on the other, and converts audio with one streaming `Transcoder` per direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from audiocodecs.errors import AudioError
from audiocodecs.format import AudioFormat, Encoding
from audiocodecs.opus import FRAME_MS as OPUS_FRAME_MS
from audiocodecs.transcode import Transcoder
from providers import events as ev
from providers.base import Provider, SessionConfig, UpstreamError, UpstreamSession
from relay import protocol as p
from relay.config import Settings
from relay.directory import ProviderDirectory
from relay.errors import (
    CLOSE_NORMAL,
    InvalidAudio,
    InvalidMessage,
    InvalidState,
    QuotaExceeded,
    RelayError,
    TooManyInvalid,
    Unsupported,
    UpstreamFailed,
)
from relay.metering.events import UsageEvent
from relay.metering.sink import UsageSink
from relay.metrics import RelayMetrics
from relay.outbound import OutboundQueue

LOG = logging.getLogger("relay.session")

# How long a closing session waits for the provider to confirm in-flight responses (with their
# usage) before it reports what it measured itself.
SETTLE_TIMEOUT_S = 3.0
# Playback reports are kept for this many recent responses (barge-in may follow response.done).
RECENT_RESPONSES = 8


class SessionState(StrEnum):
    AWAITING_START = "awaiting_start"
    CONNECTING = "connecting"
    ACTIVE = "active"
    CLOSING = "closing"
    CLOSED = "closed"


_TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.AWAITING_START: frozenset({SessionState.CONNECTING, SessionState.CLOSING}),
    SessionState.CONNECTING: frozenset({SessionState.ACTIVE, SessionState.CLOSING}),
    SessionState.ACTIVE: frozenset({SessionState.CLOSING}),
    SessionState.CLOSING: frozenset({SessionState.CLOSED}),
    SessionState.CLOSED: frozenset(),
}


class IllegalTransition(RuntimeError):
    pass


@dataclass(slots=True)
class ResponseTrack:
    response_id: str
    audio_ms: float = 0.0  # audio received from the provider for this response
    cancelled: bool = False
    done: bool = False


class Session:
    def __init__(
        self,
        *,
        settings: Settings,
        directory: ProviderDirectory,
        sink: UsageSink,
        tenant: str,
        outbound: OutboundQueue,
        metrics: RelayMetrics | None = None,
        over_budget: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.sink = sink
        self.tenant = tenant
        self.outbound = outbound
        self.metrics = metrics
        self._over_budget = over_budget
        self._budget_task: asyncio.Task[None] | None = None
        self.session_id = "sess_" + uuid.uuid4().hex[:24]
        self.state = SessionState.AWAITING_START
        self.start: p.SessionStart | None = None
        self.provider: Provider | None = None
        self.model = ""
        self.upstream: UpstreamSession | None = None
        self.output_framing = "binary"
        self._in_tc: Transcoder | None = None
        self._out_tc: Transcoder | None = None
        self._client_out: AudioFormat | None = None
        self._provider_in: AudioFormat | None = None
        self._provider_out: AudioFormat | None = None
        self._pump: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._responses: dict[str, ResponseTrack] = {}
        self._recent: OrderedDict[str, ResponseTrack] = OrderedDict()
        self._played: dict[str, int] = {}
        self._latest: ResponseTrack | None = None
        self._settled = asyncio.Event()
        self._settled.set()
        self._pending_in_ms = 0.0
        self._overflowing = False
        self.totals = ev.Usage()
        self._invalid_times: list[float] = []
        self.invalid_audio_frames = 0
        self.cancelled_audio_chunks = 0
        self.closed = asyncio.Event()

    # -- state ---------------------------------------------------------------------------------

    def _to(self, state: SessionState) -> None:
        if state not in _TRANSITIONS[self.state]:
            raise IllegalTransition(f"{self.state} -> {state}")
        self.state = state

    @property
    def active(self) -> bool:
        return self.state is SessionState.ACTIVE

    # -- client → upstream ---------------------------------------------------------------------

    async def handle(self, msg: p.ClientMessage) -> None:
        """One parsed client message. Raises `RelayError` for the transport to report."""
        if self.state in (SessionState.CLOSING, SessionState.CLOSED):
            return
        try:
            await self._handle(msg)
        except UpstreamError as exc:
            # The upstream failed while we were talking to it: the same end as when the pump sees it.
            raise UpstreamFailed(str(exc)) from None

    async def _handle(self, msg: p.ClientMessage) -> None:
        if isinstance(msg, p.SessionStart):
            await self._start(msg)
            return
        if self.state is not SessionState.ACTIVE:
            # Protocol §4: nothing but session.start is accepted before it (not even ping).
            raise InvalidState(f"{_type_of(msg)} before session.start")
        if isinstance(msg, p.Ping):
            self.outbound.put_event({"type": "pong", "id": msg.id})
            return
        upstream = self.upstream
        assert upstream is not None
        match msg:
            case p.AudioIn(audio=audio):
                await self.handle_audio(audio)
            case p.AudioCommit(respond=respond):
                await self._flush_input()
                await upstream.commit(respond)
            case p.TextIn(text=text, final=final, respond=respond):
                await upstream.send_text(text, final=final, respond=respond)
            case p.ResponseCreate(instructions=instructions):
                await upstream.create_response(instructions)
            case p.ResponseCancel():
                await self._barge_in()
            case p.Playback(response_id=rid, played_ms=played):
                self._played[rid] = played
            case p.ToolResult(call_id=call_id, output=output):
                await upstream.send_tool_result(call_id, output)
            case p.SessionUpdate(instructions=instructions, voice=voice, tools=tools):
                await upstream.update(instructions=instructions, voice=voice, tools=tools)
            case p.SessionEnd():
                await self.finish("client_end", CLOSE_NORMAL)

    async def handle_audio(self, data: bytes) -> None:
        """User audio in the session's input format: the per-frame hot path."""
        if self.state is not SessionState.ACTIVE:
            if self.state is SessionState.AWAITING_START:
                raise InvalidState("audio before session.start")
            return
        tc = self._in_tc
        if tc is None:
            raise InvalidAudio("this session's provider does not take audio input")
        try:
            chunks = tc.feed(data)
        except AudioError as exc:
            self.invalid_audio_frames += 1
            raise InvalidAudio(f"frame dropped: {exc}") from None
        upstream = self.upstream
        assert upstream is not None and self._provider_in is not None
        try:
            for chunk in chunks:
                self._pending_in_ms += self._provider_in.duration_ms(len(chunk))
                await upstream.send_audio(chunk)
        except UpstreamError as exc:
            raise UpstreamFailed(str(exc)) from None

    async def _flush_input(self) -> None:
        if self._in_tc is None or self.upstream is None:
            return
        assert self._provider_in is not None
        for chunk in self._in_tc.flush():
            self._pending_in_ms += self._provider_in.duration_ms(len(chunk))
            await self.upstream.send_audio(chunk)

    def note_invalid(self, now: float | None = None) -> None:
        """Count a malformed message; too many in a minute ends the session (protocol §6)."""
        now = time.monotonic() if now is None else now
        window = [t for t in self._invalid_times if now - t < 60.0]
        window.append(now)
        self._invalid_times = window
        if len(window) >= self.settings.invalid_messages_per_minute:
            raise TooManyInvalid(f"{len(window)} invalid messages within a minute")

    # -- start ---------------------------------------------------------------------------------

    async def _start(self, msg: p.SessionStart) -> None:
        if self.state is not SessionState.AWAITING_START:
            raise InvalidState("session.start was already received")
        candidates = self._candidates(msg)
        self._to(SessionState.CONNECTING)
        self.start = msg
        self.output_framing = msg.output_audio_framing
        last_error = "no provider could be reached"
        for provider, model in candidates:
            config = SessionConfig(
                model=model,
                client_input=msg.input_audio,
                client_output=msg.output_audio,
                voice=msg.voice,
                instructions=msg.instructions,
                modalities=msg.modalities,
                turn_detection=msg.turn_detection,
                tools=msg.tools,
                metadata=msg.metadata,
            )
            try:
                upstream = await provider.connect(config)
            except UpstreamError as exc:
                last_error = f"{provider.name}: {exc}"
                LOG.warning("session %s: upstream %s refused: %s", self.session_id, provider.name, exc)
                continue
            self._attach(provider, model, upstream, msg)
            return
        raise UpstreamFailed(last_error)

    def _candidates(self, msg: p.SessionStart) -> list[tuple[Provider, str]]:
        out: list[tuple[Provider, str]] = []
        for i, name in enumerate((msg.provider, *msg.fallback)):
            provider = self.directory.get(name)
            if provider is None:
                raise Unsupported(f"unknown provider {name[:64]!r}; available: {', '.join(self.directory.names())}")
            missing = [m for m in msg.modalities if m not in provider.modalities]
            if missing:
                raise Unsupported(f"provider {name!r} cannot produce {missing[0]!r}")
            # The client's model names the primary provider's model; fallbacks use their default.
            model = (msg.model if i == 0 else None) or provider.default_model
            if not provider.supports_model(model):
                raise Unsupported(f"provider {name!r} has no model {model[:64]!r}")
            out.append((provider, model))
        return out

    def _attach(self, provider: Provider, model: str, upstream: UpstreamSession, msg: p.SessionStart) -> None:
        self.provider, self.model, self.upstream = provider, model, upstream
        self._provider_in = upstream.input_format
        self._provider_out = upstream.output_format
        self._client_out = msg.output_audio
        if provider.kind != "tts":
            self._in_tc = Transcoder(
                msg.input_audio, upstream.input_format, quality=self.settings.input_resample_quality
            )
        self._out_tc = Transcoder(
            upstream.output_format, msg.output_audio, quality=self.settings.output_resample_quality
        )
        self._to(SessionState.ACTIVE)
        self.outbound.put_event(
            {
                "type": "session.started",
                "session_id": self.session_id,
                "provider": provider.name,
                "model": model,
                "input_audio": msg.input_audio.to_dict(),
                "output_audio": msg.output_audio.to_dict(),
                "limits": {
                    "max_message_bytes": self.settings.max_message_bytes,
                    "max_session_s": self.settings.max_session_s,
                },
            }
        )
        self._pump = asyncio.create_task(self._upstream_pump(), name=f"pump-{self.session_id}")
        self._timer = asyncio.create_task(self._deadline(), name=f"deadline-{self.session_id}")
        LOG.info(
            "session %s started: tenant=%s provider=%s model=%s", self.session_id, self.tenant, provider.name, model
        )

    async def _deadline(self) -> None:
        await asyncio.sleep(self.settings.max_session_s)
        await self.finish("max_session_duration", CLOSE_NORMAL)

    # -- upstream → client ---------------------------------------------------------------------

    async def _upstream_pump(self) -> None:
        upstream = self.upstream
        assert upstream is not None
        try:
            async for event in upstream.events():
                await self._on_event(event)
        except UpstreamError as exc:
            self._fail_in_flight()
            await self.finish("upstream_error", UpstreamFailed.close_code or 1014, UpstreamFailed(str(exc)))
            return
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in an adapter or here: contain it to this session, log it, close 1011
            LOG.exception("session %s: upstream pump failed", self.session_id)
            self._fail_in_flight()
            await self.finish("internal_error", 1011, RelayError("internal error"))
            return
        # The provider closed cleanly without being asked to.
        if self.state is SessionState.ACTIVE:
            self._fail_in_flight()
            await self.finish("upstream_closed", 1014, UpstreamFailed("the provider closed the connection"))

    async def _on_event(self, event: ev.ProviderEvent) -> None:
        out = self.outbound
        match event:
            case ev.AudioDelta(response_id=rid, audio=audio):
                track = self._track(rid)
                if track.cancelled:
                    self.cancelled_audio_chunks += 1
                    return
                assert self._provider_out is not None and self._out_tc is not None
                track.audio_ms += self._provider_out.duration_ms(len(audio))
                self._queue_audio(rid, self._out_tc.feed(audio))
                if out.has_room():
                    self._overflowing = False
                elif not self._overflowing:
                    # Pause reading upstream once per stall; if the client still does not drain,
                    # stop pausing and let the hard limit drop the oldest audio until it catches up.
                    wait_s = self.settings.backpressure_max_wait_ms / 1000
                    if not await out.wait_for_room(wait_s):
                        self._overflowing = True
                        LOG.info("session %s: client not draining; dropping oldest audio", self.session_id)
            case ev.ResponseStarted(response_id=rid):
                self._track(rid)
            case ev.TranscriptDelta(role=role, text=text, response_id=rid):
                if not self._is_cancelled(rid):
                    out.put_event({"type": "transcript.delta", "role": role, "text": text, "response_id": rid})
            case ev.TranscriptDone(role=role, text=text, response_id=rid):
                out.put_event({"type": "transcript.done", "role": role, "text": text, "response_id": rid})
            case ev.TextDelta(response_id=rid, text=text):
                self._track(rid)
                if not self._is_cancelled(rid):
                    out.put_event({"type": "text.delta", "text": text, "response_id": rid})
            case ev.TextDone(response_id=rid, text=text):
                out.put_event({"type": "text.done", "text": text, "response_id": rid})
            case ev.Alignment():
                if not self._is_cancelled(event.response_id):
                    msg: dict[str, Any] = {
                        "type": "alignment",
                        "response_id": event.response_id,
                        "start_ms": event.start_ms,
                        "duration_ms": event.duration_ms,
                    }
                    if event.chars is not None:
                        msg["chars"] = event.chars
                    if event.words is not None:
                        msg["words"] = event.words
                    out.put_event(msg)
            case ev.ToolCall(call_id=call_id, name=name, arguments=arguments):
                out.put_event({"type": "tool.call", "call_id": call_id, "name": name, "arguments": arguments})
            case ev.SpeechStarted():
                out.put_event({"type": "speech.started"})
                await self._barge_in()
            case ev.SpeechStopped():
                out.put_event({"type": "speech.stopped"})
            case ev.ResponseDone():
                self._response_done(event)
            case ev.ProviderError(code=code, message=message, fatal=fatal):
                if fatal:
                    raise UpstreamError(message, code=code)
                out.put_event({"type": "error", "code": "upstream_error", "message": message, "fatal": False})

    def _track(self, rid: str) -> ResponseTrack:
        track = self._responses.get(rid)
        if track is None:
            track = self._recent.get(rid)
            if track is not None:
                return track
            track = ResponseTrack(rid)
            self._responses[rid] = track
            self._latest = track
            self._settled.clear()
            self.outbound.put_event({"type": "response.started", "response_id": rid})
        return track

    def _is_cancelled(self, rid: str | None) -> bool:
        if rid is None:
            return False
        track = self._responses.get(rid) or self._recent.get(rid)
        return track is not None and track.cancelled

    def _queue_audio(self, rid: str, chunks: list[bytes]) -> None:
        fmt = self._client_out
        assert fmt is not None
        opus = fmt.encoding is Encoding.OPUS
        for chunk in chunks:
            ms = OPUS_FRAME_MS if opus else fmt.duration_ms(len(chunk))
            self.outbound.put_audio(chunk, rid, ms)

    def _response_done(self, event: ev.ResponseDone) -> None:
        rid = event.response_id
        track = self._responses.pop(rid, None) or ResponseTrack(rid)
        track.done = True
        self._remember(track)
        status = event.status
        if track.cancelled:
            status = ev.ResponseStatus.CANCELLED
        elif self._out_tc is not None:
            self._queue_audio(rid, self._out_tc.flush())
        usage = event.usage.copy()
        usage.audio_out_ms = round(track.audio_ms)
        usage.audio_in_ms = round(self._pending_in_ms)
        self._pending_in_ms = 0.0
        self._account(usage, rid, status)
        if self.metrics is not None and self.provider is not None:
            self.metrics.responses.labels(self.provider.name, status.value).inc()
        self.outbound.put_event(
            {"type": "response.done", "response_id": rid, "status": status.value, "usage": usage.to_dict()}
        )
        if not self._responses:
            self._settled.set()
        self._schedule_budget_check()

    def _schedule_budget_check(self) -> None:
        """After each response, check the tenant's budget in the background: the check reads the
        store, so it must never hold up the upstream pump or the audio."""
        if self._over_budget is None or self.state is not SessionState.ACTIVE:
            return
        if self._budget_task is None or self._budget_task.done():
            self._budget_task = asyncio.create_task(self._check_budget(), name=f"budget-{self.session_id}")

    async def _check_budget(self) -> None:
        assert self._over_budget is not None
        if await self._over_budget():
            await self.finish("quota_exceeded", QuotaExceeded.close_code or 1008, QuotaExceeded("budget reached"))

    def _remember(self, track: ResponseTrack) -> None:
        self._recent[track.response_id] = track
        while len(self._recent) > RECENT_RESPONSES:
            old, _ = self._recent.popitem(last=False)
            self._played.pop(old, None)

    def _fail_in_flight(self) -> None:
        """The upstream is gone: report what each unfinished response produced, as measured here."""
        for rid in list(self._responses):
            self._response_done(ev.ResponseDone(rid, ev.ResponseStatus.FAILED))

    def _account(self, usage: ev.Usage, rid: str | None, status: ev.ResponseStatus, kind: str = "response") -> None:
        if kind == "response":
            self.totals.add(usage)
        self.sink.emit(
            UsageEvent(
                event_id=UsageEvent.new_id(),
                kind="response" if kind == "response" else "session",
                tenant=self.tenant,
                session_id=self.session_id,
                response_id=rid,
                provider=self.provider.name if self.provider else "",
                model=self.model,
                usage=usage,
                ts_ms=int(time.time() * 1000),
                status=status.value,
                metadata=dict(self.start.metadata) if self.start else {},
            )
        )

    # -- barge-in ------------------------------------------------------------------------------

    async def _barge_in(self) -> None:
        """Stop the latest response: no more of its audio reaches the client, cancel it upstream,
        and truncate the assistant's turn at what the client reported having played."""
        track = self._latest
        if track is None or self.upstream is None:
            return
        in_flight = not track.done
        if in_flight:
            track.cancelled = True
        dropped = self.outbound.drop_response(track.response_id)
        if dropped and self._out_tc is not None:
            self._out_tc.reset()
        played = self._played.get(track.response_id)
        if played is None:
            # No report: the client cannot have played more than we handed to its socket.
            played = max(0, round(track.audio_ms - dropped))
        if in_flight or played < track.audio_ms:
            await self.upstream.interrupt(track.response_id if in_flight else None, played)
        if not in_flight:
            self._latest = None

    # -- ending --------------------------------------------------------------------------------

    async def finish(self, reason: str, close_code: int, error: RelayError | None = None) -> None:
        """End the session once: settle usage, tell the client, close the upstream and the socket."""
        if self.state in (SessionState.CLOSING, SessionState.CLOSED):
            return
        self._to(SessionState.CLOSING)
        current = asyncio.current_task()
        if self._timer is not None and self._timer is not current:
            self._timer.cancel()
        if self._budget_task is not None and self._budget_task is not current:
            self._budget_task.cancel()
        if error is not None:
            self.outbound.put_event({"type": "error", "code": error.code, "message": error.message, "fatal": True})
        await self._settle(current)
        if self.upstream is not None:
            with contextlib.suppress(Exception):
                await self.upstream.close()
        self._emit_summary(reason)
        self.outbound.put_event({"type": "session.ended", "reason": reason, "usage": self.totals.to_dict()})
        self.outbound.put_event({"type": "__close__", "code": close_code})
        self.outbound.close()
        self._to(SessionState.CLOSED)
        self._record_metrics(reason)
        self.closed.set()
        LOG.info("session %s ended: %s (%d)", self.session_id, reason, close_code)

    async def _settle(self, current: asyncio.Task[Any] | None) -> None:
        pump = self._pump
        if pump is None or pump is current:
            self._fail_in_flight()
            return
        if self._responses and self.upstream is not None:
            for track in list(self._responses.values()):
                track.cancelled = True
                self.outbound.drop_response(track.response_id)
                with contextlib.suppress(Exception):
                    await self.upstream.interrupt(track.response_id, self._played.get(track.response_id))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), SETTLE_TIMEOUT_S)
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
        self._fail_in_flight()

    def _record_metrics(self, reason: str) -> None:
        m = self.metrics
        if m is None:
            return
        m.sessions_ended.labels(reason).inc()
        m.audio_in_ms.inc(self.totals.audio_in_ms)
        m.audio_out_ms.inc(self.totals.audio_out_ms)
        m.dropped_audio_ms.inc(self.outbound.dropped_ms)
        m.invalid_audio_frames.inc(self.invalid_audio_frames)

    def _emit_summary(self, reason: str) -> None:
        summary = self.totals.copy()
        summary.audio_in_ms += round(self._pending_in_ms)
        self._pending_in_ms = 0.0
        if self.provider is not None:
            self._account(summary, None, ev.ResponseStatus.COMPLETED, kind="session")

    async def client_gone(self) -> None:
        """The client vanished: settle and report usage all the same."""
        await self.finish("client_gone", 1006)

    async def shut_down(self, reason: str, close_code: int) -> None:
        await self.finish(reason, close_code)

    async def fail(self, error: RelayError) -> None:
        await self.finish(error.code, error.close_code or 1011, error)


def _type_of(msg: p.ClientMessage) -> str:
    return _WIRE_NAMES.get(type(msg), type(msg).__name__)


_WIRE_NAMES: dict[type, str] = {
    p.AudioIn: "audio",
    p.AudioCommit: "audio.commit",
    p.TextIn: "text",
    p.ResponseCreate: "response.create",
    p.ResponseCancel: "response.cancel",
    p.Playback: "playback",
    p.ToolResult: "tool.result",
    p.SessionUpdate: "session.update",
    p.Ping: "ping",
    p.SessionEnd: "session.end",
}


__all__ = ["InvalidMessage", "Session", "SessionState"]
