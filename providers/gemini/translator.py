"""Gemini Live (``BidiGenerateContent``) ⇄ the normalized provider vocabulary, free of I/O.

`GeminiTranslator` is the adapter's sans-I/O core, like the OpenAI one: client intents in, Gemini
client messages out (dicts; the per-frame audio message comes out pre-serialized), Gemini server
frames in (`feed`), `ProviderEvent`s out. It also outlives a connection: when the connection rolls
over to a new socket (goAway, age, `update`), the same translator writes the resuming ``setup``.

What Gemini does not have, and what is done instead:

* **Response ids.** Gemini has none: one is made per model turn (``<prefix><n>``), and a new one
  after a tool call (the response carrying the call ends there, as on OpenAI; the model's
  continuation after the ``toolResponse`` is the next response of the same Gemini turn).
* **Turn boundaries.** A response starts with the turn's first model output and ends at
  ``turnComplete`` (completed), at ``interrupted`` (cancelled; ``SpeechStarted`` first unless the
  user's speech was already signalled) or at a client `interrupt` (cancelled at once, locally:
  Gemini has no cancel message). Output that still arrives for a cancelled turn is dropped until
  its ``turnComplete``. Transcripts (``TranscriptDone``) and text (``TextDone``) are closed at
  ``generationComplete`` or when the response ends.
* **Usage.** ``usageMetadata`` is per turn (its ``promptTokenCount`` is the whole context, so it
  grows turn by turn); repeats within a turn are cumulative snapshots of that turn, so the last one
  wins and nothing is counted twice (reference §4). A `ResponseDone` carries what the turn's latest
  snapshot adds to what earlier responses of the same turn already carried. Usage that arrives when
  no response can take it any more — after a local cancel, after a tool call, after
  ``turnComplete`` (a standalone repeat or a late final snapshot, taken as a delta against the
  previous turn's final one) — is carried into the next `ResponseDone`, so the metered total is
  exact even where the per-response split cannot be. (Usage still carried when the session ends is
  not reported: the event vocabulary has no usage outside a response.)
* **Manual turns.** With ``automaticActivityDetection.disabled`` the client brackets speech: the
  first audio after a commit (or at the start) is preceded by ``activityStart``; `commit` sends
  ``activityEnd``. Gemini answers every finished activity: ``respond=False`` cannot hold the answer
  back (the activity still ends; a `create_response` right after it asks for nothing more). With
  automatic VAD, `commit` sends ``audioStreamEnd``, which makes the server close the turn now.
* **Tool calls** Gemini cancels (``toolCallCancellation``) are remembered and their late results
  dropped; the client is not told (the event vocabulary has no "tool call cancelled").
* **Text turns** go as ``realtimeInput.text``: audio is streamed on ``realtimeInput``, which has no
  ordering guarantee relative to ``clientContent`` (and the SDK warns against interleaving the two).
  A final text with ``respond=False`` is held and sent with the next text or `create_response`,
  since every realtime text is answered. `create_response` with nothing held and nothing pending
  sends ``clientContent {turnComplete: true}`` — the one deliberate use of that channel, as it is
  Gemini's only "generate now".
* **Barge-in by the client.** In manual mode `interrupt` sends ``activityStart`` (with the default
  ``START_OF_ACTIVITY_INTERRUPTS`` that stops generation, and the user's next audio belongs to that
  activity). With automatic VAD nothing is sent: the user's speech interrupts the model upstream;
  a cancel without speech leaves the model to finish its turn, which is dropped here. Gemini keeps
  the conversation server-side but has no truncation: ``played_ms`` cannot be applied.
"""

from __future__ import annotations

import binascii
import dataclasses
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any, Final

import orjson

from providers.base import SessionConfig, TurnDetection
from providers.events import (
    AudioDelta,
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
from providers.gemini.wire import (
    INPUT_FORMAT,
    OUTPUT_FORMAT,
    OUTPUT_MIME,
    build_setup,
    normalize_usage,
    parse_duration_s,
    scrub_secrets,
    tool_response_payload,
    usage_minus,
)

__all__ = ["MAX_TRACKED_CALLS", "GeminiTranslator", "Phase"]

log = logging.getLogger(__name__)

#: tool call ids remembered (their names, for the ``toolResponse``; cancelled ones, to drop late results)
MAX_TRACKED_CALLS: Final = 64
#: unknown server message keys remembered (each is logged once)
MAX_UNKNOWN_KEYS: Final = 256

# The audio message, pre-serialized: prefix + base64 + suffix, no dict and no JSON encoder per frame.
_AUDIO_PREFIX: Final = b'{"realtimeInput":{"audio":{"mimeType":"audio/pcm;rate=16000","data":"'
_AUDIO_SUFFIX: Final = b'"}}}'
_ACTIVITY_START_FRAME: Final = b'{"realtimeInput":{"activityStart":{}}}'
_ACTIVITY_START: Final[dict[str, Any]] = {"realtimeInput": {"activityStart": {}}}
_ACTIVITY_END: Final[dict[str, Any]] = {"realtimeInput": {"activityEnd": {}}}
_AUDIO_STREAM_END: Final[dict[str, Any]] = {"realtimeInput": {"audioStreamEnd": True}}
_b2a_base64 = binascii.b2a_base64
_a2b_base64 = binascii.a2b_base64

#: serverContent fields that belong to the user's side and do not open a model turn
_USER_SIDE: Final = frozenset({"inputTranscription", "interimInputTranscription"})
#: top-level server message keys handled (or deliberately ignored) here
_KNOWN: Final = frozenset(
    {
        "setupComplete",
        "serverContent",
        "toolCall",
        "toolCallCancellation",
        "usageMetadata",
        "goAway",
        "sessionResumptionUpdate",
        "voiceActivity",
        "voiceActivityDetectionSignal",
    }
)
_SPEECH_START: Final = frozenset({"ACTIVITY_START", "VAD_SIGNAL_TYPE_SOS"})
_SPEECH_END: Final = frozenset({"ACTIVITY_END", "VAD_SIGNAL_TYPE_EOS"})


class Phase(StrEnum):
    CONNECTING = "connecting"  # no setup sent on the current connection yet
    SETTING_UP = "setting_up"  # setup sent, waiting for setupComplete
    READY = "ready"


def _remember(store: OrderedDict[str, Any], key: str, value: Any) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > MAX_TRACKED_CALLS:
        store.popitem(last=False)


class GeminiTranslator:
    """Sans-I/O Gemini Live protocol for one relay session (see the module docstring)."""

    def __init__(
        self,
        config: SessionConfig,
        scrub: Callable[[str], str] = scrub_secrets,
        *,
        id_prefix: str | None = None,
        context_window_compression: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.input_format = INPUT_FORMAT
        self.output_format = OUTPUT_FORMAT
        self.phase = Phase.CONNECTING
        self._scrub = scrub
        self._compression = context_window_compression
        self._manual = config.turn_detection is TurnDetection.MANUAL
        self._audio_out = "audio" in config.modalities
        self._id_prefix = id_prefix if id_prefix is not None else f"resp_{os.urandom(5).hex()}_"
        self._responses_made = 0
        #: the latest resumable handle, and whether it was issued after the last model turn began
        self.resume_handle: str | None = None
        self.handle_fresh = True
        #: seconds left announced by the latest goAway (None: none pending); the connection takes it
        self.go_away_s: float | None = None
        self.go_away_pending = False
        #: manual mode: an activityStart was sent and its activityEnd not yet
        self.activity_open = False
        #: something was sent that the model will answer, and its turn has not begun yet
        self._answer_due = False
        # the model turn and its response
        self._turn_open = False
        self._response: str | None = None
        self._discarding = False
        self._outputs_done = False
        self._transcript: list[str] = []
        self._text: list[str] = []
        self._user: list[str] = []
        self._speech_signalled = False
        self._user_speaks_anew = False  # after `interrupted`: user transcription is the new speech
        # usage ledger (see the module docstring)
        self._snapshot: Usage | None = None
        self._reported = Usage()
        self._carry = Usage()
        self._last_final: Usage | None = None
        # tools and text
        self._calls: OrderedDict[str, str] = OrderedDict()
        self._cancelled_calls: OrderedDict[str, None] = OrderedDict()
        self._text_pieces: list[str] = []
        self._held_text: list[str] = []
        self._unknown_keys: set[str] = set()
        self._warned: set[str] = set()

    # -- state a caller may read ---------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.phase is Phase.READY

    @property
    def active_response(self) -> str | None:
        """The response whose output is arriving (None between responses)."""
        return self._response

    @property
    def turn_open(self) -> bool:
        """A model turn has begun and its ``turnComplete`` has not arrived."""
        return self._turn_open

    @property
    def activity_start_due(self) -> bool:
        """Manual mode, and the next audio must be preceded by `start_activity()`."""
        return self._manual and not self.activity_open

    @property
    def at_boundary(self) -> bool:
        """A good moment to move to a new connection: no model turn running, no manual activity
        open, and the resumption handle covers everything said so far."""
        return not self._turn_open and not (self._manual and self.activity_open) and self.handle_fresh

    @property
    def carried_usage(self) -> Usage:
        """Usage waiting for the next `ResponseDone`."""
        return self._carry.copy()

    # -- connection lifecycle -----------------------------------------------------------------

    def setup(self) -> dict[str, Any]:
        """The ``setup`` message for a new connection, resuming with the latest handle if there is one."""
        if self.phase is not Phase.CONNECTING:
            raise RuntimeError(f"setup() needs phase {Phase.CONNECTING}, not {self.phase}")
        self.phase = Phase.SETTING_UP
        return build_setup(self.config, handle=self.resume_handle, context_window_compression=self._compression)

    def abort_setup(self) -> None:
        """The connection failed before ``setupComplete``: the next `setup()` may be written."""
        self.phase = Phase.CONNECTING

    def connection_lost(self) -> list[ProviderEvent]:
        """The current connection is gone (dropped, or left behind by a rollover): the response in
        flight ends as failed, the turn is forgotten (a resumed session does not continue it) and
        the next `setup()` may be written. Usage owed stays carried."""
        events: list[ProviderEvent] = []
        self._flush_user(events)
        self._end_response(ResponseStatus.FAILED, events)
        if self._turn_open:
            self._close_turn()
        self._discarding = False
        self.activity_open = False
        self.go_away_s = None
        self.go_away_pending = False
        self.phase = Phase.CONNECTING
        return events

    def take_go_away(self) -> float | None:
        """Seconds left announced by a goAway that arrived since the last call (None if none did)."""
        if not self.go_away_pending:
            return None
        self.go_away_pending = False
        return self.go_away_s

    # -- client intents → Gemini client messages ----------------------------------------------

    def append_audio(self, audio: bytes) -> bytes:
        """The serialized ``realtimeInput.audio`` message (JSON text) for one chunk of 16 kHz PCM."""
        return _AUDIO_PREFIX + _b2a_base64(audio, newline=False) + _AUDIO_SUFFIX

    def start_activity(self) -> bytes:
        """Manual mode: the serialized ``activityStart`` that must precede the turn's first audio."""
        self.activity_open = True
        return _ACTIVITY_START_FRAME

    def commit(self, respond: bool) -> list[dict[str, Any]]:
        """End of the user's audio turn (``respond`` cannot be honoured: see the module docstring)."""
        if not self._manual:
            return [_AUDIO_STREAM_END]
        if not self.activity_open:
            log.debug("commit without audio since the last one: nothing to end")
            return []
        self.activity_open = False
        self._answer_due = True
        return [_ACTIVITY_END]

    def send_text(self, text: str, *, final: bool, respond: bool) -> list[dict[str, Any]]:
        """Pieces accumulate until `final`; the whole is one ``realtimeInput.text`` (held if not ``respond``)."""
        self._text_pieces.append(text)
        if not final:
            return []
        whole = "".join(self._text_pieces)
        self._text_pieces.clear()
        if whole:
            self._held_text.append(whole)
        if not respond:
            return []
        return self._release_text()

    def create_response(self, instructions: str | None = None) -> list[dict[str, Any]]:
        """Ask for an answer now. Held text is sent; else ``instructions`` go as a user text (Gemini has
        no per-response instructions); else, unless an answer is on its way already (a commit, a text, a
        tool result not yet answered, a turn running), ``clientContent {turnComplete: true}``: "start
        generating from the prompt accumulated so far" (e.g. to have the assistant speak first)."""
        if self._held_text:
            return self._release_text()
        if instructions:
            self._answer_due = True
            return [{"realtimeInput": {"text": instructions}}]
        if self._answer_due or self._turn_open:
            return []
        self._answer_due = True
        return [{"clientContent": {"turnComplete": True}}]

    def _release_text(self) -> list[dict[str, Any]]:
        text = "\n".join(self._held_text)
        self._held_text.clear()
        if not text:
            return []
        self._answer_due = True
        return [{"realtimeInput": {"text": text}}]

    def interrupt(
        self, response_id: str | None, played_ms: int | None
    ) -> tuple[list[dict[str, Any]], list[ProviderEvent]]:
        """Client barge-in: end the response in flight as cancelled now (its later output is dropped)
        and, in manual mode, open an activity so the server stops generating. Returns the messages to
        send and the events to deliver. ``played_ms`` has no use: Gemini cannot truncate its turn."""
        rid = self._response
        if rid is None or (response_id is not None and response_id != rid):
            return [], []
        events: list[ProviderEvent] = []
        self._end_response(ResponseStatus.CANCELLED, events)
        self._discarding = True
        messages: list[dict[str, Any]] = []
        if self._manual and not self.activity_open:
            self.activity_open = True
            messages.append(_ACTIVITY_START)
        return messages, events

    def tool_result(self, call_id: str, output: str) -> list[dict[str, Any]]:
        """A ``toolResponse``; the model continues its turn by itself. Results of cancelled calls are dropped."""
        if call_id in self._cancelled_calls:
            log.info("tool result for a call Gemini cancelled; dropped")
            return []
        response: dict[str, Any] = {"id": call_id}
        name = self._calls.pop(call_id, None)
        if name is not None:
            response["name"] = name
        response["response"] = tool_response_payload(output)
        self._answer_due = True
        return [{"toolResponse": {"functionResponses": [response]}}]

    def update(
        self,
        *,
        instructions: str | None = None,
        voice: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> bool:
        """Take new settings for the next ``setup``. Gemini cannot change a running connection, so a
        True result (something changed) means: move to a new connection, resuming the session."""
        changes: dict[str, Any] = {}
        if instructions is not None and instructions != self.config.instructions:
            changes["instructions"] = instructions
        if voice is not None and voice != self.config.voice:
            changes["voice"] = voice
        if tools is not None and tuple(tools) != tuple(self.config.tools):
            changes["tools"] = tuple(tools)
        if not changes:
            return False
        self.config = dataclasses.replace(self.config, **changes)
        return True

    # -- Gemini server frames → provider events ------------------------------------------------

    def feed(self, frame: str | bytes) -> list[ProviderEvent]:
        """One WebSocket message (JSON in a binary or text frame). Frames that are not a JSON object
        are logged (size only, never the payload) and skipped."""
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            log.warning("Gemini sent a frame that is not JSON (%d bytes); skipped", len(frame))
            return []
        if not isinstance(message, dict):
            log.warning("Gemini sent a JSON frame that is not an object (%d bytes); skipped", len(frame))
            return []
        return self.receive(message)

    def receive(self, message: Mapping[str, Any]) -> list[ProviderEvent]:
        """One parsed server message. Its keys are siblings (§2.5); usage is applied after a turn the
        message begins is opened and before a turn it ends is closed."""
        events: list[ProviderEvent] = []
        try:
            content = message.get("serverContent")
            if content is not None and not self._turn_open and (content.keys() - _USER_SIDE):
                self._open_turn()
            call = message.get("toolCall")
            if call is not None and not self._turn_open:
                self._open_turn()
            usage = message.get("usageMetadata")
            if usage is not None:
                self._on_usage(usage)
            if content is not None:
                self._on_content(content, events)
            if call is not None:
                self._on_tool_call(call, events)
            if len(message) > 1 or content is None:
                self._on_other(message, events)
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error):
            log.warning("Gemini sent a malformed message; the rest of it was skipped")
        return events

    def _on_other(self, message: Mapping[str, Any], events: list[ProviderEvent]) -> None:
        if "setupComplete" in message and self.phase is Phase.SETTING_UP:
            self.phase = Phase.READY
        cancellation = message.get("toolCallCancellation")
        if cancellation is not None:
            for call_id in cancellation.get("ids") or ():
                if isinstance(call_id, str):
                    self._calls.pop(call_id, None)
                    _remember(self._cancelled_calls, call_id, None)
            log.info("Gemini cancelled %d tool call(s)", len(cancellation.get("ids") or ()))
        update = message.get("sessionResumptionUpdate")
        if update is not None and update.get("resumable"):
            handle = update.get("newHandle")
            if isinstance(handle, str) and handle:
                self.resume_handle = handle
                self.handle_fresh = True
        go_away = message.get("goAway")
        if go_away is not None:
            self.go_away_s = parse_duration_s(go_away.get("timeLeft"))
            self.go_away_pending = True
        activity = message.get("voiceActivity")
        if activity is not None:
            self._on_voice_activity(activity.get("type"), events)
        signal = message.get("voiceActivityDetectionSignal")
        if signal is not None:
            self._on_voice_activity(signal.get("vadSignalType"), events)
        for key in message.keys() - _KNOWN:
            if key not in self._unknown_keys and len(self._unknown_keys) < MAX_UNKNOWN_KEYS:
                self._unknown_keys.add(key)
                log.debug("Gemini message field %r is not handled; skipping it (logged once)", key)

    # -- turn, response and usage bookkeeping ---------------------------------------------------

    def _open_turn(self) -> None:
        self._answer_due = False
        self._turn_open = True
        self.handle_fresh = False
        self._snapshot = None
        self._reported = Usage()

    def _close_turn(self) -> None:
        if self._snapshot is not None:
            self._carry.add(usage_minus(self._snapshot, self._reported))
        self._last_final = self._snapshot
        self._snapshot = None
        self._reported = Usage()
        self._turn_open = False
        self._discarding = False
        self._speech_signalled = False
        self._user_speaks_anew = False

    def _on_usage(self, raw: object) -> None:
        usage = normalize_usage(raw, audio_out=self._audio_out)
        if self._turn_open:
            self._snapshot = usage  # a cumulative snapshot of this turn: the latest wins
            return
        # No turn open: a repeat, or a late final snapshot, of the turn that just ended.
        self._carry.add(usage_minus(usage, self._last_final or Usage()))
        self._last_final = usage

    def _take_usage(self) -> Usage:
        usage, self._carry = self._carry, Usage()
        if self._snapshot is not None:
            usage.add(usage_minus(self._snapshot, self._reported))
            self._reported = self._snapshot.copy()
        return usage

    def _begin(self, events: list[ProviderEvent]) -> str:
        rid = self._response
        if rid is None:
            self._responses_made += 1
            rid = self._response = f"{self._id_prefix}{self._responses_made}"
            self._transcript.clear()
            self._text.clear()
            self._outputs_done = False
            events.append(ResponseStarted(rid))
        return rid

    def _finish_outputs(self, events: list[ProviderEvent]) -> None:
        rid = self._response
        if rid is None or self._outputs_done:
            return
        self._outputs_done = True
        if self._transcript:
            events.append(TranscriptDone("assistant", "".join(self._transcript), rid))
        if self._text:
            events.append(TextDone(rid, "".join(self._text)))

    def _end_response(self, status: ResponseStatus, events: list[ProviderEvent]) -> None:
        rid = self._response
        if rid is None:
            return
        self._finish_outputs(events)
        self._response = None
        events.append(ResponseDone(rid, status, self._take_usage()))

    def _flush_user(self, events: list[ProviderEvent]) -> None:
        if self._user:
            events.append(TranscriptDone("user", "".join(self._user)))
            self._user.clear()

    def _signal_speech(self, events: list[ProviderEvent]) -> None:
        if not self._speech_signalled:
            self._speech_signalled = True
            events.append(SpeechStarted())

    # -- handlers ------------------------------------------------------------------------------

    def _on_content(self, content: Mapping[str, Any], events: list[ProviderEvent]) -> None:
        model_turn = content.get("modelTurn")
        if model_turn is not None:
            for part in model_turn.get("parts") or ():
                self._on_part(part, events)
        output = content.get("outputTranscription")
        if output is not None:
            text = output.get("text")
            if isinstance(text, str) and text and not self._discarding:
                rid = self._begin(events)
                self._transcript.append(text)
                events.append(TranscriptDelta("assistant", text, rid))
        if content.get("interrupted"):
            self._on_interrupted(events)
        user = content.get("inputTranscription")
        if user is not None:
            text = user.get("text")
            if isinstance(text, str) and text:
                self._user.append(text)
                events.append(TranscriptDelta("user", text))
            if user.get("finished"):
                self._flush_user(events)
        if content.get("generationComplete"):
            self._finish_outputs(events)
        if content.get("turnComplete"):
            if not self._user_speaks_anew:  # words after an interruption belong to the next turn
                self._flush_user(events)
            status = ResponseStatus.CANCELLED if self._discarding else ResponseStatus.COMPLETED
            self._end_response(status, events)
            self._close_turn()

    def _on_part(self, part: Mapping[str, Any], events: list[ProviderEvent]) -> None:
        inline = part.get("inlineData")
        if inline is not None:
            data = inline.get("data")
            if not data or self._discarding:
                return
            mime = inline.get("mimeType")
            if mime != OUTPUT_MIME and not self._known_mime(mime):
                return
            rid = self._begin(events)
            events.append(AudioDelta(rid, _a2b_base64(data)))
            return
        text = part.get("text")
        if isinstance(text, str) and text and not part.get("thought") and not self._discarding:
            rid = self._begin(events)
            self._text.append(text)
            events.append(TextDelta(rid, text))

    def _known_mime(self, mime: object) -> bool:
        """Audio labelled other than ``audio/pcm;rate=24000``: plain ``audio/pcm`` is taken as 24 kHz;
        anything else (another rate, an image) is skipped, logged once per kind."""
        if isinstance(mime, str) and mime.replace(" ", "").lower() in ("audio/pcm", OUTPUT_MIME):
            return True
        key = f"mime:{mime}"
        if key not in self._warned:
            self._warned.add(key)
            log.warning("Gemini sent inline data of type %r, which this adapter cannot play; skipped", mime)
        return False

    def _on_interrupted(self, events: list[ProviderEvent]) -> None:
        # The user's earlier words are complete; what the server transcribes next is the new speech.
        self._flush_user(events)
        self._user_speaks_anew = True
        if not self._discarding:  # a cancel of ours makes the interruption no news
            self._signal_speech(events)
            self._end_response(ResponseStatus.CANCELLED, events)
        self._discarding = True

    def _on_tool_call(self, call: Mapping[str, Any], events: list[ProviderEvent]) -> None:
        calls = []
        for fc in call.get("functionCalls") or ():
            if isinstance(fc, Mapping) and isinstance(fc.get("id"), str) and isinstance(fc.get("name"), str):
                calls.append(fc)
            else:
                log.warning("Gemini sent a function call without an id or name; skipped")
        if not calls:
            return
        # A call in a turn we cancelled is still passed on: the model waits for its result.
        rid = None if self._discarding else self._begin(events)
        for fc in calls:
            _remember(self._calls, fc["id"], fc["name"])
            events.append(ToolCall(fc["id"], fc["name"], orjson.dumps(fc.get("args") or {}).decode(), rid))
        # The response that carries the calls ends here; what the model says after the results is the next one.
        self._end_response(ResponseStatus.COMPLETED, events)

    def _on_voice_activity(self, kind: object, events: list[ProviderEvent]) -> None:
        if kind in _SPEECH_START:
            self._signal_speech(events)
        elif kind in _SPEECH_END:
            self._speech_signalled = False
            events.append(SpeechStopped())
