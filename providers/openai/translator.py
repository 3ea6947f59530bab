"""OpenAI Realtime (GA wire protocol) ⇄ the normalized provider vocabulary, free of I/O.

`OpenAITranslator` is the adapter's sans-I/O core, in the manner of `websockets`' `protocol.py`:

- client intents in (`append_audio`, `commit`, `send_text`, `interrupt`, …), OpenAI client events out
  (dicts for the connection to serialize; `append_audio`, the per-frame hot path, returns the
  serialized frame itself);
- OpenAI server frames in (`feed`), `ProviderEvent`s out.

It holds the protocol state: the setup phase, the response in flight upstream, the assistant audio
item of each recent response with the audio received for it (to clamp `conversation.item.truncate`),
and pending text pieces. No sockets, no clock reads. Wire events are read leniently: unknown fields
are ignored, unknown types are logged once and skipped, malformed frames are logged (without their
payload) and skipped.
"""

from __future__ import annotations

import binascii
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import orjson

from audiocodecs.format import PCM16_24K, AudioFormat, Encoding
from providers import secrets
from providers.base import SessionConfig, TurnDetection
from providers.events import (
    AudioDelta,
    ProviderError,
    ProviderEvent,
    ResponseDone,
    ResponseStarted,
    ResponseStatus,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    TextDone,
    ToolCall,
    TranscriptDelta,
    TranscriptDone,
    Usage,
)

__all__ = [
    "PCMA_8K",
    "PCMU_8K",
    "PERMANENT_ERROR_CODES",
    "TRANSCRIPTION_MODEL",
    "OpenAITranslator",
    "Phase",
    "Scrubber",
    "is_permanent_error",
    "negotiate_format",
    "normalize_tool",
    "normalize_usage",
    "scrub_secrets",
    "wire_format",
]

log = logging.getLogger(__name__)

#: the model that transcribes the user's audio, so user transcripts flow to the client
TRANSCRIPTION_MODEL: Final = "gpt-4o-transcribe"
#: responses whose assistant audio item is remembered for a late `interrupt` (truncation)
MAX_TRACKED_RESPONSES: Final = 8
#: unknown server event types remembered (each is logged once)
MAX_UNKNOWN_TYPES: Final = 256

PCMU_8K: Final = AudioFormat(Encoding.ULAW, 8000)
PCMA_8K: Final = AudioFormat(Encoding.ALAW, 8000)

# The append frame, pre-serialized: prefix + base64 + suffix is about twice as cheap as
# orjson.dumps of a dict for a 20 ms frame (1.2 µs vs 2.3 µs), and base64 needs no JSON escaping.
_APPEND_PREFIX: Final = b'{"type":"input_audio_buffer.append","audio":"'
_APPEND_SUFFIX: Final = b'"}'
_b2a_base64 = binascii.b2a_base64
_a2b_base64 = binascii.a2b_base64

_AUDIO_DELTA: Final = "response.output_audio.delta"
_AUDIO_DELTA_BETA: Final = "response.audio.delta"

#: server events that carry nothing the relay needs; skipped without a log line
_IGNORED: Final = frozenset(
    {
        "conversation.created",
        "conversation.item.added",
        "conversation.item.created",
        "conversation.item.deleted",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.failed",
        "conversation.item.input_audio_transcription.segment",
        "conversation.item.retrieved",
        "conversation.item.truncated",
        "input_audio_buffer.cleared",
        "input_audio_buffer.committed",
        "input_audio_buffer.timeout_triggered",
        "output_audio_buffer.cleared",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "rate_limits.updated",
        "response.audio.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.function_call_arguments.delta",
        "response.output_audio.done",
        "response.output_item.added",
        "response.output_item.done",
    }
)

_STATUS: Final = {
    "completed": ResponseStatus.COMPLETED,
    # `incomplete` (max_output_tokens, content_filter) ended on its own and its output was delivered:
    # it is a complete answer from the relay's point of view, not a provider failure to retry or fall back from.
    "incomplete": ResponseStatus.COMPLETED,
    "cancelled": ResponseStatus.CANCELLED,
    "failed": ResponseStatus.FAILED,
}

#: error codes (or types) that mean "this will not succeed if repeated"
PERMANENT_ERROR_CODES: Final = frozenset(
    {
        "authentication_error",
        "insufficient_quota",
        "invalid_api_key",
        "invalid_request_error",
        "invalid_value",
        "model_not_found",
        "permission_error",
        "unknown_parameter",
    }
)


# ---------------------------------------------------------------------------------------------
# secrets


class Scrubber(secrets.Scrubber):
    """Scrubs the given keys and anything shaped like an OpenAI key (`sk-…`, `ek_…`, even partly masked)."""

    __slots__ = ()
    pattern = re.compile(r"\b(?:sk|ek|rk)[-_][A-Za-z0-9_*\-]{3,}")


#: `text` without the given secrets or anything shaped like an OpenAI key, cut to `MAX_ERROR_MESSAGE_CHARS`
scrub_secrets: Final = Scrubber.scrub


# ---------------------------------------------------------------------------------------------
# formats, tools, usage


def negotiate_format(client: AudioFormat) -> AudioFormat:
    """The format to ask OpenAI for, given the client's: G.711 at 8 kHz passes through untouched,
    everything else is converted by the session to 16-bit PCM at 24 kHz (the only PCM rate OpenAI has)."""
    if client.channels == 1 and client.sample_rate == 8000:
        if client.encoding is Encoding.ULAW:
            return PCMU_8K
        if client.encoding is Encoding.ALAW:
            return PCMA_8K
    return PCM16_24K


def wire_format(fmt: AudioFormat) -> dict[str, Any]:
    """The GA `audio.*.format` object of a negotiated format."""
    if fmt == PCM16_24K:
        return {"type": "audio/pcm", "rate": 24000}
    if fmt == PCMU_8K:
        return {"type": "audio/pcmu"}
    if fmt == PCMA_8K:
        return {"type": "audio/pcma"}
    raise ValueError(f"OpenAI Realtime has no audio format {fmt}")


def normalize_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A contract tool (JSON-schema function) as an OpenAI Realtime function tool.

    Accepts `{"name", "description", "parameters"}`, the same with `"type": "function"`, and the
    Chat Completions form `{"type": "function", "function": {...}}`. Raises `ValueError` without a name.
    """
    spec = tool.get("function")
    source: Mapping[str, Any] = spec if isinstance(spec, Mapping) else tool
    kind = tool.get("type", "function")
    name = source.get("name")
    if kind != "function" or not isinstance(name, str) or not name:
        raise ValueError("a tool must be a function with a non-empty name")
    out: dict[str, Any] = {"type": "function", "name": name}
    description = source.get("description")
    if isinstance(description, str):
        out["description"] = description
    parameters = source.get("parameters")
    out["parameters"] = dict(parameters) if isinstance(parameters, Mapping) else {"type": "object", "properties": {}}
    return out


def _str(event: Mapping[str, Any], key: str) -> str:
    """A required string field of a server event (`KeyError`/`TypeError` when it is not one)."""
    value = event[key]
    if not isinstance(value, str):
        raise TypeError(key)
    return value


def _opt_str(event: Mapping[str, Any], key: str) -> str | None:
    value = event.get(key)
    return value if isinstance(value, str) else None


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def normalize_usage(raw: object) -> Usage:
    """OpenAI `response.usage` as normalized counts; anything missing or malformed counts 0.
    Audio durations stay 0: the session measures those."""
    if not isinstance(raw, Mapping):
        return Usage()
    inp = raw.get("input_token_details")
    out = raw.get("output_token_details")
    inp = inp if isinstance(inp, Mapping) else {}
    out = out if isinstance(out, Mapping) else {}
    return Usage(
        input_text_tokens=_count(inp.get("text_tokens")),
        input_audio_tokens=_count(inp.get("audio_tokens")),
        cached_input_tokens=_count(inp.get("cached_tokens")),
        output_text_tokens=_count(out.get("text_tokens")),
        output_audio_tokens=_count(out.get("audio_tokens")),
    )


# ---------------------------------------------------------------------------------------------
# the translator


class Phase(StrEnum):
    CONNECTING = "connecting"  # waiting for session.created
    CREATED = "created"  # session.created seen; `configure()` is next
    CONFIGURING = "configuring"  # session.update sent, waiting for session.updated
    READY = "ready"


@dataclass(slots=True)
class _AudioItem:
    """The assistant audio item of a response and how much of its audio arrived."""

    item_id: str
    nbytes: int = 0
    truncated: bool = False


class OpenAITranslator:
    """Sans-I/O OpenAI Realtime protocol for one upstream session (see the module docstring)."""

    def __init__(self, config: SessionConfig, scrub: Callable[[str], str] = scrub_secrets) -> None:
        self.config = config
        self.input_format = negotiate_format(config.client_input)
        self.output_format = negotiate_format(config.client_output)
        self.phase = Phase.CONNECTING
        self._scrub = scrub
        self._out_bytes_per_s = self.output_format.sample_rate * self.output_format.frame_bytes
        self._vad_interrupts = config.turn_detection is TurnDetection.SERVER_VAD
        self._active: str | None = None  # the response in flight upstream
        self._active_cancelled = False  # a cancel for it was sent, or server VAD cancels it itself
        self._last_response: str | None = None
        self._audio_items: OrderedDict[str, _AudioItem] = OrderedDict()
        self._text_pieces: list[str] = []
        self._unknown_types: set[str] = set()
        self._handlers: dict[str, Callable[[Mapping[str, Any]], list[ProviderEvent]]] = {
            "session.created": self._on_session_created,
            "session.updated": self._on_session_updated,
            "error": self._on_error,
            "input_audio_buffer.speech_started": self._on_speech_started,
            "input_audio_buffer.speech_stopped": self._on_speech_stopped,
            "response.created": self._on_response_created,
            "response.done": self._on_response_done,
            "response.output_audio_transcript.delta": self._on_transcript_delta,
            "response.audio_transcript.delta": self._on_transcript_delta,
            "response.output_audio_transcript.done": self._on_transcript_done,
            "response.audio_transcript.done": self._on_transcript_done,
            "response.output_text.delta": self._on_text_delta,
            "response.text.delta": self._on_text_delta,
            "response.output_text.done": self._on_text_done,
            "response.text.done": self._on_text_done,
            "conversation.item.input_audio_transcription.delta": self._on_user_transcript_delta,
            "conversation.item.input_audio_transcription.completed": self._on_user_transcript_done,
            "response.function_call_arguments.done": self._on_tool_call,
        }

    # -- state a caller may read ---------------------------------------------------------------

    @property
    def active_response(self) -> str | None:
        """The response in flight upstream (between `response.created` and `response.done`)."""
        return self._active

    @property
    def ready(self) -> bool:
        return self.phase is Phase.READY

    # -- client intents → OpenAI client events -------------------------------------------------

    def configure(self) -> list[dict[str, Any]]:
        """The `session.update` that configures a fresh session (after `session.created`)."""
        if self.phase is not Phase.CREATED:
            raise RuntimeError(f"configure() needs phase {Phase.CREATED}, not {self.phase}")
        self.phase = Phase.CONFIGURING
        config = self.config
        turn_detection: dict[str, Any] | None = None
        if config.turn_detection is TurnDetection.SERVER_VAD:
            turn_detection = {"type": "server_vad", "create_response": True, "interrupt_response": True}
        output: dict[str, Any] = {"format": wire_format(self.output_format)}
        if config.voice:
            output["voice"] = config.voice
        session: dict[str, Any] = {
            "type": "realtime",
            "output_modalities": ["audio"] if "audio" in config.modalities else ["text"],
            "audio": {
                "input": {
                    "format": wire_format(self.input_format),
                    "transcription": {"model": TRANSCRIPTION_MODEL},
                    "turn_detection": turn_detection,
                },
                "output": output,
            },
        }
        if config.instructions is not None:
            session["instructions"] = config.instructions
        if config.tools:
            session["tools"] = [normalize_tool(t) for t in config.tools]
        return [{"type": "session.update", "session": session}]

    def append_audio(self, audio: bytes) -> bytes:
        """The serialized `input_audio_buffer.append` frame (JSON text) for one chunk of input audio."""
        return _APPEND_PREFIX + _b2a_base64(audio, newline=False) + _APPEND_SUFFIX

    def commit(self, respond: bool) -> list[dict[str, Any]]:
        # A commit never starts a response by itself, not even in server-VAD mode.
        events: list[dict[str, Any]] = [{"type": "input_audio_buffer.commit"}]
        if respond:
            events.append({"type": "response.create"})
        return events

    def send_text(self, text: str, *, final: bool, respond: bool) -> list[dict[str, Any]]:
        """Pieces accumulate until `final`; the whole is one user message."""
        self._text_pieces.append(text)
        if not final:
            return []
        whole = "".join(self._text_pieces)
        self._text_pieces.clear()
        events: list[dict[str, Any]] = []
        if whole:
            events.append(
                {
                    "type": "conversation.item.create",
                    "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": whole}]},
                }
            )
        if respond:
            events.append({"type": "response.create"})
        return events

    def create_response(self, instructions: str | None = None) -> list[dict[str, Any]]:
        if instructions is None:
            return [{"type": "response.create"}]
        return [{"type": "response.create", "response": {"instructions": instructions}}]

    def interrupt(self, response_id: str | None, played_ms: int | None) -> list[dict[str, Any]]:
        """Cancel `response_id` (default: the one in flight) if it is still running upstream and
        nobody cancelled it yet, then truncate its audio item at `played_ms`, clamped to the audio
        that actually arrived (OpenAI rejects a truncation past the item's end)."""
        rid = response_id if response_id is not None else (self._active or self._last_response)
        if rid is None:
            return []
        events: list[dict[str, Any]] = []
        if rid == self._active and not self._active_cancelled:
            events.append({"type": "response.cancel", "response_id": rid})
            self._active_cancelled = True
        item = self._audio_items.get(rid)
        if played_ms is not None and item is not None and not item.truncated:
            received_ms = item.nbytes * 1000 // self._out_bytes_per_s
            events.append(
                {
                    "type": "conversation.item.truncate",
                    "item_id": item.item_id,
                    "content_index": 0,
                    "audio_end_ms": max(0, min(played_ms, received_ms)),
                }
            )
            item.truncated = True
        return events

    def tool_result(self, call_id: str, output: str) -> list[dict[str, Any]]:
        # The server never answers a tool output by itself.
        return [
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": call_id, "output": output},
            },
            {"type": "response.create"},
        ]

    def update(
        self,
        *,
        instructions: str | None = None,
        voice: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """A partial `session.update` with just the given fields (none given: nothing to send)."""
        session: dict[str, Any] = {"type": "realtime"}
        if instructions is not None:
            session["instructions"] = instructions
        if voice is not None:
            session["audio"] = {"output": {"voice": voice}}
        if tools is not None:
            session["tools"] = [normalize_tool(t) for t in tools]
        if len(session) == 1:
            return []
        return [{"type": "session.update", "session": session}]

    # -- OpenAI server frames → provider events ------------------------------------------------

    def feed(self, frame: str | bytes) -> list[ProviderEvent]:
        """One WebSocket message from OpenAI. Frames that are not a JSON object with a `type` are
        logged (size only, never the payload) and skipped."""
        try:
            event = orjson.loads(frame)
        except orjson.JSONDecodeError:
            log.warning("OpenAI sent a frame that is not JSON (%d bytes); skipped", len(frame))
            return []
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            log.warning("OpenAI sent a JSON frame without a type (%d bytes); skipped", len(frame))
            return []
        return self.receive(event)

    def receive(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        """One parsed OpenAI server event."""
        kind = event["type"]
        try:
            if kind in (_AUDIO_DELTA, _AUDIO_DELTA_BETA):  # the hot path first
                return self._on_audio_delta(event)
            handler = self._handlers.get(kind)
            if handler is not None:
                return handler(event)
        except (KeyError, TypeError, ValueError, AttributeError):
            log.warning("OpenAI sent a malformed %s event; skipped", kind)
            return []
        if kind not in _IGNORED and kind not in self._unknown_types and len(self._unknown_types) < MAX_UNKNOWN_TYPES:
            self._unknown_types.add(kind)
            log.debug("OpenAI event type %r is not handled; skipping it (logged once)", kind)
        return []

    def connection_lost(self) -> list[ProviderEvent]:
        """The upstream is gone: the response in flight ends as failed (so what it produced can
        still be metered). Called once by the connection before it reports the loss."""
        rid, self._active = self._active, None
        if rid is None:
            return []
        return [ResponseDone(rid, ResponseStatus.FAILED, Usage())]

    # -- handlers ------------------------------------------------------------------------------

    def _on_audio_delta(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        audio = _a2b_base64(event["delta"])
        if not audio:
            return []
        rid = _str(event, "response_id")
        item_id = _str(event, "item_id")
        item = self._audio_items.get(rid)
        if item is None or item.item_id != item_id:
            item = self._track(rid, item_id)
        item.nbytes += len(audio)
        return [AudioDelta(rid, audio)]

    def _track(self, response_id: str, item_id: str) -> _AudioItem:
        item = self._audio_items[response_id] = _AudioItem(item_id)
        self._audio_items.move_to_end(response_id)
        while len(self._audio_items) > MAX_TRACKED_RESPONSES:
            self._audio_items.popitem(last=False)
        return item

    def _on_session_created(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        if self.phase is Phase.CONNECTING:
            self.phase = Phase.CREATED
        return []

    def _on_session_updated(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        if self.phase is Phase.CONFIGURING:
            self.phase = Phase.READY
        return []

    def _on_error(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        error = event.get("error")
        error = error if isinstance(error, Mapping) else {}
        code = error.get("code") or error.get("type") or "unknown_error"
        code = str(code)
        if code == "response_cancel_not_active":
            return []  # a cancel raced the response's end: harmless
        message = error.get("message")
        text = self._scrub(message if isinstance(message, str) and message else code)
        # Before the session is ready, an error means the setup failed.
        return [ProviderError(code, text, fatal=self.phase is not Phase.READY)]

    def _on_speech_started(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        if self._vad_interrupts and self._active is not None:
            self._active_cancelled = True  # interrupt_response: the server cancels it itself
        return [SpeechStarted()]

    def _on_speech_stopped(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        return [SpeechStopped()]

    def _on_response_created(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        rid = _str(event["response"], "id")
        self._active = rid
        self._active_cancelled = False
        self._last_response = rid
        return [ResponseStarted(rid)]

    def _on_response_done(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        response = event["response"]
        rid = _str(response, "id")
        if rid == self._active:
            self._active = None
        raw_status = response.get("status")
        status = _STATUS.get(raw_status) if isinstance(raw_status, str) else None
        if status is None:
            log.warning("OpenAI ended response with an unexpected status; counted as failed")
            status = ResponseStatus.FAILED
        return [ResponseDone(rid, status, normalize_usage(response.get("usage")))]

    def _on_transcript_delta(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        return [TranscriptDelta("assistant", _str(event, "delta"), _opt_str(event, "response_id"))]

    def _on_transcript_done(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        return [TranscriptDone("assistant", _str(event, "transcript"), _opt_str(event, "response_id"))]

    def _on_text_delta(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        return [TextDelta(_str(event, "response_id"), _str(event, "delta"))]

    def _on_text_done(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        return [TextDone(_str(event, "response_id"), _str(event, "text"))]

    def _on_user_transcript_delta(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        return [TranscriptDelta("user", _str(event, "delta"))]

    def _on_user_transcript_done(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        return [TranscriptDone("user", _str(event, "transcript"))]

    def _on_tool_call(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        return [
            ToolCall(
                _str(event, "call_id"), _str(event, "name"), _str(event, "arguments"), _opt_str(event, "response_id")
            )
        ]


def is_permanent_error(code: str) -> bool:
    """Whether an OpenAI error (by the code `ProviderError` carries) would repeat on retry."""
    return code in PERMANENT_ERROR_CODES
