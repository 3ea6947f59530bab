"""Helpers for the ElevenLabs tests: strict validation against the official SDK's own types.

The SDK (elevenlabs 2.78.0) types both TTS WebSockets: server messages as ``AudioOutput`` /
``FinalOutput`` (stream-input) and ``AudioOutputMulti`` / ``FinalOutputMulti`` (multi-stream-input),
client messages as the ``SendMessageMulti`` union. Its models accept anything (``extra="allow"``,
and the SDK itself parses without validating), so `strict_server_message` validates with pydantic in
strict mode and then rejects every key that is not the wire name of a declared field, at any depth. The error message
the service sends before a 1008 close (``{"message", "error", "code"}``) has no type for the TTS
sockets; the SDK's ``TextToDialogueWebsocketError`` — the same shape on its sibling dialogue socket —
stands in for it.
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Sequence
from typing import Any, Final

import orjson
import pydantic
import pytest
from elevenlabs.types import (
    AudioOutput,
    AudioOutputMulti,
    FinalOutput,
    FinalOutputMulti,
    TextToDialogueWebsocketError,
)
from elevenlabs.v_1_text_to_speech_voice_id_multi_stream_input.types.send_message_multi import SendMessageMulti

from providers.base import UpstreamSession
from providers.events import Alignment, AudioDelta, ProviderEvent, ResponseDone

TIMEOUT_S: Final = 5.0
MULTI_SERVER_TYPES: Final = (AudioOutputMulti, FinalOutputMulti, TextToDialogueWebsocketError)
SINGLE_SERVER_TYPES: Final = (AudioOutput, FinalOutput, TextToDialogueWebsocketError)
CLIENT_TYPES: Final = typing.get_args(SendMessageMulti)
#: fields a model must have been given explicitly (their defaults would make any dict match)
_REQUIRED_SET: Final = {FinalOutput: "is_final", FinalOutputMulti: "is_final"}
_ADAPTERS: dict[type, pydantic.TypeAdapter[Any]] = {}


def _adapter(model: type) -> pydantic.TypeAdapter[Any]:
    if model not in _ADAPTERS:
        _ADAPTERS[model] = pydantic.TypeAdapter(model)
    return _ADAPTERS[model]


def stray_keys(model: object, raw: object, path: str = "") -> list[str]:
    """Every key of `raw` that is not the wire name of a field of the validated `model`, at any depth.

    Besides undeclared fields this catches Python names (``context_id`` for ``contextId``): the SDK's
    models accept those too (a before-validator renames them), but the wire never uses them.
    """
    if isinstance(model, list) and isinstance(raw, list):
        return [k for i, (m, r) in enumerate(zip(model, raw, strict=False)) for k in stray_keys(m, r, f"{path}[{i}]")]
    if not isinstance(model, pydantic.BaseModel) or not isinstance(raw, dict):
        return []
    wire = {(info.alias or name): name for name, info in type(model).model_fields.items()}
    found = []
    for key, value in raw.items():
        name = wire.get(key)
        if name is None:
            found.append(f"{path}.{key}".lstrip("."))
        else:
            found += stray_keys(getattr(model, name), value, f"{path}.{key}")
    return found


def strict_matches(raw: str | bytes, models: Sequence[type]) -> list[pydantic.BaseModel]:
    """The models `raw` validates against strictly, with no key that is not a declared wire name."""
    data = orjson.loads(raw)
    matches = []
    for model in models:
        try:
            parsed = _adapter(model).validate_json(raw, strict=True)
        except pydantic.ValidationError:
            continue
        required = _REQUIRED_SET.get(model)
        if not stray_keys(parsed, data) and (required is None or required in parsed.model_fields_set):
            matches.append(parsed)
    return matches


def strict_server_message(raw: str | bytes, *, multi: bool = True) -> dict[str, Any]:
    """One server frame, checked to be exactly one of the SDK's server message types; returned parsed."""
    models = MULTI_SERVER_TYPES if multi else SINGLE_SERVER_TYPES
    matches = strict_matches(raw, models)
    assert len(matches) == 1, f"not exactly one SDK type fits {raw[:200]!r}: {matches}"
    message: dict[str, Any] = orjson.loads(raw)
    return message


def check_client_message(recorded: dict[str, Any]) -> None:
    """A client message as the emulator recorded it (its added ``type`` removed) fits one of the SDK's
    ``SendMessageMulti`` types with no undeclared field."""
    message = {k: v for k, v in recorded.items() if k != "type"}
    assert strict_matches(orjson.dumps(message), CLIENT_TYPES), f"no SDK client type fits {message}"


class Events:
    """Pulls from `UpstreamSession.events()` with a timeout on every await."""

    def __init__(self, session: UpstreamSession) -> None:
        self._it = aiter(session.events())
        self.seen: list[ProviderEvent] = []

    async def next(self) -> ProviderEvent:
        event = await asyncio.wait_for(anext(self._it), TIMEOUT_S)
        self.seen.append(event)
        return event

    async def until_done(self, response_id: str | None = None) -> ResponseDone:
        while True:
            event = await self.next()
            if isinstance(event, ResponseDone) and response_id in (None, event.response_id):
                return event

    async def expect_end(self) -> None:
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(self._it), TIMEOUT_S)

    def audio(self, response_id: str) -> bytes:
        return b"".join(e.audio for e in self.seen if isinstance(e, AudioDelta) and e.response_id == response_id)

    def alignments(self, response_id: str) -> list[Alignment]:
        return [e for e in self.seen if isinstance(e, Alignment) and e.response_id == response_id]
