"""Relay protocol v1: parse and validate client messages; nothing here does I/O.

Every client message becomes a typed object, or raises `InvalidMessage` / `UnknownType` /
`Unsupported` naming the field at fault. Audio in binary frames never comes through here: the
transport hands it straight to the session (the per-frame hot path has no parsing at all).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson

from audiocodecs.errors import UnsupportedFormat
from audiocodecs.format import PCM16_16K, PCM16_24K, AudioFormat
from providers.base import TurnDetection
from relay.errors import InvalidMessage, UnknownType, Unsupported

SUBPROTOCOL_JSON = "relay.v1.json"
SUBPROTOCOL_MSGPACK = "relay.v1.msgpack"
TOKEN_SUBPROTOCOL_PREFIX = "relay.token."

MODALITIES = frozenset({"audio", "text"})
METADATA_MAX_KEYS = 16
METADATA_MAX_KEY_CHARS = 64
METADATA_MAX_VALUE_CHARS = 256


@dataclass(frozen=True, slots=True)
class SessionStart:
    provider: str
    model: str | None = None
    voice: str | None = None
    instructions: str | None = None
    input_audio: AudioFormat = PCM16_16K
    output_audio: AudioFormat = PCM16_24K
    modalities: tuple[str, ...] = ("audio",)
    turn_detection: TurnDetection = TurnDetection.SERVER_VAD
    fallback: tuple[str, ...] = ()
    tools: tuple[Mapping[str, Any], ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    # Extension (optional): "base64" sends assistant audio as JSON `audio` messages, for clients
    # that cannot receive binary frames. Default "binary".
    output_audio_framing: str = "binary"


@dataclass(frozen=True, slots=True)
class AudioIn:
    audio: bytes


@dataclass(frozen=True, slots=True)
class AudioCommit:
    respond: bool = True


@dataclass(frozen=True, slots=True)
class TextIn:
    text: str
    final: bool = True
    respond: bool = True


@dataclass(frozen=True, slots=True)
class ResponseCreate:
    instructions: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseCancel:
    pass


@dataclass(frozen=True, slots=True)
class Playback:
    response_id: str
    played_ms: int


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    output: str


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    instructions: str | None = None
    voice: str | None = None
    tools: tuple[Mapping[str, Any], ...] | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    id: Any = None


@dataclass(frozen=True, slots=True)
class SessionEnd:
    pass


ClientMessage = (
    SessionStart
    | AudioIn
    | AudioCommit
    | TextIn
    | ResponseCreate
    | ResponseCancel
    | Playback
    | ToolResult
    | SessionUpdate
    | Ping
    | SessionEnd
)


def decode_json(text: str | bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(f"malformed JSON: {exc.msg} at position {exc.pos}") from None
    return _expect_object(obj)


def decode_msgpack(data: bytes) -> dict[str, Any]:
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise InvalidMessage(f"malformed msgpack: {type(exc).__name__}") from None
    return _expect_object(obj)


def _expect_object(obj: object) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidMessage("a message must be an object with a 'type'")
    return obj


def parse_message(obj: Mapping[str, Any]) -> ClientMessage:
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise InvalidMessage("field 'type' is required and must be a string")
    parser = _PARSERS.get(kind)
    if parser is None:
        raise UnknownType(f"unknown message type {kind[:64]!r}")
    message: ClientMessage = parser(obj)
    return message


# -- field readers ------------------------------------------------------------------------------


def _str(obj: Mapping[str, Any], name: str, *, required: bool = False, default: str | None = None) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise InvalidMessage(f"field {name!r} is required")
        return default
    if not isinstance(value, str):
        raise InvalidMessage(f"field {name!r} must be a string")
    return value


def _req_str(obj: Mapping[str, Any], name: str) -> str:
    value = _str(obj, name, required=True)
    assert value is not None
    return value


def _bool(obj: Mapping[str, Any], name: str, default: bool) -> bool:
    value = obj.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidMessage(f"field {name!r} must be a boolean")
    return value


def _tools(obj: Mapping[str, Any], name: str) -> tuple[Mapping[str, Any], ...] | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise InvalidMessage(f"field {name!r} must be a list of function objects")
    for tool in value:
        fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise InvalidMessage(f"every entry of {name!r} needs a string 'name'")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise InvalidMessage(f"'parameters' of tool {fn['name']!r} must be a JSON-schema object")
    return tuple(value)


def _format(obj: Mapping[str, Any], name: str, default: AudioFormat) -> AudioFormat:
    value = obj.get(name)
    if value is not None and not isinstance(value, dict):
        raise InvalidMessage(f"field {name!r} must be an audio format object")
    try:
        fmt = AudioFormat.from_dict(value, default)
    except UnsupportedFormat as exc:
        raise Unsupported(f"{name}: {exc}") from None
    if fmt.channels != 1:
        raise Unsupported(f"{name}: channels must be 1")
    return fmt


# -- per-type parsers ---------------------------------------------------------------------------


def _session_start(obj: Mapping[str, Any]) -> SessionStart:
    provider = _req_str(obj, "provider")
    modalities_raw = obj.get("modalities", ["audio"])
    if (
        not isinstance(modalities_raw, list)
        or not modalities_raw
        or not all(isinstance(m, str) for m in modalities_raw)
    ):
        raise InvalidMessage("field 'modalities' must be a non-empty list of strings")
    unknown = [m for m in modalities_raw if m not in MODALITIES]
    if unknown:
        raise Unsupported(f"unknown modality {unknown[0]!r}; use 'audio' and/or 'text'")
    turn = _str(obj, "turn_detection", default="server_vad") or "server_vad"
    try:
        turn_detection = TurnDetection(turn)
    except ValueError:
        raise InvalidMessage("field 'turn_detection' must be 'server_vad' or 'manual'") from None
    fallback = obj.get("fallback", [])
    if not isinstance(fallback, list) or not all(isinstance(p, str) for p in fallback):
        raise InvalidMessage("field 'fallback' must be a list of provider names")
    metadata = obj.get("metadata", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise InvalidMessage("field 'metadata' must be a map of strings to strings")
    # Metadata is copied onto every usage record: keep it small.
    if len(metadata) > METADATA_MAX_KEYS or any(
        len(k) > METADATA_MAX_KEY_CHARS or len(v) > METADATA_MAX_VALUE_CHARS for k, v in metadata.items()
    ):
        raise InvalidMessage(
            f"field 'metadata' allows at most {METADATA_MAX_KEYS} keys of <= {METADATA_MAX_KEY_CHARS} characters "
            f"with values of <= {METADATA_MAX_VALUE_CHARS} characters"
        )
    framing = _str(obj, "output_audio_framing", default="binary")
    if framing not in ("binary", "base64"):
        raise InvalidMessage("field 'output_audio_framing' must be 'binary' or 'base64'")
    assert framing is not None
    return SessionStart(
        provider=provider,
        model=_str(obj, "model"),
        voice=_str(obj, "voice"),
        instructions=_str(obj, "instructions"),
        input_audio=_format(obj, "input_audio", PCM16_16K),
        output_audio=_format(obj, "output_audio", PCM16_24K),
        modalities=tuple(dict.fromkeys(modalities_raw)),
        turn_detection=turn_detection,
        fallback=tuple(fallback),
        tools=_tools(obj, "tools") or (),
        metadata=dict(metadata),
        output_audio_framing=framing,
    )


def _audio(obj: Mapping[str, Any]) -> AudioIn:
    value = obj.get("audio")
    if isinstance(value, bytes | bytearray | memoryview):
        return AudioIn(bytes(value))
    if isinstance(value, str):
        try:
            return AudioIn(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidMessage("field 'audio' must be valid base64") from None
    raise InvalidMessage("field 'audio' is required: binary (msgpack) or a base64 string (JSON)")


def _text(obj: Mapping[str, Any]) -> TextIn:
    return TextIn(
        text=_req_str(obj, "text"),
        final=_bool(obj, "final", True),
        respond=_bool(obj, "respond", True),
    )


def _playback(obj: Mapping[str, Any]) -> Playback:
    played = obj.get("played_ms")
    if isinstance(played, bool) or not isinstance(played, int | float) or played < 0:
        raise InvalidMessage("field 'played_ms' must be a non-negative number")
    return Playback(response_id=_req_str(obj, "response_id"), played_ms=int(played))


def _tool_result(obj: Mapping[str, Any]) -> ToolResult:
    output = obj.get("output")
    if output is None:
        raise InvalidMessage("field 'output' is required")
    if not isinstance(output, str):
        # Structured outputs are accepted and passed on as their JSON text.
        output = orjson.dumps(output).decode()
    return ToolResult(call_id=_req_str(obj, "call_id"), output=output)


def _ping(obj: Mapping[str, Any]) -> Ping:
    value = obj.get("id")
    if value is not None and not isinstance(value, str | int | float):
        raise InvalidMessage("field 'id' must be a string or a number")
    return Ping(id=value)


_PARSERS: dict[str, Any] = {
    "session.start": _session_start,
    "audio": _audio,
    "audio.commit": lambda o: AudioCommit(respond=_bool(o, "respond", True)),
    "text": _text,
    "response.create": lambda o: ResponseCreate(instructions=_str(o, "instructions")),
    "response.cancel": lambda o: ResponseCancel(),
    "playback": _playback,
    "tool.result": _tool_result,
    "session.update": lambda o: SessionUpdate(
        instructions=_str(o, "instructions"), voice=_str(o, "voice"), tools=_tools(o, "tools")
    ),
    "ping": _ping,
    "session.end": lambda o: SessionEnd(),
}

MESSAGE_TYPES = frozenset(_PARSERS)
