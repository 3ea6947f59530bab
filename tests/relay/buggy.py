"""A provider with a bug in it, to see the relay contain a bug (close 1011, nothing leaked).

Not a mock of a real provider: a real adapter with a deliberate defect."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from audiocodecs.format import PCM16_24K, AudioFormat
from providers.base import ProviderKind, SessionConfig, UpstreamSession
from providers.events import ProviderEvent


class BuggyUpstream:
    input_format: AudioFormat = PCM16_24K
    output_format: AudioFormat = PCM16_24K

    async def send_audio(self, audio: bytes) -> None: ...
    async def commit(self, respond: bool) -> None: ...
    async def send_text(self, text: str, *, final: bool, respond: bool) -> None: ...
    async def create_response(self, instructions: str | None = None) -> None: ...
    async def interrupt(self, response_id: str | None, played_ms: int | None) -> None: ...
    async def send_tool_result(self, call_id: str, output: str) -> None: ...

    async def update(
        self, *, instructions: str | None, voice: str | None, tools: tuple[Mapping[str, Any], ...] | None
    ) -> None: ...

    async def events(self) -> AsyncIterator[ProviderEvent]:
        raise KeyError("secret internals")
        yield  # pragma: no cover

    async def close(self) -> None: ...


class BuggyProvider:
    name = "buggy"
    kind = ProviderKind.REALTIME
    default_model = "bug-1"
    modalities = frozenset({"audio", "text"})

    def supports_model(self, model: str) -> bool:
        return True

    async def connect(self, config: SessionConfig) -> UpstreamSession:
        return BuggyUpstream()
