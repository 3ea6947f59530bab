"""The normalized vocabulary between provider adapters and the session core.

Adapters turn provider wire messages into these events; the session turns them into the client
contract. They live here, in the lowest layer that needs them, so `providers` never imports `relay`.
Audio in `AudioDelta` is in the adapter's declared `output_format`; the session converts it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Literal

Role = Literal["user", "assistant"]


class ResponseStatus(StrEnum):
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass(slots=True)
class Usage:
    """Normalized usage counts (protocol-v1 §5). All integers; zero means absent."""

    input_text_tokens: int = 0
    input_audio_tokens: int = 0
    cached_input_tokens: int = 0
    output_text_tokens: int = 0
    output_audio_tokens: int = 0
    characters: int = 0
    audio_in_ms: int = 0
    audio_out_ms: int = 0

    def add(self, other: Usage) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def copy(self) -> Usage:
        return Usage(**self.to_dict())


@dataclass(frozen=True, slots=True)
class AudioDelta:
    response_id: str
    audio: bytes


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The provider's VAD heard the user start speaking (a barge-in if a response is playing)."""


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    pass


@dataclass(frozen=True, slots=True)
class ResponseStarted:
    response_id: str


@dataclass(frozen=True, slots=True)
class TranscriptDelta:
    role: Role
    text: str
    response_id: str | None = None


@dataclass(frozen=True, slots=True)
class TranscriptDone:
    role: Role
    text: str
    response_id: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    response_id: str
    text: str


@dataclass(frozen=True, slots=True)
class TextDone:
    response_id: str
    text: str


@dataclass(frozen=True, slots=True)
class Alignment:
    """Timing of spoken characters or words, for lip sync. Lists are parallel."""

    response_id: str
    start_ms: list[int]
    duration_ms: list[int]
    chars: list[str] | None = None
    words: list[str] | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str
    response_id: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseDone:
    response_id: str
    status: ResponseStatus
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True, slots=True)
class ProviderError:
    """An error the provider reported. `fatal` errors end the upstream connection."""

    code: str
    message: str
    fatal: bool = False


ProviderEvent = (
    AudioDelta
    | SpeechStarted
    | SpeechStopped
    | ResponseStarted
    | TranscriptDelta
    | TranscriptDone
    | TextDelta
    | TextDone
    | Alignment
    | ToolCall
    | ResponseDone
    | ProviderError
)
