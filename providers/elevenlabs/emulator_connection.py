"""One client socket on the ElevenLabs TTS emulator: authentication, the client messages, the limits.

Both endpoints (reference §2a, §2b):

* ``…/stream-input`` — one context. The first message must be the init (``text: " "``, settings);
  then text pieces (``try_trigger_generation``, ``flush``); ``{"text": " "}`` is a keepalive and
  ``{"text": ""}`` ends the input: the rest is spoken, ``{"isFinal": true}`` goes out, close 1000.
* ``…/multi-stream-input`` — up to `MAX_CONTEXTS` contexts, each made by the first message naming
  it (settings taken from that message); ``{"text": "", "context_id"}`` is a keepalive,
  ``close_context`` ends a context (then ``isFinal`` with its ``contextId``), ``close_socket`` ends
  them all and closes 1000. One context too many gets the ``max_active_conversations`` error message
  and close 1008, as on the service.

The key goes in the ``xi-api-key`` header, the ``authorization`` query parameter (``Bearer`` optional)
or the first message (``xi_api_key``, ``xi-api-key`` or ``authorization``). With ``api_key`` set, a
wrong key is closed 1008 ``Invalid API key`` right after the upgrade (header, query) or at the first
message. A voice_settings change, malformed JSON, an output format without raw audio (mp3, opus) and
``eleven_v3`` (not served over WebSockets) are closed 1008 with a reason too. Close reasons are cut to
the 123 bytes a close frame holds, as the service's are.

Silence: with no client message for ``inactivity_timeout`` seconds (query parameter, default 20, at
most 180) while no audio is being generated, the socket is closed 1008 with the service's reason.
The service times contexts out one by one on multi-stream-input; here any message keeps the whole
connection alive (a simplification).

Messages are recorded in ``received`` with a ``type`` the protocol lacks (`message_kind`), keys
redacted; server messages are counted in ``sent_types`` as ``audio``, ``final`` or ``error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
from typing import Any, Final

import orjson
from websockets.asyncio.server import ServerConnection

from audiocodecs.format import AudioFormat
from providers.elevenlabs.emulator_context import DEFAULT_CHUNK_CHARS, DEFAULT_SCHEDULE, EmulatedContext, KeyStyle
from providers.elevenlabs.formats import audio_format
from providers.emulation.faults import Faults
from providers.emulation.server import MAX_RECORDED_EVENTS, ConnectionDropped, EmulatedConnection

__all__ = [
    "DEFAULT_INACTIVITY_TIMEOUT_S",
    "DEFAULT_MODEL_ID",
    "ENDPOINT_PATH",
    "INVALID_KEY_REASON",
    "MAX_CONTEXTS",
    "ElevenLabsEmulatedConnection",
    "message_kind",
]

log = logging.getLogger(__name__)

MAX_CONTEXTS: Final = 5
DEFAULT_INACTIVITY_TIMEOUT_S: Final = 20.0
MAX_INACTIVITY_TIMEOUT_S: Final = 180.0
DEFAULT_MODEL_ID: Final = "eleven_multilingual_v2"
#: the service's default, which this emulator cannot encode: a client must ask for raw audio
DEFAULT_OUTPUT_FORMAT: Final = "mp3_44100_128"
CLOSE_POLICY: Final = 1008
MAX_REASON_BYTES: Final = 123
INVALID_KEY_REASON: Final = "Invalid API key"
MISSING_KEY_REASON: Final = "Missing API key: send the xi-api-key header or put the key in the first message"
VOICE_SETTINGS_REASON: Final = (
    "voice_settings field must be provided in the first message and then either be not provided or not change."
)
TIMEOUT_REASON: Final = (
    "Have not received a new text input within the timeout of {seconds:g} seconds. Streaming input terminated. "
    "Please make sure to either feed the input in the timely manner, or to send the end of input text "
    '(empty string "") when done.'
)
MAX_CONTEXTS_MESSAGE: Final = (
    "Maximum simultaneous contexts per WebSocket connection exceeded ({limit}). "
    "Please close an existing context before opening a new one."
)
_KEY_FIELDS: Final = ("xi_api_key", "xi-api-key", "authorization")
#: the two endpoints, with the voice id
ENDPOINT_PATH: Final = re.compile(
    r"/v1/text-to-speech/(?P<voice>[^/]+)/(?P<endpoint>multi-stream-input|stream-input)/?"
)


def _truncate(reason: str) -> str:
    return reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


def _strip_bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else value.strip()


def message_kind(message: dict[str, Any], *, multi: bool, first: bool) -> str:
    """What a client message is, for the recording (the protocol has no ``type``)."""
    if message.get("close_socket") is True:
        return "close_socket"
    if message.get("close_context") is True:
        return "close_context"
    text = message.get("text")
    if message.get("flush") is True:
        return "flush"
    if text == " ":
        return "init" if multi or first else "keepalive"
    if text == "":
        return "keepalive" if multi else "end_of_input"
    return "text" if isinstance(text, str) else "unknown"


def _redacted(message: dict[str, Any]) -> dict[str, Any]:
    return {k: ("[redacted]" if k in _KEY_FIELDS else v) for k, v in message.items()}


class ElevenLabsEmulatedConnection(EmulatedConnection):
    def __init__(
        self,
        ws: ServerConnection,
        faults: Faults,
        *,
        record: bool = True,
        speed: float = 0.0,
        chunk_chars: int = DEFAULT_CHUNK_CHARS,
        api_key: str | None = None,
        inactivity_timeout_s: float = DEFAULT_INACTIVITY_TIMEOUT_S,
        max_contexts: int = MAX_CONTEXTS,
        key_style: KeyStyle = KeyStyle.CAMEL,
    ) -> None:
        super().__init__(ws, faults, record=record)
        match = ENDPOINT_PATH.fullmatch(self.path)
        self.voice_id = match.group("voice") if match else ""
        self.multi = match is not None and match.group("endpoint") == "multi-stream-input"
        self.model_id = self._param("model_id") or DEFAULT_MODEL_ID
        self.output_format_name = self._param("output_format") or DEFAULT_OUTPUT_FORMAT
        self.format: AudioFormat | None = audio_format(self.output_format_name)
        self.auto_mode = self._param("auto_mode") == "true"
        self.inactivity_timeout_s = self._timeout(inactivity_timeout_s)
        self.speed = speed
        self.chunk_chars = chunk_chars
        self.max_contexts = max_contexts
        self.key_style = key_style
        self._api_key = api_key
        self._authenticated = api_key is None
        #: live contexts by id (None: the one context of stream-input)
        self.contexts: dict[str | None, EmulatedContext] = {}
        #: ids of the contexts that ended (sent isFinal), in order
        self.ended_contexts: list[str | None] = []
        #: the most contexts live at once
        self.peak_contexts = 0
        #: the code this emulator closed the socket with (None: it has not closed it)
        self.close_code: int | None = None
        self._messages = 0
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()

    def _param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def _timeout(self, default: float) -> float:
        raw = self._param("inactivity_timeout")
        if raw is None:
            return default
        try:
            return min(max(float(raw), 1.0), MAX_INACTIVITY_TIMEOUT_S)
        except ValueError:
            return default

    # -- sending --------------------------------------------------------------------------------

    async def close_with(self, code: int, reason: str) -> None:
        self.close_code = code
        for context in list(self.contexts.values()):
            await context.stop()
        await self.ws.close(code, _truncate(reason))

    # -- lifecycle ------------------------------------------------------------------------------

    def _presented_key(self) -> str | None:
        request = self.ws.request
        header = request.headers.get("xi-api-key") if request is not None else None
        if header:
            return header.strip()
        query = self._param("authorization")
        return _strip_bearer(query) if query else None

    def _key_matches(self, key: str) -> bool:
        assert self._api_key is not None
        return hmac.compare_digest(key.encode(), self._api_key.encode())

    async def run(self) -> None:
        if not self._authenticated:
            key = self._presented_key()
            if key is not None:
                if not self._key_matches(key):
                    await self.close_with(CLOSE_POLICY, INVALID_KEY_REASON)
                    return
                self._authenticated = True
        if self.format is None:
            reason = f"output_format {self.output_format_name} is not emulated: ask for pcm_*, ulaw_8000 or alaw_8000"
            await self.close_with(CLOSE_POLICY, reason)
            return
        if self.model_id.startswith("eleven_v3"):
            await self.close_with(CLOSE_POLICY, f"The model {self.model_id} is not available over WebSockets")
            return
        watchdog = asyncio.create_task(self._watch_inactivity(), name="elevenlabs-emulator-inactivity")
        try:
            async for frame in self.ws:
                self._last_activity = self._loop.time()
                await self._on_frame(frame)
        finally:
            watchdog.cancel()
            for context in list(self.contexts.values()):
                await context.stop()

    async def _watch_inactivity(self) -> None:
        timeout = self.inactivity_timeout_s
        while True:
            remaining = self._last_activity + timeout - self._loop.time()
            if remaining > 0:
                await asyncio.sleep(remaining)
                continue
            if any(context.busy for context in self.contexts.values()):
                self._last_activity = self._loop.time()  # audio still streaming: not idle
                continue
            with contextlib.suppress(ConnectionDropped):
                await self.close_with(CLOSE_POLICY, TIMEOUT_REASON.format(seconds=timeout))
            return

    # -- dispatch -------------------------------------------------------------------------------

    async def _on_frame(self, frame: str | bytes) -> None:
        first = self._messages == 0
        self._messages += 1
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, dict):
            self.record_received({"type": "invalid"})
            await self.close_with(CLOSE_POLICY, "Invalid message received: expected a JSON object")
            return
        self.record_received({"type": message_kind(message, multi=self.multi, first=first), **_redacted(message)})
        if not self._authenticated and not await self._authenticate(message):
            return
        if self.multi:
            await self._on_multi(message)
        else:
            await self._on_single(message, first=first)

    async def _authenticate(self, message: dict[str, Any]) -> bool:
        for field in _KEY_FIELDS:
            value = message.get(field)
            if isinstance(value, str) and value:
                if self._key_matches(_strip_bearer(value)):
                    self._authenticated = True
                    return True
                break
        else:
            await self.close_with(CLOSE_POLICY, MISSING_KEY_REASON)
            return False
        await self.close_with(CLOSE_POLICY, INVALID_KEY_REASON)
        return False

    def _new_context(self, context_id: str | None, message: dict[str, Any]) -> EmulatedContext:
        assert self.format is not None
        config = message.get("generation_config")
        raw = config.get("chunk_length_schedule") if isinstance(config, dict) else None
        schedule = DEFAULT_SCHEDULE
        if isinstance(raw, list) and raw and all(isinstance(n, int | float) and n > 0 for n in raw):
            schedule = tuple(raw)
        failure = self.faults.error_on_response
        context = EmulatedContext(
            context_id,
            self.format,
            self.send_message,
            on_end=self._context_ended,
            schedule=schedule,
            auto_mode=self.auto_mode,
            speed=self.speed,
            chunk_chars=self.chunk_chars,
            key_style=self.key_style,
            failure=(lambda: self._fail(failure)) if failure is not None else None,
            voice_settings=message.get("voice_settings"),
        )
        self.contexts[context_id] = context
        self.peak_contexts = max(self.peak_contexts, len(self.contexts))
        return context

    def _context_ended(self, context: EmulatedContext) -> None:
        if self.contexts.get(context.id) is context:
            del self.contexts[context.id]
        if self.record and len(self.ended_contexts) < MAX_RECORDED_EVENTS:
            self.ended_contexts.append(context.id)

    async def _fail(self, message: str) -> None:
        """The ``error_on_response`` fault: the service's error message, then close 1008."""
        await self.send_message({"message": message, "error": "internal_error", "code": CLOSE_POLICY}, "error")
        await self.close_with(CLOSE_POLICY, message)

    async def _settings_changed(self, context: EmulatedContext, message: dict[str, Any]) -> bool:
        settings = message.get("voice_settings")
        if settings is None or settings == context.voice_settings:
            return False
        await self.close_with(CLOSE_POLICY, VOICE_SETTINGS_REASON)
        return True

    # -- stream-input ---------------------------------------------------------------------------

    async def _on_single(self, message: dict[str, Any], *, first: bool) -> None:
        text = message.get("text")
        if first:
            if text != " ":
                await self.close_with(CLOSE_POLICY, 'The first message must initialise the stream with text " "')
                return
            self._new_context(None, message)
            return
        context = self.contexts.get(None)
        if context is None or not isinstance(text, str) or await self._settings_changed(context, message):
            return
        if text == "":
            context.finish()
            await context.ended.wait()
            await self.close_with(1000, "")
            return
        if text != " ":  # a lone space is the keepalive
            context.add_text(text)
        if message.get("flush") is True:
            context.flush()
        elif message.get("try_trigger_generation") is True:
            context.try_trigger()

    # -- multi-stream-input ---------------------------------------------------------------------

    async def _on_multi(self, message: dict[str, Any]) -> None:
        if message.get("close_socket") is True:
            await self._close_socket()
            return
        raw_id = message.get("context_id", message.get("contextId"))
        context_id = raw_id if isinstance(raw_id, str) and raw_id else None
        text = message.get("text")
        if context_id is None:
            if not text and message.get("flush") is not True:
                return  # connection keepalive
            context_id = "default"
        context = self.contexts.get(context_id)
        if message.get("close_context") is True:
            if context is not None:
                context.close()
            return
        if context is None:
            if len(self.contexts) >= self.max_contexts:
                await self._too_many_contexts()
                return
            context = self._new_context(context_id, message)
            if text == " ":
                return  # the init: settings only
        elif context.closed:
            return  # closing: nothing more is taken until its isFinal
        elif await self._settings_changed(context, message):
            return
        if isinstance(text, str) and text:
            context.add_text(text)
        if message.get("flush") is True:
            context.flush()

    async def _too_many_contexts(self) -> None:
        message = MAX_CONTEXTS_MESSAGE.format(limit=self.max_contexts)
        error = {"message": message, "error": "max_active_conversations", "code": CLOSE_POLICY}
        await self.send_message(error, "error")
        await self.close_with(CLOSE_POLICY, message)

    async def _close_socket(self) -> None:
        contexts = list(self.contexts.values())
        for context in contexts:
            context.finish()
        for context in contexts:
            await context.ended.wait()
        await self.close_with(1000, "")
