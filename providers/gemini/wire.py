"""Gemini Live wire pieces that hold no state: URLs, the `setup` message, tools, usage, durations, secrets.

Everything here is a pure function of its arguments (reference: protocols-openai-gemini.md §2), so the
translator stays about protocol state and the emulator and tests can share the exact shapes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

from audiocodecs.format import PCM16_16K, PCM16_24K
from providers import secrets
from providers.base import SessionConfig, TurnDetection
from providers.events import Usage
from providers.sockets import websocket_url

__all__ = [
    "DEFAULT_API_VERSION",
    "INPUT_FORMAT",
    "INPUT_MIME",
    "LIVE_MODEL",
    "OUTPUT_FORMAT",
    "OUTPUT_MIME",
    "Scrubber",
    "auth_headers",
    "build_setup",
    "is_ephemeral_token",
    "json_schema_to_gemini",
    "live_url",
    "model_resource",
    "normalize_tool",
    "normalize_usage",
    "parse_duration_s",
    "scrub_secrets",
    "tool_response_payload",
    "usage_minus",
]

DEFAULT_API_VERSION: Final = "v1beta"
#: Live models are named …live… or …native-audio… (gemini-live-2.5-flash-preview,
#: gemini-2.5-flash-native-audio-preview-09-2025, gemini-3.1-flash-live-preview, gemini-2.0-flash-live-001)
LIVE_MODEL: Final = re.compile(r"(?:models/)?gemini-[A-Za-z0-9.\-]*(?:live|native-audio)[A-Za-z0-9.\-]*")

#: Gemini takes 16-bit PCM at 16 kHz natively and always answers 16-bit PCM at 24 kHz (§2.7)
INPUT_FORMAT: Final = PCM16_16K
OUTPUT_FORMAT: Final = PCM16_24K
INPUT_MIME: Final = "audio/pcm;rate=16000"
OUTPUT_MIME: Final = "audio/pcm;rate=24000"

_EPHEMERAL_PREFIX: Final = "auth_tokens/"


# ---------------------------------------------------------------------------------------------
# endpoint and auth


def is_ephemeral_token(api_key: str) -> bool:
    return api_key.startswith(_EPHEMERAL_PREFIX)


def live_url(base_url: str, api_version: str, *, ephemeral: bool = False) -> str:
    """The BidiGenerateContent WebSocket URL, derived as google-genai does (§3.2) except that
    http stays plain ws (the relay talks to its in-process emulator without TLS) and a trailing
    slash on the base URL does not produce ``//ws``."""
    method = "BidiGenerateContentConstrained" if ephemeral else "BidiGenerateContent"
    path = f"/ws/google.ai.generativelanguage.{api_version}.GenerativeService.{method}"
    url = websocket_url("Gemini", base_url, path)  # checks the base URL first
    if not re.fullmatch(r"v\d+(?:alpha|beta)?\d*", api_version):
        raise ValueError(f"Gemini api_version must look like v1, v1beta or v1alpha; got {api_version!r}")
    return url


def auth_headers(api_key: str) -> dict[str, str]:
    """``x-goog-api-key``, plus ``Authorization: Token …`` for an ephemeral token (as the SDK sends)."""
    headers = {"x-goog-api-key": api_key}
    if is_ephemeral_token(api_key):
        headers["Authorization"] = f"Token {api_key}"
    return headers


def model_resource(model: str) -> str:
    return model if model.startswith("models/") else f"models/{model}"


# ---------------------------------------------------------------------------------------------
# setup


#: JSON-Schema keywords Gemini's ``Schema`` (an OpenAPI 3.0 subset) understands; others are dropped
_SCHEMA_KEYS: Final = frozenset(
    {
        "anyOf", "default", "description", "enum", "example", "format", "items", "maxItems", "maxLength",
        "maxProperties", "maximum", "minItems", "minLength", "minProperties", "minimum", "nullable",
        "pattern", "properties", "propertyOrdering", "required", "title", "type",
    }
)  # fmt: skip


def json_schema_to_gemini(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON schema as Gemini's ``Schema``: types upper-cased (``"string"`` → ``"STRING"``), a type
    list with ``"null"`` → ``nullable``, keywords Gemini lacks (``additionalProperties``, ``$schema``)
    dropped, recursively through ``properties``, ``items`` and ``anyOf``."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in _SCHEMA_KEYS:
            continue
        if key == "type":
            kinds = [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)]
            if "null" in kinds:
                out["nullable"] = True
                kinds.remove("null")
            if kinds:
                out["type"] = kinds[0].upper()
        elif key == "properties" and isinstance(value, Mapping):
            out[key] = {name: json_schema_to_gemini(sub) for name, sub in value.items() if isinstance(sub, Mapping)}
        elif key == "items" and isinstance(value, Mapping):
            out[key] = json_schema_to_gemini(value)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [json_schema_to_gemini(sub) for sub in value if isinstance(sub, Mapping)]
        else:
            out[key] = value
    return out


def normalize_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A contract tool (JSON-schema function) as a Gemini ``functionDeclaration``.

    Accepts `{"name", "description", "parameters"}`, the same with `"type": "function"`, and the
    Chat Completions form `{"type": "function", "function": {...}}`. Parameters become Gemini's
    ``Schema`` (`json_schema_to_gemini`); a function without properties gets none. Raises
    `ValueError` without a name.
    """
    spec = tool.get("function")
    source: Mapping[str, Any] = spec if isinstance(spec, Mapping) else tool
    name = source.get("name")
    if tool.get("type", "function") != "function" or not isinstance(name, str) or not name:
        raise ValueError("a tool must be a function with a non-empty name")
    out: dict[str, Any] = {"name": name}
    description = source.get("description")
    if isinstance(description, str):
        out["description"] = description
    parameters = source.get("parameters")
    if isinstance(parameters, Mapping) and parameters.get("properties"):
        out["parameters"] = json_schema_to_gemini(parameters)
    return out


def build_setup(
    config: SessionConfig,
    *,
    handle: str | None = None,
    context_window_compression: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The first client message (§2.3), canonical camelCase. ``handle`` resumes a session."""
    audio_out = "audio" in config.modalities
    generation: dict[str, Any] = {"responseModalities": ["AUDIO" if audio_out else "TEXT"]}
    if config.voice and audio_out:
        generation["speechConfig"] = {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": config.voice}}}
    setup: dict[str, Any] = {"model": model_resource(config.model), "generationConfig": generation}
    if config.instructions:
        setup["systemInstruction"] = {"role": "user", "parts": [{"text": config.instructions}]}
    if config.tools:
        setup["tools"] = [{"functionDeclarations": [normalize_tool(t) for t in config.tools]}]
    if config.turn_detection is TurnDetection.MANUAL:
        setup["realtimeInputConfig"] = {"automaticActivityDetection": {"disabled": True}}
    setup["inputAudioTranscription"] = {}
    if audio_out:
        setup["outputAudioTranscription"] = {}
    setup["sessionResumption"] = {"handle": handle} if handle else {}
    if context_window_compression is not None:
        setup["contextWindowCompression"] = dict(context_window_compression)
    return {"setup": setup}


def tool_response_payload(output: str) -> dict[str, Any]:
    """A tool's output as a ``FunctionResponse.response`` (a JSON object): ``{"output": value}`` with
    the output parsed when it is JSON, as the API documents the ``output``/``error`` keys."""
    try:
        value: Any = orjson.loads(output)
    except orjson.JSONDecodeError:
        value = output
    return {"output": value}


# ---------------------------------------------------------------------------------------------
# usage


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _split(details: object, total: int) -> tuple[int, int]:
    """(text, audio) tokens of a ``…TokensDetails`` list; modalities other than AUDIO (TEXT, IMAGE,
    VIDEO, DOCUMENT) count as text, and whatever the details leave of ``total`` counts as text too."""
    text = audio = 0
    if isinstance(details, list):
        for entry in details:
            if isinstance(entry, Mapping):
                n = _count(entry.get("tokenCount"))
                if entry.get("modality") == "AUDIO":
                    audio += n
                else:
                    text += n
    return text + max(0, total - text - audio), audio


def normalize_usage(meta: object, *, audio_out: bool) -> Usage:
    """One ``usageMetadata`` (§2.6) as normalized counts; anything missing or malformed counts 0.

    * input: ``promptTokenCount`` split by ``promptTokensDetails`` (AUDIO → audio, any other
      modality → text), plus ``toolUsePromptTokenCount`` split the same way;
    * cached: ``cachedContentTokenCount`` (a part of the prompt, as OpenAI's cached tokens are);
    * output: ``responseTokenCount`` (Vertex: ``candidatesTokenCount``) split by its details; a part
      the details do not cover counts as the session's output modality; ``thoughtsTokenCount``
      (billed as output) counts as text.
    """
    if not isinstance(meta, Mapping):
        return Usage()
    in_text, in_audio = _split(meta.get("promptTokensDetails"), _count(meta.get("promptTokenCount")))
    tool_text, tool_audio = _split(meta.get("toolUsePromptTokensDetails"), _count(meta.get("toolUsePromptTokenCount")))
    response_total = _count(meta.get("responseTokenCount")) or _count(meta.get("candidatesTokenCount"))
    details = meta.get("responseTokensDetails") or meta.get("candidatesTokensDetails")
    out_text, out_audio = _split(details, 0)
    rest = max(0, response_total - out_text - out_audio)
    if audio_out:
        out_audio += rest
    else:
        out_text += rest
    return Usage(
        input_text_tokens=in_text + tool_text,
        input_audio_tokens=in_audio + tool_audio,
        cached_input_tokens=_count(meta.get("cachedContentTokenCount")),
        output_text_tokens=out_text + _count(meta.get("thoughtsTokenCount")),
        output_audio_tokens=out_audio,
    )


def usage_minus(a: Usage, b: Usage) -> Usage:
    """``a - b`` per count, never below zero (snapshots only grow within a turn)."""
    return Usage(**{k: max(0, v - getattr(b, k)) for k, v in a.to_dict().items()})


# ---------------------------------------------------------------------------------------------
# durations and secrets


_DURATION: Final = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)s\s*")


def parse_duration_s(value: object) -> float | None:
    """A proto ``Duration`` in JSON (``"50s"``, ``"0.250s"``) in seconds; ``None`` when it is not one."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match:
            return float(match.group(1))
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


class Scrubber(secrets.Scrubber):
    """Scrubs the given keys, Google API keys (``AIza`` + 35 characters) and ephemeral tokens (``auth_tokens/…``)."""

    __slots__ = ()
    pattern = re.compile(r"AIza[0-9A-Za-z_\-]{10,}|auth_tokens/[0-9A-Za-z_\-.]+")


#: `text` without the given secrets or anything shaped like a Google key, cut to `MAX_ERROR_MESSAGE_CHARS`
scrub_secrets: Final = Scrubber.scrub
