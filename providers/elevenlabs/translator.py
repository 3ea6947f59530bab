"""ElevenLabs multi-context TTS WebSocket ⇄ the normalized provider vocabulary, free of I/O.

`ElevenLabsTranslator` is the adapter's sans-I/O core (reference §2b). One relay session is one
``multi-stream-input`` connection; one utterance is one context whose id is the response id:

* the first text piece opens the context — ``{"text": " ", "context_id": …}`` with the per-context
  settings — then sends the piece; later pieces follow as ``{"text": piece, "context_id": …}`` and are
  spoken as the service's chunk schedule allows;
* the ``final`` piece goes out with ``flush: true`` (generate everything buffered), then
  ``close_context`` so that the service answers ``isFinal`` once the last audio is out — which ends
  the response as completed, with the characters sent as usage (the socket reports no usage);
* `interrupt` closes the context at once and ends the response locally as cancelled; what the service
  still sends for it is dropped. Text after an interrupt starts a new utterance.

A connection holds at most `MAX_CONTEXTS` contexts; one counts from its first message until its
``isFinal``. An utterance that would be the sixth waits, its messages held back, until a context ends
— the service would otherwise close the socket (``max_active_conversations``).

Every call returns a `Step`: messages to send (dicts; the connection serializes them) and events for
the session. Server messages are read leniently, with the key drift seen in the wild (``contextId`` /
``context_id``, ``isFinal`` / ``is_final``, ``charDurationsMs`` / ``charsDurationsMs``); alignment
times, which the service gives relative to each audio chunk, come out relative to the utterance start.
"""

from __future__ import annotations

import binascii
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import orjson

from audiocodecs.format import PCM16_16K, AudioFormat
from providers import secrets
from providers.base import SessionConfig
from providers.elevenlabs.formats import OUTPUT_FORMATS, negotiate_output_format
from providers.events import (
    Alignment,
    AudioDelta,
    ProviderError,
    ProviderEvent,
    ResponseDone,
    ResponseStarted,
    ResponseStatus,
    Usage,
)

__all__ = [
    "MAX_CONTEXTS",
    "ElevenLabsTranslator",
    "Scrubber",
    "Step",
    "UtteranceState",
    "is_permanent_failure",
    "new_context_id",
    "scrub_secrets",
]

log = logging.getLogger(__name__)

#: contexts the service allows at once on one connection
MAX_CONTEXTS: Final = 5
#: distinct unexpected message shapes remembered (each is logged once)
MAX_UNKNOWN_SHAPES: Final = 64

_a2b_base64 = binascii.a2b_base64
_START_KEYS: Final = ("charStartTimesMs", "charsStartTimesMs", "char_start_times_ms")
_DURATION_KEYS: Final = ("charDurationsMs", "charsDurationsMs", "char_durations_ms")
#: words in a close reason or error that mean "retrying will not help"
_PERMANENT_MARKERS: Final = (
    "api key",
    "api_key",
    "unauthorized",
    "authenticat",
    "quota",
    "permission",
    "payment",
    "not allowed",
    "invalid model",
    "model_not_found",
    "voice_not_found",
)


# ---------------------------------------------------------------------------------------------
# secrets


class Scrubber(secrets.Scrubber):
    """Scrubs the given key and anything shaped like an ElevenLabs key (``sk_…``)."""

    __slots__ = ()
    pattern = re.compile(r"\bsk_[A-Za-z0-9*]{6,}")


#: `text` without the given secrets or anything shaped like an ElevenLabs key, cut to `MAX_ERROR_MESSAGE_CHARS`
scrub_secrets: Final = Scrubber.scrub


def is_permanent_failure(detail: str) -> bool:
    """Whether a close reason or error text describes a failure that a retry would repeat."""
    lowered = detail.lower()
    return any(marker in lowered for marker in _PERMANENT_MARKERS)


def new_context_id() -> str:
    return "utt_" + os.urandom(8).hex()


# ---------------------------------------------------------------------------------------------
# state


@dataclass(slots=True)
class Step:
    """What one call produced: messages to send upstream, in order, and events for the session."""

    send: list[dict[str, Any]] = field(default_factory=list)
    events: list[ProviderEvent] = field(default_factory=list)


class UtteranceState(StrEnum):
    QUEUED = "queued"  # no context slot free yet: its messages are held back
    OPEN = "open"  # context created upstream; text still streaming in
    CLOSING = "closing"  # flushed and closed upstream; waiting for isFinal
    CANCELLED = "cancelled"  # ended locally by an interrupt; isFinal still frees its slot


_TRANSITIONS: Final = {
    UtteranceState.QUEUED: frozenset({UtteranceState.OPEN, UtteranceState.CLOSING}),
    UtteranceState.OPEN: frozenset({UtteranceState.CLOSING, UtteranceState.CANCELLED}),
    UtteranceState.CLOSING: frozenset({UtteranceState.CANCELLED}),
    UtteranceState.CANCELLED: frozenset(),
}


@dataclass(slots=True)
class _Utterance:
    id: str  # context id and response id
    state: UtteranceState
    held: list[dict[str, Any]] = field(default_factory=list)
    characters: int = 0  # text handed to the context (the init's space excluded)
    closed: bool = False  # close_context sent (or held)
    audio_bytes: int = 0  # audio received: the start of the next chunk, for alignment offsets

    def to(self, state: UtteranceState) -> None:
        if state not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"utterance {self.id}: illegal transition {self.state} -> {state}")
        self.state = state


def _context_id(message: Mapping[str, Any]) -> str | None:
    value = message.get("contextId", message.get("context_id"))
    return value if isinstance(value, str) else None


def _first_list(raw: Mapping[str, Any], keys: Sequence[str]) -> list[Any] | None:
    for key in keys:
        value = raw.get(key)
        if isinstance(value, list):
            return value
    return None


def _millis(values: list[Any]) -> list[int]:
    """Integer milliseconds; floats are rounded. `TypeError` for anything that is not a number."""
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError("alignment time")
        out.append(round(value))
    return out


# ---------------------------------------------------------------------------------------------
# the translator


class ElevenLabsTranslator:
    """Sans-I/O ElevenLabs multi-context protocol for one upstream connection (see the module docstring)."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        voice: str,
        voice_settings: Mapping[str, float | bool] | None = None,
        chunk_length_schedule: Sequence[int] | None = None,
        scrub: Callable[[str], str] = scrub_secrets,
        new_id: Callable[[], str] = new_context_id,
        max_contexts: int = MAX_CONTEXTS,
    ) -> None:
        self.config = config
        self.voice = voice
        #: the ``output_format`` query value, and what it means
        self.wire_output_format = negotiate_output_format(config.client_output)
        self.output_format: AudioFormat = OUTPUT_FORMATS[self.wire_output_format]
        #: TTS takes no audio; this is only what `UpstreamSession.input_format` must name
        self.input_format: AudioFormat = PCM16_16K
        #: an error message the service sent just before closing, for the loss report
        self.pending_error: str | None = None
        self._scrub = scrub
        self._new_id = new_id
        self._max_contexts = max_contexts
        self._bytes_per_s = self.output_format.sample_rate * self.output_format.frame_bytes
        self._settings: dict[str, Any] = {}
        if voice_settings:
            self._settings["voice_settings"] = dict(voice_settings)
        if chunk_length_schedule:
            self._settings["generation_config"] = {"chunk_length_schedule": list(chunk_length_schedule)}
        #: every utterance not yet ended upstream, oldest first (QUEUED ones included)
        self._utterances: dict[str, _Utterance] = {}
        self._current: _Utterance | None = None  # the one taking text pieces
        self._unknown_shapes: set[frozenset[str]] = set()

    # -- state a caller may read ---------------------------------------------------------------

    @property
    def current_response(self) -> str | None:
        """The utterance taking text pieces (no final piece yet)."""
        return self._current.id if self._current is not None else None

    def state_of(self, response_id: str) -> UtteranceState | None:
        utterance = self._utterances.get(response_id)
        return utterance.state if utterance is not None else None

    @property
    def live_contexts(self) -> int:
        """Contexts that count against the service's limit (created upstream, no isFinal yet)."""
        return sum(u.state is not UtteranceState.QUEUED for u in self._utterances.values())

    # -- client intents → ElevenLabs client messages -------------------------------------------

    def send_text(self, text: str, *, final: bool) -> Step:
        """A text piece of the current utterance (the first one opens it); `final` ends the utterance."""
        step = Step()
        utterance = self._current
        if utterance is None:
            if not text:
                return step  # an empty piece, even a final one, has nothing to say
            utterance = self._open(step)
        messages: list[dict[str, Any]] = []
        if text:
            messages.append({"text": text, "context_id": utterance.id})
            utterance.characters += len(text)
        if final:
            if messages:
                messages[0]["flush"] = True
            else:
                messages.append({"context_id": utterance.id, "flush": True})
            # flush first: close_context alone would drop text still below the chunk schedule
            messages.append({"context_id": utterance.id, "close_context": True})
            utterance.closed = True
            self._current = None
            if utterance.state is UtteranceState.OPEN:
                utterance.to(UtteranceState.CLOSING)
        self._dispatch(utterance, messages, step)
        return step

    def interrupt(self, response_id: str | None) -> Step:
        """Stop `response_id` (default: the newest running utterance): close its context upstream and
        end the response here as cancelled. Nothing for an unknown, finished or cancelled one."""
        utterance = self._utterances.get(response_id) if response_id is not None else self._newest_running()
        if utterance is None or utterance.state is UtteranceState.CANCELLED:
            return Step()
        if utterance is self._current:
            self._current = None
        if utterance.state is UtteranceState.QUEUED:
            del self._utterances[utterance.id]  # it never reached the service: nothing to close, nothing used
            return Step(events=[ResponseDone(utterance.id, ResponseStatus.CANCELLED, Usage())])
        step = Step(
            events=[ResponseDone(utterance.id, ResponseStatus.CANCELLED, Usage(characters=utterance.characters))]
        )
        if not utterance.closed:
            step.send.append({"context_id": utterance.id, "close_context": True})
            utterance.closed = True
        utterance.to(UtteranceState.CANCELLED)
        return step

    def keepalive(self) -> Step:
        """Keep the connection (and the open context's inactivity timer) alive. Only a context that has
        been opened is named: a keepalive as a context's first message would pin it without settings."""
        utterance = self._current
        if utterance is not None and utterance.state is UtteranceState.OPEN:
            return Step(send=[{"text": "", "context_id": utterance.id}])
        return Step(send=[{"text": ""}])

    def update(self, *, voice: str | None) -> Step:
        """The voice is part of the connection's URL: it cannot change on an open connection."""
        if voice is None or voice == self.voice:
            return Step()
        message = "ElevenLabs fixes the voice per connection; start a new session to change it"
        return Step(events=[ProviderError("unsupported", message, fatal=False)])

    def _open(self, step: Step) -> _Utterance:
        utterance_id = self._new_id()
        live = self.live_contexts < self._max_contexts
        utterance = _Utterance(utterance_id, UtteranceState.OPEN if live else UtteranceState.QUEUED)
        self._utterances[utterance_id] = utterance
        self._current = utterance
        step.events.append(ResponseStarted(utterance_id))
        self._dispatch(utterance, [{"text": " ", "context_id": utterance_id, **self._settings}], step)
        return utterance

    def _dispatch(self, utterance: _Utterance, messages: list[dict[str, Any]], step: Step) -> None:
        if utterance.state is UtteranceState.QUEUED:
            utterance.held.extend(messages)
        else:
            step.send.extend(messages)

    def _newest_running(self) -> _Utterance | None:
        for utterance in reversed(self._utterances.values()):
            if utterance.state is not UtteranceState.CANCELLED:
                return utterance
        return None

    def _release(self, step: Step) -> None:
        """Open held-back utterances, oldest first, while context slots are free."""
        live = self.live_contexts
        for utterance in self._utterances.values():
            if live >= self._max_contexts:
                return
            if utterance.state is UtteranceState.QUEUED:
                utterance.to(UtteranceState.CLOSING if utterance.closed else UtteranceState.OPEN)
                step.send.extend(utterance.held)
                utterance.held = []
                live += 1

    # -- ElevenLabs server messages → provider events ------------------------------------------

    def feed(self, frame: str | bytes) -> Step:
        """One WebSocket message from ElevenLabs. Frames that are not a JSON object are logged (size
        only, never the payload) and skipped."""
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            log.warning("ElevenLabs sent a frame that is not JSON (%d bytes); skipped", len(frame))
            return Step()
        if not isinstance(message, dict):
            log.warning("ElevenLabs sent a JSON frame that is not an object (%d bytes); skipped", len(frame))
            return Step()
        return self.receive(message)

    def receive(self, message: Mapping[str, Any]) -> Step:
        """One parsed ElevenLabs server message."""
        try:
            return self._receive(message)
        except (KeyError, TypeError, ValueError, binascii.Error):
            log.warning("ElevenLabs sent a malformed message (keys %s); skipped", sorted(message)[:8])
            return Step()

    def connection_lost(self) -> list[ProviderEvent]:
        """The upstream is gone: every response still running ends as failed (so what it used is still
        metered). Called once by the connection before it reports the loss."""
        events: list[ProviderEvent] = []
        for utterance in self._utterances.values():
            if utterance.state is UtteranceState.CANCELLED:
                continue
            sent = 0 if utterance.state is UtteranceState.QUEUED else utterance.characters
            events.append(ResponseDone(utterance.id, ResponseStatus.FAILED, Usage(characters=sent)))
        self._utterances.clear()
        self._current = None
        return events

    def _receive(self, message: Mapping[str, Any]) -> Step:
        step = Step()
        context_id = _context_id(message)
        audio = message.get("audio")
        if isinstance(audio, str) and audio:  # the hot path first
            self._on_audio(context_id, message, audio, step)
        if message.get("isFinal") is True or message.get("is_final") is True:
            self._on_final(context_id, step)
        elif "audio" in message or "alignment" in message:
            return step  # an audio message, perhaps an empty one: handled above
        elif "error" in message or "message" in message:
            self._on_error(message, step)
        elif message.get("type") != "flush_done" and message.get("flush_done") is not True:
            self._log_unknown(message)  # flush_done (seen by livekit, not in the spec) is ignored quietly
        return step

    def _route(self, context_id: str | None) -> _Utterance | None:
        if context_id is not None:
            return self._utterances.get(context_id)
        # No context key (a single-context style message): only unambiguous with one live context.
        live = [u for u in self._utterances.values() if u.state is not UtteranceState.QUEUED]
        return live[0] if len(live) == 1 else None

    def _on_audio(self, context_id: str | None, message: Mapping[str, Any], audio_b64: str, step: Step) -> None:
        utterance = self._route(context_id)
        if utterance is None or utterance.state in (UtteranceState.CANCELLED, UtteranceState.QUEUED):
            return  # a cancelled utterance's tail, or a context we do not know: dropped
        audio = _a2b_base64(audio_b64)
        offset_ms = (utterance.audio_bytes * 1000 + self._bytes_per_s // 2) // self._bytes_per_s
        alignment = self._alignment(utterance.id, message, offset_ms)  # raises on a malformed one: state untouched
        utterance.audio_bytes += len(audio)
        if alignment is not None:
            step.events.append(alignment)  # before its audio, so lip sync can schedule ahead
        if audio:
            step.events.append(AudioDelta(utterance.id, audio))

    def _alignment(self, response_id: str, message: Mapping[str, Any], offset_ms: int) -> Alignment | None:
        # `alignment` follows the text as sent (what the client can match); the normalized one is a fallback.
        raw = message.get("alignment") or message.get("normalizedAlignment") or message.get("normalized_alignment")
        if not isinstance(raw, Mapping):
            return None
        chars = raw.get("chars")
        starts = _first_list(raw, _START_KEYS)
        durations = _first_list(raw, _DURATION_KEYS)
        if not chars or not isinstance(chars, list) or starts is None or durations is None:
            return None
        if not len(chars) == len(starts) == len(durations) or not all(isinstance(c, str) for c in chars):
            raise ValueError("alignment lists do not match")
        return Alignment(response_id, [offset_ms + s for s in _millis(starts)], _millis(durations), chars=chars)

    def _on_final(self, context_id: str | None, step: Step) -> None:
        utterance = self._route(context_id)
        if utterance is None or utterance.state is UtteranceState.QUEUED:
            return
        del self._utterances[utterance.id]
        if utterance is self._current:
            self._current = None  # the service ended it on its own (an inactivity timeout, say)
        if utterance.state is not UtteranceState.CANCELLED:
            step.events.append(
                ResponseDone(utterance.id, ResponseStatus.COMPLETED, Usage(characters=utterance.characters))
            )
        self._release(step)

    def _on_error(self, message: Mapping[str, Any], step: Step) -> None:
        code = message.get("error")
        code = code if isinstance(code, str) and code else "provider_error"
        text = message.get("message")
        detail = self._scrub(f"{code}: {text}" if isinstance(text, str) and text else code)
        close_code = message.get("code")
        if isinstance(close_code, int) and close_code >= 1000:
            # A close with this code follows at once and ends the connection: it is reported then.
            self.pending_error = detail
            return
        step.events.append(ProviderError(code, detail, fatal=False))

    def _log_unknown(self, message: Mapping[str, Any]) -> None:
        shape = frozenset(message)
        if shape in self._unknown_shapes or len(self._unknown_shapes) >= MAX_UNKNOWN_SHAPES:
            return
        self._unknown_shapes.add(shape)
        log.debug("ElevenLabs message with keys %s is not handled; skipping it (logged once)", sorted(shape)[:8])
