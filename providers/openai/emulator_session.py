"""The OpenAI Realtime emulator's session: GA session config, its validation and merging, audio formats.

`SessionState` holds the effective session exactly as the wire shows it (``session.created`` and
``session.updated`` echo ``wire``), plus typed views the emulator needs. `SessionState.update`
validates a ``session.update`` completely before changing anything, and raises `ClientEventError`
(an ``error`` event, socket stays open) on the first problem — an unknown field, a sample rate other
than 24 kHz for ``audio/pcm``, output modalities other than ``["audio"]`` or ``["text"]``, …
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from audiocodecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from providers.emulation.server import new_id
from providers.emulation.vad import VadConfig

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "DEFAULT_TURN_DETECTION",
    "PCM",
    "PCMA",
    "PCMU",
    "ClientEventError",
    "SessionState",
    "WireFormat",
    "parse_format",
    "parse_output_modalities",
]

PCM_RATE: Final = 24_000
G711_RATE: Final = 8_000
SESSION_TTL_S: Final = 3600
DEFAULT_VOICE: Final = "marin"
DEFAULT_INSTRUCTIONS: Final = "You are the local OpenAI Realtime emulator: you echo audio and read text aloud."
DEFAULT_TURN_DETECTION: Final[Mapping[str, Any]] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
DEFAULT_SEMANTIC_VAD: Final[Mapping[str, Any]] = {
    "type": "semantic_vad",
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}
#: silence that ends a turn for each ``semantic_vad`` eagerness (the energy VAD stands in for the model)
_EAGERNESS_SILENCE_MS: Final = {"low": 1000, "medium": 700, "high": 400, "auto": 500}

_SESSION_KEYS: Final = frozenset(
    {
        "type",
        "model",
        "instructions",
        "output_modalities",
        "audio",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "tracing",
        "prompt",
        "truncation",
        "include",
        "reasoning",
        "parallel_tool_calls",
    }
)
_AUDIO_KEYS: Final = frozenset({"input", "output"})
_INPUT_KEYS: Final = frozenset({"format", "transcription", "noise_reduction", "turn_detection"})
_OUTPUT_KEYS: Final = frozenset({"format", "voice", "speed"})
_SERVER_VAD_KEYS: Final = frozenset(DEFAULT_TURN_DETECTION)
_SEMANTIC_VAD_KEYS: Final = frozenset(DEFAULT_SEMANTIC_VAD)


class ClientEventError(Exception):
    """A client event the emulator refuses; becomes an ``error`` event and the socket stays open."""

    def __init__(
        self, code: str, message: str, *, param: str | None = None, type: str = "invalid_request_error"
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.type = type

    def to_error(self, event_id: str | None) -> dict[str, Any]:
        return {
            "type": self.type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
            "event_id": event_id,
        }


def _invalid(param: str, message: str) -> ClientEventError:
    return ClientEventError("invalid_value", message, param=param)


def _unknown(param: str) -> ClientEventError:
    return ClientEventError("unknown_parameter", f"Unknown parameter: '{param}'.", param=param)


def _check_keys(value: Mapping[str, Any], allowed: frozenset[str], prefix: str) -> None:
    for key in value:
        if key not in allowed:
            raise _unknown(f"{prefix}.{key}")


def _mapping(value: object, param: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _invalid(param, f"Invalid type for '{param}': expected an object.")
    return value


# -- audio formats ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WireFormat:
    """One of the three GA audio formats; converts between its bytes and int16 samples."""

    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"]

    @property
    def rate(self) -> int:
        return PCM_RATE if self.type == "audio/pcm" else G711_RATE

    @property
    def sample_bytes(self) -> int:
        return 2 if self.type == "audio/pcm" else 1

    @property
    def bytes_per_ms(self) -> int:
        return self.rate * self.sample_bytes // 1000

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "rate": PCM_RATE} if self.type == "audio/pcm" else {"type": self.type}

    def decode(self, data: bytes) -> npt.NDArray[np.int16]:
        if self.type == "audio/pcm":
            return np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)
        return ulaw_decode(data) if self.type == "audio/pcmu" else alaw_decode(data)

    def encode(self, samples: npt.NDArray[np.int16]) -> bytes:
        if self.type == "audio/pcm":
            return samples.astype("<i2", copy=False).tobytes()
        return ulaw_encode(samples) if self.type == "audio/pcmu" else alaw_encode(samples)

    def ms(self, nbytes: int) -> int:
        return nbytes // self.bytes_per_ms


PCM: Final = WireFormat("audio/pcm")
PCMU: Final = WireFormat("audio/pcmu")
PCMA: Final = WireFormat("audio/pcma")


def parse_format(value: object, param: str) -> WireFormat:
    fmt = _mapping(value, param)
    _check_keys(fmt, frozenset({"type", "rate"}), param)
    kind = fmt.get("type", "audio/pcm")
    if kind == "audio/pcm":
        rate = fmt.get("rate", PCM_RATE)
        if rate != PCM_RATE or isinstance(rate, bool):
            raise _invalid(f"{param}.rate", f"Invalid value: {rate!r}. 'audio/pcm' supports only rate {PCM_RATE}.")
        return PCM
    if kind in ("audio/pcmu", "audio/pcma"):
        if "rate" in fmt and fmt["rate"] != G711_RATE:
            raise _invalid(f"{param}.rate", f"Invalid value: {fmt['rate']!r}. '{kind}' is 8000 Hz.")
        return PCMU if kind == "audio/pcmu" else PCMA
    raise _invalid(
        f"{param}.type", f"Invalid value: {kind!r}. Supported values are: 'audio/pcm', 'audio/pcmu' and 'audio/pcma'."
    )


def parse_output_modalities(value: object, param: str) -> list[str]:
    if value == ["audio"] or value == ["text"]:
        return ["audio"] if value == ["audio"] else ["text"]
    raise _invalid(param, f"Invalid value: {value!r}. Supported combinations are: ['text'] and ['audio'].")


def _int(value: object, param: str, lo: int, hi: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise _invalid(param, f"Invalid value for '{param}': expected an integer {bound}.")
    return value


def _number(value: object, param: str, lo: float, hi: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not lo <= value <= hi:
        raise _invalid(param, f"Invalid value for '{param}': expected a number between {lo} and {hi}.")
    return float(value)


def _bool(value: object, param: str) -> bool:
    if not isinstance(value, bool):
        raise _invalid(param, f"Invalid type for '{param}': expected a boolean.")
    return value


def _string(value: object, param: str) -> str:
    if not isinstance(value, str):
        raise _invalid(param, f"Invalid type for '{param}': expected a string.")
    return value


def parse_turn_detection(value: object, param: str) -> dict[str, Any] | None:
    if value is None:
        return None
    td = _mapping(value, param)
    kind = td.get("type")
    if kind == "server_vad":
        _check_keys(td, _SERVER_VAD_KEYS, param)
        merged = {**DEFAULT_TURN_DETECTION, **td}
        _number(merged["threshold"], f"{param}.threshold", 0.0, 1.0)
        _int(merged["prefix_padding_ms"], f"{param}.prefix_padding_ms", 0, 10_000)
        _int(merged["silence_duration_ms"], f"{param}.silence_duration_ms", 0, 10_000)
        if merged["idle_timeout_ms"] is not None:
            _int(merged["idle_timeout_ms"], f"{param}.idle_timeout_ms", 5_000, 30_000)
    elif kind == "semantic_vad":
        _check_keys(td, _SEMANTIC_VAD_KEYS, param)
        merged = {**DEFAULT_SEMANTIC_VAD, **td}
        if merged["eagerness"] not in _EAGERNESS_SILENCE_MS:
            raise _invalid(f"{param}.eagerness", f"Invalid value: {merged['eagerness']!r}.")
    else:
        raise _invalid(f"{param}.type", f"Invalid value: {kind!r}. Supported values are: 'server_vad', 'semantic_vad'.")
    _bool(merged["create_response"], f"{param}.create_response")
    _bool(merged["interrupt_response"], f"{param}.interrupt_response")
    return merged


def parse_tools(value: object, param: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _invalid(param, f"Invalid type for '{param}': expected an array.")
    tools: list[dict[str, Any]] = []
    for i, tool in enumerate(value):
        t = _mapping(tool, f"{param}[{i}]")
        kind = t.get("type", "function")
        if kind == "function":
            _string(t.get("name"), f"{param}[{i}].name")
        elif kind != "mcp":
            raise _invalid(f"{param}[{i}].type", f"Invalid value: {kind!r}. Supported values are: 'function', 'mcp'.")
        tools.append(dict(t))
    return tools


def parse_tool_choice(value: object, param: str) -> object:
    if value in ("auto", "none", "required"):
        return value
    if isinstance(value, Mapping) and value.get("type") in ("function", "mcp"):
        return dict(value)
    raise _invalid(param, f"Invalid value: {value!r}. Supported values are: 'auto', 'none', 'required' or a tool.")


def parse_max_output_tokens(value: object, param: str) -> int | str:
    if value == "inf":
        return "inf"
    return _int(value, param, 1, 4096)


def parse_voice(value: object, param: str) -> object:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return {"id": value["id"]}
    raise _invalid(param, f"Invalid value for '{param}': expected a voice name or {{'id': ...}}.")


def voice_name(voice: object) -> str:
    """The voice as ``RealtimeResponse.audio.output.voice`` wants it: a plain string."""
    if isinstance(voice, Mapping):
        return str(voice.get("id", DEFAULT_VOICE))
    return str(voice)


# -- the session --------------------------------------------------------------------------------


class SessionState:
    """The effective session config (``wire``), with typed views."""

    def __init__(self, model: str) -> None:
        self.wire: dict[str, Any] = {
            "type": "realtime",
            "object": "realtime.session",
            "id": new_id("sess_"),
            "model": model,
            "output_modalities": ["audio"],
            "instructions": DEFAULT_INSTRUCTIONS,
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
            "expires_at": int(time.time()) + SESSION_TTL_S,
            "audio": {
                "input": {
                    "format": PCM.to_wire(),
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": dict(DEFAULT_TURN_DETECTION),
                },
                "output": {"format": PCM.to_wire(), "voice": DEFAULT_VOICE, "speed": 1.0},
            },
            "include": None,
        }
        self.input_format: WireFormat = PCM
        self.output_format: WireFormat = PCM

    # typed views

    @property
    def turn_detection(self) -> dict[str, Any] | None:
        td: dict[str, Any] | None = self.wire["audio"]["input"]["turn_detection"]
        return td

    @property
    def vad_config(self) -> VadConfig | None:
        td = self.turn_detection
        if td is None:
            return None
        if td["type"] == "semantic_vad":
            return VadConfig(silence_duration_ms=_EAGERNESS_SILENCE_MS[td["eagerness"]])
        return VadConfig(
            threshold=float(td["threshold"]),
            prefix_padding_ms=int(td["prefix_padding_ms"]),
            silence_duration_ms=int(td["silence_duration_ms"]),
        )

    @property
    def output_modalities(self) -> list[str]:
        modalities: list[str] = self.wire["output_modalities"]
        return modalities

    @property
    def tools(self) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = self.wire["tools"]
        return tools

    @property
    def tool_choice(self) -> object:
        return self.wire["tool_choice"]

    @property
    def voice(self) -> object:
        return self.wire["audio"]["output"]["voice"]

    @property
    def transcription(self) -> dict[str, Any] | None:
        transcription: dict[str, Any] | None = self.wire["audio"]["input"]["transcription"]
        return transcription

    @property
    def max_output_tokens(self) -> int | str:
        value: int | str = self.wire["max_output_tokens"]
        return value

    def update(self, session: object) -> bool:
        """Apply a ``session.update``'s ``session`` (all or nothing). True if the input side changed."""
        s = _mapping(session, "session")
        if "type" not in s:
            raise ClientEventError(
                "missing_required_parameter", "Missing required parameter: 'session.type'.", param="session.type"
            )
        if s["type"] != "realtime":
            raise _invalid("session.type", f"Invalid value: {s['type']!r}. This emulator serves 'realtime' sessions.")
        _check_keys(s, _SESSION_KEYS, "session")
        new = copy.deepcopy(self.wire)
        input_format, output_format = self.input_format, self.output_format
        for key, value in s.items():
            param = f"session.{key}"
            if key in ("type", "model"):  # the model is fixed by the URL
                continue
            if key == "instructions":
                new[key] = _string(value, param)
            elif key == "output_modalities":
                new[key] = parse_output_modalities(value, param)
            elif key == "tools":
                new[key] = parse_tools(value, param)
            elif key == "tool_choice":
                new[key] = parse_tool_choice(value, param)
            elif key == "max_output_tokens":
                new[key] = parse_max_output_tokens(value, param)
            elif key == "audio":
                input_format, output_format = self._update_audio(new["audio"], value, input_format, output_format)
            else:
                new[key] = copy.deepcopy(value)
        input_changed = (
            input_format != self.input_format
            or new["audio"]["input"]["turn_detection"] != self.wire["audio"]["input"]["turn_detection"]
        )
        self.wire, self.input_format, self.output_format = new, input_format, output_format
        return input_changed

    @staticmethod
    def _update_audio(
        audio: dict[str, Any], value: object, input_format: WireFormat, output_format: WireFormat
    ) -> tuple[WireFormat, WireFormat]:
        a = _mapping(value, "session.audio")
        _check_keys(a, _AUDIO_KEYS, "session.audio")
        if "input" in a:
            inp = _mapping(a["input"], "session.audio.input")
            _check_keys(inp, _INPUT_KEYS, "session.audio.input")
            target = audio["input"]
            if "format" in inp:
                input_format = parse_format(inp["format"], "session.audio.input.format")
                target["format"] = input_format.to_wire()
            if "turn_detection" in inp:
                target["turn_detection"] = parse_turn_detection(
                    inp["turn_detection"], "session.audio.input.turn_detection"
                )
            for key in ("transcription", "noise_reduction"):
                if key in inp:
                    if inp[key] is not None:
                        _mapping(inp[key], f"session.audio.input.{key}")
                    target[key] = copy.deepcopy(inp[key])
        if "output" in a:
            out = _mapping(a["output"], "session.audio.output")
            _check_keys(out, _OUTPUT_KEYS, "session.audio.output")
            target = audio["output"]
            if "format" in out:
                output_format = parse_format(out["format"], "session.audio.output.format")
                target["format"] = output_format.to_wire()
            if "voice" in out:
                target["voice"] = parse_voice(out["voice"], "session.audio.output.voice")
            if "speed" in out:
                target["speed"] = _number(out["speed"], "session.audio.output.speed", 0.25, 1.5)
        return input_format, output_format
