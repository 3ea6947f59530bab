"""Client messages of the Cartesia TTS WebSocket, parsed and checked at the edge of the emulator.

A message is a generation request (`Generation`) or a cancel (`Cancel`); anything else raises
`RequestError`, which the connection sends back as an ``error`` event with that status and code.
Values are checked as the API reference and the SDK's `GenerationRequest` type declare them; unknown
fields are ignored, as a server that adds optional fields over versions must.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "ENCODINGS",
    "LANGUAGES",
    "MODELS",
    "SAMPLE_RATES",
    "STRUCTURED_ERRORS_VERSION",
    "Cancel",
    "Generation",
    "RequestError",
    "parse_message",
]

#: model ids the emulator speaks (cartesia 4.x `TTSModel`, plus the legacy ones still seen in the wild)
MODELS: Final = frozenset(
    {
        "sonic-3.5",
        "sonic-3",
        "sonic-3.5-2026-05-04",
        "sonic-3-2026-01-12",
        "sonic-3-2025-10-27",
        "sonic-latest",
        "sonic",
        "sonic-2",
        "sonic-turbo",
        "sonic-2-2025-03-07",
        "sonic-english",
    }
)
ENCODINGS: Final = frozenset({"pcm_s16le", "pcm_f32le", "pcm_mulaw", "pcm_alaw"})
SAMPLE_RATES: Final = frozenset({8000, 16000, 22050, 24000, 44100, 48000})
LANGUAGES: Final = frozenset(
    [
        "en",
        "fr",
        "de",
        "es",
        "pt",
        "zh",
        "ja",
        "hi",
        "it",
        "ko",
        "nl",
        "pl",
        "ru",
        "sv",
        "tr",
        "tl",
        "bg",
        "ro",
        "ar",
        "cs",
        "el",
        "fi",
        "hr",
        "ms",
        "sk",
        "da",
        "ta",
        "uk",
        "hu",
        "no",
        "vi",
        "bn",
        "th",
        "he",
        "ka",
        "id",
        "te",
        "gu",
        "kn",
        "ml",
        "mr",
        "pa",
        "or",
        "ur",
    ]
)
#: from this ``Cartesia-Version`` on, errors are structured (``error_code``, ``title``, ``message``)
STRUCTURED_ERRORS_VERSION: Final = "2026-03-01"
#: Cartesia's documented range for ``max_buffer_delay_ms``, and its default
MAX_BUFFER_DELAY_MS: Final = 5000
DEFAULT_BUFFER_DELAY_MS: Final = 3000


class RequestError(Exception):
    """A client message the service would refuse: becomes an ``error`` event."""

    def __init__(self, message: str, *, status: int = 400, code: str = "invalid_request", title: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.title = title or "Invalid request"


@dataclass(frozen=True, slots=True)
class Cancel:
    context_id: str


@dataclass(frozen=True, slots=True)
class Generation:
    context_id: str
    model_id: str
    transcript: str
    voice_id: str
    encoding: str
    sample_rate: int
    #: ``continue``: more input follows on this context
    more: bool
    add_timestamps: bool
    language: str | None
    max_buffer_delay_ms: int
    flush: bool

    @property
    def fixed(self) -> tuple[str, str, str, int, str | None]:
        """What every input on one context must repeat unchanged (the fields that shape the audio)."""
        return (self.model_id, self.voice_id, self.encoding, self.sample_rate, self.language)


def _field(message: Mapping[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    value = message.get(name)
    if value is None:
        if required:
            raise RequestError(f"'{name}' is required")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RequestError(f"'{name}' must be {kind.__name__}")
    return value


def _voice_id(voice: object) -> str:
    """``"id"`` (2026-08-14), ``{"id": …}`` or ``{"mode": "id", "id": …}`` (earlier versions)."""
    if isinstance(voice, str) and voice:
        return voice
    if isinstance(voice, Mapping):
        mode = voice.get("mode", "id")
        voice_id = voice.get("id")
        if mode == "id" and isinstance(voice_id, str) and voice_id:
            return voice_id
        if mode != "id":
            raise RequestError(f"voice mode {mode!r} is not supported by this emulator; use a voice id")
    raise RequestError("'voice' must be a voice id or an object with an 'id'")


def _output_format(value: object) -> tuple[str, int]:
    if not isinstance(value, Mapping):
        raise RequestError("'output_format' is required")
    if value.get("container") != "raw":
        raise RequestError("output_format.container must be 'raw' on the WebSocket")
    encoding = value.get("encoding")
    if encoding not in ENCODINGS:
        raise RequestError(f"output_format.encoding must be one of {', '.join(sorted(ENCODINGS))}")
    rate = value.get("sample_rate")
    if rate not in SAMPLE_RATES or isinstance(rate, bool):
        raise RequestError(f"output_format.sample_rate must be one of {', '.join(map(str, sorted(SAMPLE_RATES)))}")
    assert isinstance(encoding, str) and isinstance(rate, int)
    return encoding, rate


def parse_message(message: object) -> Generation | Cancel:
    """One decoded JSON client message. Raises `RequestError`."""
    if not isinstance(message, Mapping):
        raise RequestError("a message must be a JSON object")
    context_id = _field(message, "context_id", str)
    if not context_id:
        raise RequestError("'context_id' must not be empty")
    if message.get("cancel") is True:
        return Cancel(context_id)
    model_id = _field(message, "model_id", str)
    if model_id not in MODELS:
        raise RequestError(
            "The model is not valid, make sure it is a valid model ID.", code="model_not_found", title="Invalid model"
        )
    transcript = _field(message, "transcript", str)
    if "voice" not in message:
        raise RequestError("'voice' is required")
    voice_id = _voice_id(message["voice"])
    encoding, rate = _output_format(message.get("output_format"))
    language = _field(message, "language", str, required=False)
    if language is not None and language not in LANGUAGES:
        raise RequestError(f"language {language!r} is not supported")
    delay = _field(message, "max_buffer_delay_ms", int, required=False)
    if delay is not None and not 0 <= delay <= MAX_BUFFER_DELAY_MS:
        raise RequestError(f"'max_buffer_delay_ms' must be within 0-{MAX_BUFFER_DELAY_MS}")
    return Generation(
        context_id=context_id,
        model_id=model_id,
        transcript=transcript,
        voice_id=voice_id,
        encoding=encoding,
        sample_rate=rate,
        more=bool(_field(message, "continue", bool, required=False)),
        add_timestamps=bool(_field(message, "add_timestamps", bool, required=False)),
        language=language,
        max_buffer_delay_ms=DEFAULT_BUFFER_DELAY_MS if delay is None else delay,
        flush=bool(_field(message, "flush", bool, required=False)),
    )
