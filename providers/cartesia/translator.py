"""Cartesia TTS WebSocket ⇄ the normalized provider vocabulary, free of I/O.

`CartesiaTranslator` is the adapter's sans-I/O core, in the manner of `websockets`' `protocol.py`:

- client intents in (`send_text`, `flush`, `interrupt`); the Cartesia messages they cause collect in
  an outbox that the connection drains with `data_to_send()`; the provider events they cause
  (`ResponseStarted`, a local `ResponseDone(CANCELLED)`) are returned;
- Cartesia server frames in (`feed`), provider events out (a frame may also queue messages: the
  `done` of one utterance lets the next one start).

The relay's TTS contract maps onto Cartesia contexts one to one: an *utterance* (text pieces up to
the one with ``final: true``) is one context, and its context id is the relay's response id. Pieces
are sent as they come, with ``continue: true``; the final piece goes with ``continue: false`` (an
empty final piece becomes ``transcript: ""``, the documented way to end a context).

Only one utterance is *live* upstream at a time. One that the client starts while the previous one
is still being generated waits here, as text, until the previous `done` — so the client never gets
two responses' audio interleaved, barge-in always targets the response it hears, and one session
never holds more than one of the account's concurrent contexts. Generation runs faster than real
time, so the wait is short compared with the playback of the previous utterance.

Wire events are read leniently: unknown fields are ignored, unknown types are logged once and
skipped, malformed frames are logged (without their payload) and skipped. No sockets, no clock reads.
"""

from __future__ import annotations

import binascii
import enum
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from audiocodecs.format import PCM16_24K, AudioFormat, Encoding
from providers import secrets
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
    "CODE_BY_STATUS",
    "SAMPLE_RATES",
    "VOICE_OBJECT_VERSION",
    "WIRE_ENCODINGS",
    "CartesiaTranslator",
    "Scrubber",
    "UtteranceState",
    "error_details",
    "negotiate_output",
    "new_context_id",
    "scrub_secrets",
    "voice_spec",
    "wire_output_format",
]

log = logging.getLogger(__name__)

#: Cartesia's raw encodings for the contract's PCM and G.711 encodings
WIRE_ENCODINGS: Final = {
    Encoding.PCM16: "pcm_s16le",
    Encoding.F32: "pcm_f32le",
    Encoding.ULAW: "pcm_mulaw",
    Encoding.ALAW: "pcm_alaw",
}
#: the sample rates Cartesia's raw output offers (ascending)
SAMPLE_RATES: Final = (8000, 16000, 22050, 24000, 44100, 48000)
#: from this API version on the typed voice is ``{"id": ...}``; before it, ``{"mode": "id", "id": ...}``
VOICE_OBJECT_VERSION: Final = "2026-08-14"
#: utterances remembered after they ended, so their late frames are recognized and dropped quietly
MAX_ENDED_CONTEXTS: Final = 64
#: unknown server event types remembered (each is logged once)
MAX_UNKNOWN_TYPES: Final = 256
#: an error code for the HTTP-like status when Cartesia sent none (legacy errors have no code)
CODE_BY_STATUS: Final = {
    400: "invalid_request",
    401: "unauthorized",
    402: "payment_required",
    403: "forbidden",
    404: "not_found",
    429: "concurrency_limited",
    500: "internal_error",
    503: "service_unavailable",
}

_a2b_base64 = binascii.a2b_base64
#: server events that carry nothing the relay needs; skipped without a log line
_IGNORED: Final = frozenset({"flush_done", "phoneme_timestamps"})


# ---------------------------------------------------------------------------------------------
# secrets


class Scrubber(secrets.Scrubber):
    """Scrubs the given keys and anything shaped like a Cartesia key (``sk_car_…``)."""

    __slots__ = ()
    pattern = re.compile(r"\b(?:sk|ek)[-_][A-Za-z0-9_*\-]{3,}")


#: `text` without the given secrets or anything shaped like a Cartesia key, cut to `MAX_ERROR_MESSAGE_CHARS`
scrub_secrets: Final = Scrubber.scrub


# ---------------------------------------------------------------------------------------------
# formats, voices, errors


def negotiate_output(client: AudioFormat) -> AudioFormat:
    """The format to ask Cartesia for, given the client's output format.

    The client's own encoding and rate when Cartesia has them, so the session converts nothing.
    Otherwise the session has to convert anyway: 16-bit PCM (Opus is encoded from it) at the client's
    rate when Cartesia has it, else at the lowest Cartesia rate above it (no bandwidth lost), else 24 kHz.
    """
    rate = client.sample_rate
    if rate not in SAMPLE_RATES:
        rate = next((r for r in SAMPLE_RATES if r > rate), PCM16_24K.sample_rate)
    encoding = client.encoding if client.encoding in WIRE_ENCODINGS else Encoding.PCM16
    if encoding is Encoding.PCM16 and rate == PCM16_24K.sample_rate:
        return PCM16_24K
    return AudioFormat(encoding, rate)


def wire_output_format(fmt: AudioFormat) -> dict[str, Any]:
    """The ``output_format`` object of a negotiated format (the WebSocket speaks ``raw`` only)."""
    encoding = WIRE_ENCODINGS.get(fmt.encoding)
    if encoding is None or fmt.sample_rate not in SAMPLE_RATES or fmt.channels != 1:
        raise ValueError(f"Cartesia has no raw output format {fmt}")
    return {"container": "raw", "encoding": encoding, "sample_rate": fmt.sample_rate}


def voice_spec(voice_id: str, version: str) -> dict[str, str]:
    """The ``voice`` field for `version` (dates compare as strings)."""
    if version >= VOICE_OBJECT_VERSION:
        return {"id": voice_id}
    return {"mode": "id", "id": voice_id}


def error_details(event: Mapping[str, Any]) -> tuple[str, str]:
    """(code, message) of a Cartesia error, structured (2026-03-01 and later: ``error_code``,
    ``title``, ``message``) or legacy (``error``: "Title: message"). Neither is scrubbed yet."""
    status = event.get("status_code")
    code = event.get("error_code")
    if not isinstance(code, str) or not code:
        code = CODE_BY_STATUS.get(status, "cartesia_error") if isinstance(status, int) else "cartesia_error"
    title, message, legacy = event.get("title"), event.get("message"), event.get("error")
    parts = [p for p in (title, message) if isinstance(p, str) and p]
    if parts:
        text = ": ".join(parts)
    elif isinstance(legacy, str) and legacy:
        text = legacy
    else:
        text = f"Cartesia reported an error (status {status})" if isinstance(status, int) else code
    return code, text


def new_context_id() -> str:
    """A fresh context id (also the relay's response id)."""
    return "tts_" + os.urandom(12).hex()


# ---------------------------------------------------------------------------------------------
# utterances


class UtteranceState(enum.Enum):
    QUEUED = "queued"  # started by the client; waiting here until the previous utterance ends
    SPEAKING = "speaking"  # live upstream; the client may still send pieces
    CLOSING = "closing"  # live upstream; `continue: false` sent, waiting for `done`
    ENDED = "ended"  # done, cancelled or failed; its late frames are dropped


_TRANSITIONS: Final = {
    UtteranceState.QUEUED: {UtteranceState.SPEAKING, UtteranceState.ENDED},
    UtteranceState.SPEAKING: {UtteranceState.CLOSING, UtteranceState.ENDED},
    UtteranceState.CLOSING: {UtteranceState.ENDED},
    UtteranceState.ENDED: set(),
}


@dataclass(slots=True)
class _Utterance:
    context_id: str
    #: the voice when the client started it (all inputs on a context must name the same voice)
    voice: str
    state: UtteranceState = UtteranceState.QUEUED
    #: pieces received while queued (sent, joined, when it goes live)
    pending: list[str] = field(default_factory=list)
    #: the client sent its ``final: true`` piece
    final: bool = False
    #: characters of transcript sent to Cartesia (what it bills)
    characters: int = 0
    audio_bytes: int = 0

    def to(self, state: UtteranceState) -> None:
        if state not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"utterance {self.context_id}: illegal transition {self.state.value} → {state.value}")
        self.state = state

    def usage(self) -> Usage:
        return Usage(characters=self.characters)


class CartesiaTranslator:
    """Sans-I/O Cartesia TTS protocol for one upstream session (see the module docstring)."""

    def __init__(
        self,
        *,
        model: str,
        voice: str,
        output_format: AudioFormat,
        version: str,
        language: str | None = None,
        max_buffer_delay_ms: int | None = None,
        scrub: Callable[[str], str] = scrub_secrets,
        new_id: Callable[[], str] = new_context_id,
    ) -> None:
        self.model = model
        self.voice = voice
        self.version = version
        self.output_format = output_format
        self.language = language
        self.max_buffer_delay_ms = max_buffer_delay_ms
        self._wire_format = wire_output_format(output_format)
        self._scrub = scrub
        self._new_id = new_id
        self._outbox: list[dict[str, Any]] = []
        self._live: _Utterance | None = None
        self._queued: deque[_Utterance] = deque()
        #: the utterance still taking the client's pieces (live, queued, or ended early but not yet final)
        self._open: _Utterance | None = None
        self._ended: deque[str] = deque(maxlen=MAX_ENDED_CONTEXTS)
        self._unknown_types: set[str] = set()

    # -- state a caller may read ---------------------------------------------------------------

    @property
    def live_response(self) -> str | None:
        """The utterance being generated upstream (its context id is its response id)."""
        return self._live.context_id if self._live is not None else None

    @property
    def busy(self) -> bool:
        """Whether any utterance is live or waiting: a socket closed now would lose work."""
        return self._live is not None or bool(self._queued)

    @property
    def has_data_to_send(self) -> bool:
        return bool(self._outbox)

    def data_to_send(self) -> list[dict[str, Any]]:
        """The Cartesia client messages queued since the last call, in order (the outbox is emptied)."""
        messages, self._outbox = self._outbox, []
        return messages

    # -- client intents -------------------------------------------------------------------------

    def send_text(self, text: str, *, final: bool) -> list[ProviderEvent]:
        """One piece of the utterance being streamed; `final` ends it."""
        utt = self._open
        if utt is None:
            if not text:
                return []  # an empty piece does not start an utterance
            utt = _Utterance(self._new_id(), self.voice)
            self._queued.append(utt)
            self._open = utt
        if final:
            utt.final = True
            self._open = None
        if utt.state is UtteranceState.ENDED:
            return []  # cancelled or failed while the client was still streaming it: drop the rest
        if utt.state is UtteranceState.QUEUED:
            if text:
                utt.pending.append(text)
            return self._advance()
        self._speak(utt, text, closes=final)
        return []

    def flush(self) -> list[ProviderEvent]:
        """Ask Cartesia to generate what it has buffered for the live utterance now (a manual flush;
        the relay's ``response.create``). Nothing to do when no utterance is taking text."""
        utt = self._live
        if utt is not None and utt.state is UtteranceState.SPEAKING:
            self._outbox.append({**self._request(utt, "", more=True), "flush": True})
        return []

    def interrupt(self, response_id: str | None) -> list[ProviderEvent]:
        """Barge-in: cancel `response_id` upstream at once and end it here as cancelled (its late
        frames are then ignored). Cartesia keeps no transcript, so there is nothing to truncate, and
        without a response id there is nothing to stop."""
        utt = self._live
        if response_id is None or utt is None or utt.context_id != response_id:
            return []
        self._outbox.append({"context_id": utt.context_id, "cancel": True})
        return [self._end(utt, ResponseStatus.CANCELLED, utt.usage()), *self._advance()]

    # -- Cartesia server frames → provider events -----------------------------------------------

    def feed(self, frame: str | bytes) -> list[ProviderEvent]:
        """One WebSocket message from Cartesia. Frames that are not a JSON object with a `type` are
        logged (size only, never the payload) and skipped."""
        try:
            event = orjson.loads(frame)
        except orjson.JSONDecodeError:
            log.warning("Cartesia sent a frame that is not JSON (%d bytes); skipped", len(frame))
            return []
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            log.warning("Cartesia sent a JSON frame without a type (%d bytes); skipped", len(frame))
            return []
        return self.receive(event)

    def receive(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        """One parsed Cartesia server event."""
        kind = event["type"]
        try:
            if kind == "chunk":  # the hot path first
                return self._on_chunk(event)
            if kind == "timestamps":
                return self._on_timestamps(event)
            if kind == "done":
                return self._on_done(event)
            if kind == "error":
                return self._on_error(event)
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error):
            log.warning("Cartesia sent a malformed %s event; skipped", kind)
            return []
        if kind not in _IGNORED and kind not in self._unknown_types and len(self._unknown_types) < MAX_UNKNOWN_TYPES:
            self._unknown_types.add(kind)
            log.debug("Cartesia event type %r is not handled; skipping it (logged once)", kind)
        return []

    def connection_lost(self) -> list[ProviderEvent]:
        """The upstream is gone: the live utterance ends as failed, with the characters already sent
        (what Cartesia may bill; those still in the outbox never left). Utterances still waiting here
        never reached Cartesia and never started, so they just go."""
        events: list[ProviderEvent] = []
        utt = self._live
        if utt is not None:
            unsent = sum(
                len(m["transcript"])
                for m in self._outbox
                if m.get("context_id") == utt.context_id and isinstance(m.get("transcript"), str)
            )
            utt.characters -= unsent
            events.append(self._end(utt, ResponseStatus.FAILED, utt.usage()))
        for waiting in self._queued:
            waiting.to(UtteranceState.ENDED)
        self._queued.clear()
        self._open = None
        self._outbox.clear()
        return events

    # -- internals ------------------------------------------------------------------------------

    def _request(self, utt: _Utterance, transcript: str, *, more: bool) -> dict[str, Any]:
        """A generation request. Every input on a context keeps the same fields but `transcript`
        and `continue` (Cartesia's rule), so they are all built here from fixed values."""
        request: dict[str, Any] = {
            "context_id": utt.context_id,
            "model_id": self.model,
            "transcript": transcript,
            "voice": voice_spec(utt.voice, self.version),
            "output_format": self._wire_format,
            "continue": more,
            "add_timestamps": True,
        }
        if self.language is not None:
            request["language"] = self.language
        if self.max_buffer_delay_ms is not None:
            request["max_buffer_delay_ms"] = self.max_buffer_delay_ms
        return request

    def _speak(self, utt: _Utterance, text: str, *, closes: bool) -> None:
        """Send one piece of a live utterance; the last one closes its input (`continue: false`)."""
        if utt.state is not UtteranceState.SPEAKING:
            raise RuntimeError(f"utterance {utt.context_id} is {utt.state.value}, not speaking")
        if text or closes:  # an empty piece that does not close says nothing
            self._outbox.append(self._request(utt, text, more=not closes))
            utt.characters += len(text)
        if closes:
            utt.to(UtteranceState.CLOSING)

    def _advance(self) -> list[ProviderEvent]:
        """With nothing live, start the next waiting utterance: announce it and send what it has."""
        if self._live is not None or not self._queued:
            return []
        utt = self._queued.popleft()
        utt.to(UtteranceState.SPEAKING)
        self._live = utt
        # What came while it waited goes as one input: Cartesia concatenates transcripts verbatim.
        text = "".join(utt.pending)
        utt.pending.clear()
        self._speak(utt, text, closes=utt.final)
        return [ResponseStarted(utt.context_id)]

    def _end(self, utt: _Utterance, status: ResponseStatus, usage: Usage) -> ResponseDone:
        utt.to(UtteranceState.ENDED)
        if utt is self._live:
            self._live = None
        self._ended.append(utt.context_id)
        if utt is self._open and status is ResponseStatus.COMPLETED:
            # Cartesia ended the context before the client's final piece (contexts expire when input
            # pauses too long): the rest of the text starts a new utterance rather than being lost.
            self._open = None
        return ResponseDone(utt.context_id, status, usage)

    def _live_for(self, event: Mapping[str, Any]) -> _Utterance | None:
        """The live utterance if `event` is about it; None (logged) for an ended or unknown context."""
        utt = self._live
        context_id = event.get("context_id")
        if utt is not None and context_id == utt.context_id:
            return utt
        if context_id not in self._ended:
            log.debug("Cartesia sent %s for a context this session is not speaking; skipped", event["type"])
        return None

    def _on_chunk(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        utt = self._live_for(event)
        if utt is None:
            return []
        audio = _a2b_base64(event["data"])
        if not audio:
            return []
        utt.audio_bytes += len(audio)
        return [AudioDelta(utt.context_id, audio)]

    def _on_timestamps(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        utt = self._live_for(event)
        stamps = event.get("word_timestamps")
        if utt is None or not isinstance(stamps, Mapping):
            return []
        words, starts, ends = stamps["words"], stamps["start"], stamps["end"]
        if not (len(words) == len(starts) == len(ends)):
            log.warning("Cartesia sent word timestamps of unequal lengths; the extra entries are dropped")
        count = min(len(words), len(starts), len(ends))
        if not count:
            return []
        # Seconds since the context's first audio, which is where the response's audio starts.
        start_ms = [max(0, round(float(s) * 1000)) for s in starts[:count]]
        end_ms = [max(0, round(float(e) * 1000)) for e in ends[:count]]
        return [
            Alignment(
                utt.context_id,
                start_ms=start_ms,
                duration_ms=[max(0, e - s) for s, e in zip(start_ms, end_ms, strict=True)],
                words=[str(w) for w in words[:count]],
            )
        ]

    def _on_done(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        utt = self._live_for(event)
        if utt is None:
            return []
        return [self._end(utt, ResponseStatus.COMPLETED, utt.usage()), *self._advance()]

    def _on_error(self, event: Mapping[str, Any]) -> list[ProviderEvent]:
        code, message = error_details(event)
        error = ProviderError(code, self._scrub(message), fatal=False)
        context_id = event.get("context_id")
        utt = self._live
        if utt is not None and context_id == utt.context_id:
            # Errors consume no credits: a context refused before any audio costs nothing; one that
            # failed later was billed for what it had been sent.
            usage = utt.usage() if utt.audio_bytes else Usage()
            return [error, self._end(utt, ResponseStatus.FAILED, usage), *self._advance()]
        if context_id is not None and context_id in self._ended:
            log.debug("Cartesia reported %s for a context that already ended; skipped", code)
            return []
        return [error]
