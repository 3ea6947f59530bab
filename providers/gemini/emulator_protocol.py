"""The Gemini Live wire as the emulator reads and writes it: casing, ``setup``, errors, messages, faults.

* Clients send proto3 JSON in either casing, even mixed (google-genai sends ``realtime_input`` with
  ``mimeType`` inside, reference §0.4): `normalize_keys` turns every field name into lowerCamelCase,
  leaving alone the values that are user data (function ``args``, ``response``, JSON schemas).
* `parse_setup` reads the first message into a `LiveSetup`, or raises `WireError` with the close code
  and reason the real service would use (errors are close frames, §2.9).
* The server's messages are plain dicts with camelCase top-level keys (§0.5), built here.
* `GeminiFaults` adds ``go_away_after_events`` to the shared `Faults`.
"""

from __future__ import annotations

import binascii
import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from providers.emulation.faults import Faults, FaultSpecError, parse_count, parse_non_negative
from providers.gemini.wire import LIVE_MODEL

__all__ = [
    "CLOSE_INTERNAL",
    "CLOSE_INVALID",
    "CLOSE_POLICY",
    "GeminiFaults",
    "LiveSetup",
    "WireError",
    "decode_base64",
    "label_of",
    "normalize_keys",
    "parse_rate",
    "parse_setup",
]

#: close codes of the real service (§2.9)
CLOSE_INVALID: Final = 1007  # invalid argument, bad key
CLOSE_POLICY: Final = 1008  # model not found or not supported, not allowed
CLOSE_INTERNAL: Final = 1011  # internal error, deadline expired
#: a close reason is at most 123 bytes of UTF-8 (RFC 6455 §5.5)
MAX_REASON_BYTES: Final = 123

#: fields whose values are user data, not proto messages: their keys keep their spelling
_OPAQUE: Final = frozenset({"args", "response", "parameters", "parametersJsonSchema", "responseJsonSchema", "labels"})
_SNAKE: Final = re.compile(r"_([a-z0-9])")
_RATE: Final = re.compile(r"rate\s*=\s*(\d+)")
_MODALITIES: Final = frozenset({"AUDIO", "TEXT"})


class WireError(Exception):
    """A client mistake the service answers by closing the socket with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


def _camel(key: str) -> str:
    return _SNAKE.sub(lambda m: m.group(1).upper(), key) if "_" in key else key


def normalize_keys(value: Any) -> Any:
    """Every field name in lowerCamelCase, recursively (user-data fields excepted, see `_OPAQUE`)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = _camel(key) if isinstance(key, str) else key
            out[name] = item if name in _OPAQUE else normalize_keys(item)
        return out
    if isinstance(value, list):
        return [normalize_keys(item) for item in value]
    return value


def label_of(message: Mapping[str, Any]) -> str:
    """How a message is named in recordings: ``setup``, ``realtimeInput.audio``, ``serverContent.modelTurn``,
    ``toolCall``… (the top-level key, plus the first field for realtime input and server content)."""
    key = next(iter(message), "")
    if key in ("realtimeInput", "serverContent"):
        body = message[key]
        if isinstance(body, Mapping) and body:
            return f"{key}.{next(iter(body))}"
    return str(key)


_URLSAFE: Final = str.maketrans("-_", "+/")


def decode_base64(data: str) -> bytes:
    """Proto3 JSON ``bytes``: standard or URL-safe base64 (google-genai sends the latter), padding optional."""
    data = data.translate(_URLSAFE)
    return binascii.a2b_base64(data + "=" * (-len(data) % 4))


def parse_rate(mime_type: object, default: int = 16000) -> int:
    """The sample rate in ``audio/pcm;rate=24000`` (``default`` when there is none)."""
    if isinstance(mime_type, str):
        match = _RATE.search(mime_type)
        if match:
            return int(match.group(1))
    return default


# ---------------------------------------------------------------------------------------------
# setup


@dataclass(frozen=True, slots=True)
class LiveSetup:
    """What the emulator uses of a normalized ``setup``."""

    model: str
    audio_out: bool = True
    voice: str | None = None
    instructions: str = ""
    tools: tuple[dict[str, Any], ...] = ()
    automatic_vad: bool = True
    interrupts: bool = True
    silence_ms: int = 500
    prefix_padding_ms: int = 300
    start_threshold: float = 0.5
    input_transcription: bool = False
    output_transcription: bool = False
    resumption: bool = False
    resume_handle: str | None = None


def _object(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WireError(CLOSE_INVALID, f"Invalid value at '{where}': expected an object.")
    return value


def _texts(content: object, where: str) -> str:
    parts = _object(content, where).get("parts") or []
    if not isinstance(parts, list):
        raise WireError(CLOSE_INVALID, f"Invalid value at '{where}.parts': expected a list.")
    return " ".join(p["text"] for p in parts if isinstance(p, Mapping) and isinstance(p.get("text"), str))


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def parse_setup(message: Mapping[str, Any]) -> LiveSetup:
    """A normalized first message (``{"setup": …}``, or the newer ``{"config": …}``, §4) as a `LiveSetup`."""
    body = message.get("setup", message.get("config"))
    if len(message) != 1 or not isinstance(body, Mapping):
        raise WireError(CLOSE_INVALID, "The first message must be a setup message.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise WireError(CLOSE_INVALID, "Invalid value at 'setup.model': a model is required.")
    name = model.removeprefix("models/")
    if not model.startswith("models/") or not LIVE_MODEL.fullmatch(name):
        raise WireError(
            CLOSE_POLICY,
            f"models/{name} is not found for API version v1beta, or is not supported for bidiGenerateContent.",
        )
    generation = _object(body.get("generationConfig"), "setup.generationConfig")
    modalities = generation.get("responseModalities", body.get("responseModalities", ["AUDIO"]))
    if not isinstance(modalities, list) or len(modalities) != 1 or str(modalities[0]).upper() not in _MODALITIES:
        raise WireError(CLOSE_INVALID, "Invalid value at 'setup.generation_config.response_modalities'.")
    speech = _object(generation.get("speechConfig"), "setup.generationConfig.speechConfig")
    voice = _object(_object(speech.get("voiceConfig"), "voiceConfig").get("prebuiltVoiceConfig"), "voice")
    voice_name = voice.get("voiceName")
    tools: list[dict[str, Any]] = []
    raw_tools = body.get("tools") or []
    if not isinstance(raw_tools, list):
        raise WireError(CLOSE_INVALID, "Invalid value at 'setup.tools': expected a list.")
    for tool in raw_tools:
        for declaration in _object(tool, "setup.tools[]").get("functionDeclarations") or []:
            if not isinstance(declaration, Mapping) or not isinstance(declaration.get("name"), str):
                raise WireError(CLOSE_INVALID, "Invalid value at 'setup.tools[].function_declarations[].name'.")
            tools.append(dict(declaration))
    realtime = _object(body.get("realtimeInputConfig"), "setup.realtimeInputConfig")
    detection = _object(realtime.get("automaticActivityDetection"), "automaticActivityDetection")
    resumption = body.get("sessionResumption")
    handle = _object(resumption, "setup.sessionResumption").get("handle")
    return LiveSetup(
        model=name,
        audio_out=str(modalities[0]).upper() == "AUDIO",
        voice=voice_name if isinstance(voice_name, str) else None,
        instructions=_texts(body.get("systemInstruction"), "setup.systemInstruction"),
        tools=tuple(tools),
        automatic_vad=not detection.get("disabled", False),
        interrupts=realtime.get("activityHandling") != "NO_INTERRUPTION",
        silence_ms=_int(detection.get("silenceDurationMs"), 500),
        prefix_padding_ms=_int(detection.get("prefixPaddingMs"), 300),
        start_threshold=0.6 if detection.get("startOfSpeechSensitivity") == "START_SENSITIVITY_LOW" else 0.5,
        input_transcription="inputAudioTranscription" in body,
        output_transcription="outputAudioTranscription" in body,
        resumption=resumption is not None,
        resume_handle=handle if isinstance(handle, str) and handle else None,
    )


# ---------------------------------------------------------------------------------------------
# faults


@dataclass(slots=True)
class GeminiFaults(Faults):
    """The shared fault switches plus one of Gemini's own."""

    #: after this many server messages on a connection, send ``goAway`` (then close after the grace period)
    go_away_after_events: int | None = None
    #: hold ``setupComplete`` back this long (the other messages go out undelayed)
    setup_complete_delay_ms: float = 0.0

    @property
    def active(self) -> bool:
        return self != GeminiFaults()

    @classmethod
    def parse(cls, spec: str) -> GeminiFaults:
        return cls().merged(spec)

    @classmethod
    def of(cls, faults: Faults) -> GeminiFaults:
        if isinstance(faults, GeminiFaults):
            return faults
        return cls(**{f.name: getattr(faults, f.name) for f in dataclasses.fields(Faults)})

    def merged(self, spec: str | None) -> GeminiFaults:
        own: dict[str, Any] = {}
        shared: list[str] = []
        for part in (spec or "").split(","):
            name, sep, raw = part.partition(":")
            parser = _OWN_PARSERS.get(name.strip())
            if parser is None or not sep:
                shared.append(part)
                continue
            try:
                own[name.strip()] = parser(raw.strip())
            except ValueError as exc:
                raise FaultSpecError(f"bad value for fault {name.strip()!r}: {exc}") from None
        base = Faults.merged(self, ",".join(shared))
        return dataclasses.replace(GeminiFaults.of(base), **own)


_OWN_PARSERS: Final[dict[str, Callable[[str], Any]]] = {
    "go_away_after_events": parse_count,
    "setup_complete_delay_ms": parse_non_negative,
}
