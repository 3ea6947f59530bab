"""The provider adapter interface: small enough that a new provider is one new folder.

A `Provider` is a factory registered under a name (`openai`, `gemini`, …). `connect()` opens one
upstream connection for one session and returns an `UpstreamSession`, which accepts the client's
intents (audio, commit, text, cancel, …) and yields normalized `ProviderEvent`s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from audiocodecs.format import AudioFormat
from providers.events import ProviderEvent


class ProviderKind(StrEnum):
    REALTIME = "realtime"  # audio and text in, audio and/or text out (OpenAI Realtime, Gemini Live)
    TTS = "tts"  # text in, audio out (Cartesia, ElevenLabs)
    CHAT = "chat"  # text in, text out


class TurnDetection(StrEnum):
    SERVER_VAD = "server_vad"
    MANUAL = "manual"


class UpstreamError(Exception):
    """The provider refused, failed or vanished. The message must already be free of secrets."""

    def __init__(self, message: str, *, code: str = "upstream_error", retryable: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """What the client asked for in `session.start`, as the adapter needs it."""

    model: str
    client_input: AudioFormat
    client_output: AudioFormat
    voice: str | None = None
    instructions: str | None = None
    modalities: tuple[str, ...] = ("audio",)
    turn_detection: TurnDetection = TurnDetection.SERVER_VAD
    tools: tuple[Mapping[str, Any], ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class UpstreamSession(Protocol):
    """One live upstream connection. Methods may be called concurrently with `events()`."""

    @property
    def input_format(self) -> AudioFormat:
        """The audio format the provider wants from us (after negotiation in `connect`)."""
        ...

    @property
    def output_format(self) -> AudioFormat:
        """The audio format of `AudioDelta.audio`."""
        ...

    async def send_audio(self, audio: bytes) -> None: ...

    async def commit(self, respond: bool) -> None:
        """End of the user's audio turn (manual turn detection)."""
        ...

    async def send_text(self, text: str, *, final: bool, respond: bool) -> None: ...

    async def create_response(self, instructions: str | None = None) -> None: ...

    async def interrupt(self, response_id: str | None, played_ms: int | None) -> None:
        """Barge-in: stop `response_id` upstream if it is still running and, where the provider keeps
        a transcript, truncate the assistant's turn at `played_ms` of its audio."""
        ...

    async def send_tool_result(self, call_id: str, output: str) -> None: ...

    async def update(
        self, *, instructions: str | None, voice: str | None, tools: tuple[Mapping[str, Any], ...] | None
    ) -> None: ...

    def events(self) -> AsyncIterator[ProviderEvent]:
        """Normalized events until the upstream ends. Raises `UpstreamError` if it fails."""
        ...

    async def close(self) -> None: ...


class Provider(Protocol):
    name: str
    kind: ProviderKind
    default_model: str
    #: output modalities this provider can produce
    modalities: frozenset[str]

    def supports_model(self, model: str) -> bool: ...

    async def connect(self, config: SessionConfig) -> UpstreamSession:
        """Open the upstream connection, configured and ready. Raises `UpstreamError`."""
        ...
