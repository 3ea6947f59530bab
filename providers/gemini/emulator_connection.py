"""One client socket on the Gemini Live emulator: auth, setup, the client messages, turns, goAway.

Two tasks per connection: `run` reads client messages (handlers below) and a turn task plays
`ModelTurn`s one after the other. Client mistakes close the socket with the real service's codes
(1007 invalid argument or key, 1008 model not found), as Gemini has no error message.

Turn taking:

* automatic activity detection (the default): the input audio goes through the shared energy VAD
  at 16 kHz; speech starting while the model speaks interrupts it (unless ``activityHandling`` is
  ``NO_INTERRUPTION``), speech ending answers the turn; ``audioStreamEnd`` ends speech in progress;
* manual (``automaticActivityDetection.disabled``): ``activityStart`` … ``activityEnd`` bracket a
  turn (``activityStart`` interrupts); audio outside an activity is ignored;
* ``realtimeInput.text`` and ``clientContent`` interrupt whatever the model says; a text, or client
  content with ``turnComplete``, is answered.

After every turn, when the setup enabled resumption, a ``sessionResumptionUpdate`` carries a new
handle; the conversation is stored under it (`SessionStore`), and a setup naming it continues it.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import hmac
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import numpy as np
import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from audiocodecs.resample import StreamingResampler
from providers.emulation.faults import Faults
from providers.emulation.server import ConnectionDropped, EmulatedConnection, new_id
from providers.emulation.turns import InputAudioBuffer, SpeechStarted, SpeechStopped
from providers.emulation.vad import VadConfig
from providers.gemini.emulator_protocol import (
    CLOSE_INTERNAL,
    CLOSE_INVALID,
    CLOSE_POLICY,
    GeminiFaults,
    LiveSetup,
    WireError,
    decode_base64,
    label_of,
    normalize_keys,
    parse_rate,
    parse_setup,
)
from providers.gemini.emulator_turn import INPUT_RATE, Conversation, ModelTurn, TurnInput, TurnState, text_tokens

__all__ = ["MAX_STORED_SESSIONS", "GeminiEmulatedConnection", "SessionStore"]

log = logging.getLogger(__name__)

#: resumable sessions kept by an emulator (the oldest handles are forgotten first)
MAX_STORED_SESSIONS: Final = 1_000
#: a manual activity shorter than this is not answered
MIN_ACTIVITY_MS: Final = 20
_REALTIME_FIELDS: Final = frozenset(
    {"audio", "mediaChunks", "video", "text", "activityStart", "activityEnd", "audioStreamEnd"}
)

Handler = Callable[["GeminiEmulatedConnection", dict[str, Any]], Awaitable[None]]


class SessionStore:
    """Conversations by resumption handle, shared by an emulator's connections."""

    def __init__(self, limit: int = MAX_STORED_SESSIONS) -> None:
        self._limit = limit
        self._items: OrderedDict[str, Conversation] = OrderedDict()

    def save(self, conversation: Conversation) -> str:
        handle = new_id("handle-", 12)
        self._items[handle] = conversation.copy()
        while len(self._items) > self._limit:
            self._items.popitem(last=False)
        return handle

    def restore(self, handle: str) -> Conversation | None:
        conversation = self._items.get(handle)
        return None if conversation is None else conversation.copy()


def _redact(message: dict[str, Any]) -> dict[str, Any]:
    """A normalized message as recorded: base64 audio replaced by its decoded byte length."""
    realtime = message.get("realtimeInput")
    if isinstance(realtime, dict):
        audio = realtime.get("audio")
        if isinstance(audio, dict) and isinstance(audio.get("data"), str):
            data = audio["data"]
            return {"realtimeInput": {"audio": {**audio, "data": len(data) * 3 // 4 - data[-2:].count("=")}}}
    return message


class GeminiEmulatedConnection(EmulatedConnection):
    binary_frames = True

    def __init__(
        self,
        ws: ServerConnection,
        faults: Faults,
        *,
        sessions: SessionStore,
        record: bool = True,
        speed: float = 0.0,
        chunk_ms: int = 40,
        api_key: str | None = None,
        go_away_close_code: int = CLOSE_INTERNAL,
    ) -> None:
        super().__init__(ws, GeminiFaults.of(faults), record=record)
        self.gemini_faults = GeminiFaults.of(faults)
        self._sessions = sessions
        self.speed = speed
        self.chunk_ms = chunk_ms
        self._api_key = api_key
        self._go_away_close_code = go_away_close_code
        self.setup: LiveSetup | None = None
        self.conversation = Conversation()
        #: the resumption handle this connection resumed from, if any
        self.resumed_from: str | None = None
        #: every server message sent, serialized (for strict validation in tests), unless not recording
        self.sent_frames: list[bytes] = []
        self.input = InputAudioBuffer(INPUT_RATE)
        self._resamplers: dict[int, StreamingResampler] = {}
        self._odd_byte = b""
        self._activity = False
        self.active: ModelTurn | None = None
        self._queued: deque[TurnInput] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closers: set[asyncio.Task[None]] = set()
        self.turns_played = 0

    # -- sending --------------------------------------------------------------------------------

    async def send_event(self, event: dict[str, Any]) -> None:
        """Send one server message in a binary frame, applying the faults (Gemini messages have no
        ``type``: they are recorded by `label_of`)."""
        count = await self.send_message(event, label_of(event))
        if count == self.gemini_faults.go_away_after_events:
            self._spawn(self.go_away(1000))

    def _record_sent(self, label: str, data: bytes) -> None:
        super()._record_sent(label, data)
        self.sent_frames.append(data)

    async def go_away(self, time_left_ms: int) -> None:
        """Announce the end of this connection, and close it after ``time_left_ms`` (unless the client left)."""
        await self.send_event({"goAway": {"timeLeft": f"{time_left_ms / 1000:g}s"}})
        self._spawn(self._close_after(time_left_ms / 1000))

    async def _close_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.ws.close(self._go_away_close_code, "Deadline expired before operation could complete.")

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def guarded() -> None:
            with contextlib.suppress(ConnectionDropped, ConnectionClosed):
                await coro

        task = asyncio.create_task(guarded(), name="gemini-emulator-aside")
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    # -- lifecycle ------------------------------------------------------------------------------

    def _presented_key(self) -> str | None:
        request = self.ws.request
        if request is None:
            return None
        key = request.headers.get("x-goog-api-key")
        if key:
            return key.strip()
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() in ("token", "bearer") and token.strip():
            return token.strip()
        for name in ("key", "access_token"):
            values = self.query.get(name)
            if values and values[0]:
                return values[0]
        return None

    def _check_key(self) -> None:
        if self._api_key is None:
            return
        key = self._presented_key()
        if key is None:
            raise WireError(CLOSE_POLICY, "The request is missing a valid API key.")
        if not hmac.compare_digest(key.encode(), self._api_key.encode()):
            raise WireError(CLOSE_INVALID, "API key not valid. Please pass a valid API key.")

    async def run(self) -> None:
        try:
            await self._set_up(await self.ws.recv())
            async for message in self.ws:
                await self._on_message(message)
        except WireError as exc:
            await self.ws.close(exc.code, exc.reason)
        finally:
            await self._stop()

    async def _stop(self) -> None:
        tasks = [t for t in (self._task, *self._closers) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _parse(self, message: str | bytes) -> dict[str, Any]:
        try:
            raw = orjson.loads(message)
        except orjson.JSONDecodeError:
            raise WireError(CLOSE_INVALID, "Invalid JSON payload received.") from None
        if not isinstance(raw, dict) or len(raw) != 1:
            raise WireError(CLOSE_INVALID, "Invalid JSON payload received: one message field expected.")
        parsed: dict[str, Any] = normalize_keys(raw)
        if self.record:
            self.record_received({"type": label_of(parsed), **_redact(parsed)})
        return parsed

    async def _set_up(self, first: str | bytes) -> None:
        message = self._parse(first)
        self._check_key()
        setup = self.setup = parse_setup(message)
        if setup.resume_handle is not None:
            restored = self._sessions.restore(setup.resume_handle)
            if restored is None:
                raise WireError(CLOSE_INVALID, "Invalid session resumption handle.")
            self.conversation = restored
            self.resumed_from = setup.resume_handle
        else:
            self.conversation.text_tokens = text_tokens(setup.instructions)
        if setup.automatic_vad:
            vad = VadConfig(setup.start_threshold, setup.prefix_padding_ms, setup.silence_ms)
            self.input = InputAudioBuffer(INPUT_RATE, vad)
        if self.gemini_faults.setup_complete_delay_ms:
            await asyncio.sleep(self.gemini_faults.setup_complete_delay_ms / 1000)
        await self.send_event({"setupComplete": {}})

    # -- dispatch -------------------------------------------------------------------------------

    async def _on_message(self, raw: str | bytes) -> None:
        message = self._parse(raw)
        key, body = next(iter(message.items()))
        handler = _HANDLERS.get(key)
        if handler is None:
            raise WireError(CLOSE_INVALID, f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.')
        if not isinstance(body, dict):
            raise WireError(CLOSE_INVALID, f"Invalid value at '{key}': expected an object.")
        await handler(self, body)

    async def _realtime_input(self, body: dict[str, Any]) -> None:
        fields = body.keys() & _REALTIME_FIELDS
        if len(fields) != 1 or len(body) != 1:
            raise WireError(CLOSE_INVALID, "realtime_input must set exactly one of its fields.")
        field = next(iter(fields))
        value = body[field]
        if field == "audio":
            await self._audio(value)
        elif field == "mediaChunks":
            for chunk in value if isinstance(value, list) else ():
                if isinstance(chunk, dict) and str(chunk.get("mimeType", "")).startswith("audio/"):
                    await self._audio(chunk)
        elif field == "text":
            if not isinstance(value, str):
                raise WireError(CLOSE_INVALID, "Invalid value at 'realtime_input.text'.")
            self._interrupt()
            self._start(TurnInput("text", text=value))
        elif field == "activityStart":
            await self._activity_start()
        elif field == "activityEnd":
            await self._activity_end()
        elif field == "audioStreamEnd":
            await self._audio_stream_end()
        # video frames are accepted and ignored: the emulated model is blind

    async def _audio(self, blob: object) -> None:
        if not isinstance(blob, dict) or not isinstance(blob.get("data"), str):
            raise WireError(CLOSE_INVALID, "Invalid value at 'realtime_input.audio': data is required.")
        try:
            data = self._odd_byte + decode_base64(blob["data"])
        except binascii.Error:
            raise WireError(CLOSE_INVALID, "Invalid value at 'realtime_input.audio.data': not base64.") from None
        rate = parse_rate(blob.get("mimeType"))
        if len(data) % 2:
            data, self._odd_byte = data[:-1], data[-1:]
        else:
            self._odd_byte = b""
        samples = np.frombuffer(data, dtype="<i2").astype(np.int16)
        if rate != INPUT_RATE:
            resampler = self._resamplers.get(rate)
            if resampler is None:
                resampler = self._resamplers[rate] = StreamingResampler(rate, INPUT_RATE)
            samples = resampler.process(samples)
        assert self.setup is not None
        if not self.setup.automatic_vad and not self._activity:
            return  # manual turns: audio outside an activity is not part of any turn
        for event in self.input.append(samples):
            if isinstance(event, SpeechStarted):
                self._interrupt()
            elif isinstance(event, SpeechStopped):
                self._start(TurnInput("audio", audio=event.audio))

    async def _activity_start(self) -> None:
        assert self.setup is not None
        if self.setup.automatic_vad:
            raise WireError(CLOSE_INVALID, "activity_start is only allowed when automatic activity detection is off.")
        self._interrupt()
        self.input.clear()
        self._activity = True

    async def _activity_end(self) -> None:
        assert self.setup is not None
        if self.setup.automatic_vad:
            raise WireError(CLOSE_INVALID, "activity_end is only allowed when automatic activity detection is off.")
        if not self._activity:
            return
        self._activity = False
        _, _, audio = self.input.commit()
        if audio.size * 1000 // INPUT_RATE >= MIN_ACTIVITY_MS:
            self._start(TurnInput("audio", audio=audio))

    async def _audio_stream_end(self) -> None:
        if self.input.speech_active:
            _, _, audio = self.input.commit()
            self._start(TurnInput("audio", audio=audio))

    async def _client_content(self, body: dict[str, Any]) -> None:
        turns = body.get("turns") or []
        if not isinstance(turns, list):
            raise WireError(CLOSE_INVALID, "Invalid value at 'client_content.turns': expected a list.")
        texts = []
        for turn in turns:
            parts = turn.get("parts") if isinstance(turn, dict) else None
            for part in parts if isinstance(parts, list) else ():
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    texts.append(part["text"])
        self._interrupt()  # "a message here will interrupt any current model generation"
        text = " ".join(texts)
        if body.get("turnComplete"):
            self._start(TurnInput("text", text=text))
        elif text:
            self.conversation.text_tokens += text_tokens(text)
            self.conversation.log.append(f"user: {text}")

    async def _tool_response(self, body: dict[str, Any]) -> None:
        responses = body.get("functionResponses") or []
        if not isinstance(responses, list) or not all(isinstance(r, dict) for r in responses):
            raise WireError(CLOSE_INVALID, "Invalid value at 'tool_response.function_responses'.")
        if not all(isinstance(r.get("id"), str) and r["id"] for r in responses):
            raise WireError(CLOSE_INVALID, "FunctionResponse must have the id of the function call it answers.")
        turn = self.active
        if turn is None or not turn.tool_response(responses):
            log.info("tool response for no pending call; ignored")

    # -- turns ----------------------------------------------------------------------------------

    def _interrupt(self) -> None:
        assert self.setup is not None
        if self.active is not None and self.setup.interrupts:
            self.active.interrupt()
            self._queued.clear()

    def _start(self, user: TurnInput) -> None:
        self._queued.append(user)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._play_turns(), name="gemini-emulator-turns")

    async def _play_turns(self) -> None:
        setup = self.setup
        assert setup is not None
        try:
            while self._queued:
                user = self._queued.popleft()
                failure = self.faults.error_on_response
                if failure is not None:
                    error = WireError(CLOSE_INTERNAL, failure)
                    await self.ws.close(error.code, error.reason)
                    return
                self.active = ModelTurn(
                    self.send_event,
                    user,
                    conversation=self.conversation,
                    audio_out=setup.audio_out,
                    tools=setup.tools,
                    input_transcription=setup.input_transcription,
                    output_transcription=setup.output_transcription,
                    speed=self.speed,
                    chunk_ms=self.chunk_ms,
                )
                await self.active.run()
                self.turns_played += 1
                if setup.resumption:
                    handle = self._sessions.save(self.conversation)
                    await self.send_event({"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}})
        except (ConnectionDropped, ConnectionClosed):
            pass
        except Exception:  # an emulator bug: log it and close 1011, as a server would
            log.exception("emulated turn failed")
            await self.ws.close(CLOSE_INTERNAL, "Internal error occurred.")
        finally:
            if self.active is not None and self.active.state is TurnState.DONE:
                self.active = None

    @property
    def turn_active(self) -> bool:
        return self.active is not None and self.active.state is not TurnState.DONE


_HANDLERS: Final[Mapping[str, Handler]] = {
    "realtimeInput": GeminiEmulatedConnection._realtime_input,
    "clientContent": GeminiEmulatedConnection._client_content,
    "toolResponse": GeminiEmulatedConnection._tool_response,
}
