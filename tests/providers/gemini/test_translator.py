"""The Gemini translator, replayed against recorded transcripts (tests/transcripts/gemini/*.jsonl).

Transcript format — one JSON object per line, replayed top to bottom against one `GeminiTranslator`:

    {"config": {...SessionConfig...}, "formats": {"input": <fmt>, "output": <fmt>}, "api_key": "...",
     "id_prefix": "resp_", "compression": {...}}
        the first line after any comments. `config` has `model`, `client_input`, `client_output`
        (contract audio format dicts) and optionally `voice`, `instructions`, `modalities`,
        `turn_detection`, `tools`. `formats` is what the translator must report. `api_key` (optional)
        is the secret its scrubber knows; `id_prefix` (default "resp_") makes response ids
        predictable; `compression` is the provider's `context_window_compression`.
    {"comment": "..."}
        ignored; says what the next lines show.
    {"intent": {"op": <name>, ...arguments}, "send": [<Gemini client message>, ...]}
        a client intent and exactly the messages it produces. ops: setup, send_audio {audio: base64},
        commit {respond}, send_text {text, final, respond}, create_response {instructions},
        interrupt {response_id, played_ms} (also "events": the events it delivers at once),
        send_tool_result {call_id, output}, update {instructions, voice, tools} (instead of "send":
        "reconnect": whether a new connection is needed).
    {"server": <Gemini server message>, "events": [<provider event>, ...]}
        a server message (fed as a JSON frame) and exactly the provider events it produces.
    {"raw": "<frame text>", "events": [...]}
        a frame as received, for malformed input.
    {"lost": true, "events": [...]}
        the connection is gone (`connection_lost()`), dropped or left behind by a rollover.

Any line may add "state": {key: value} for keys of `state_of` — the translator's state after the line.

A provider event is written as {"type": <class name>, <field>: <value>, ...} with every field of the
dataclass; bytes are base64, `status` is its value, and `usage` lists only its non-zero counts.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest

from audiocodecs.format import PCM16_16K, PCM16_24K, AudioFormat
from providers.base import SessionConfig, TurnDetection
from providers.events import ResponseDone, ResponseStatus, Usage
from providers.gemini.provider import DEFAULT_MODEL, GeminiProvider
from providers.gemini.translator import GeminiTranslator, Phase
from providers.gemini.wire import (
    Scrubber,
    auth_headers,
    json_schema_to_gemini,
    live_url,
    normalize_tool,
    normalize_usage,
    parse_duration_s,
    scrub_secrets,
    tool_response_payload,
)
from tests.transcripts.format import load, render

TRANSCRIPTS = sorted((Path(__file__).resolve().parents[2] / "transcripts" / "gemini").glob("*.jsonl"))
INTENT_OPS = {
    "setup",
    "send_audio",
    "commit",
    "send_text",
    "create_response",
    "interrupt",
    "send_tool_result",
    "update",
}
LINE_KINDS = {"config", "comment", "intent", "server", "raw", "lost"}
#: the top-level server message keys the transcripts must exercise between them
SERVER_KEYS = {
    "setupComplete",
    "serverContent",
    "toolCall",
    "toolCallCancellation",
    "usageMetadata",
    "goAway",
    "sessionResumptionUpdate",
    "voiceActivity",
}


def build_config(d: dict[str, Any]) -> SessionConfig:
    return SessionConfig(
        model=d["model"],
        client_input=AudioFormat.from_dict(d["client_input"], PCM16_16K),
        client_output=AudioFormat.from_dict(d["client_output"], PCM16_24K),
        voice=d.get("voice"),
        instructions=d.get("instructions"),
        modalities=tuple(d.get("modalities", ["audio"])),
        turn_detection=TurnDetection(d.get("turn_detection", "server_vad")),
        tools=tuple(d.get("tools", ())),
    )


def build_translator(header: dict[str, Any]) -> GeminiTranslator:
    secrets = [header["api_key"]] if "api_key" in header else []
    return GeminiTranslator(
        build_config(header["config"]),
        Scrubber(*secrets),
        id_prefix=header.get("id_prefix", "resp_"),
        context_window_compression=header.get("compression"),
    )


def state_of(tr: GeminiTranslator) -> dict[str, Any]:
    return {
        "phase": tr.phase.value,
        "active_response": tr.active_response,
        "turn_open": tr.turn_open,
        "activity_open": tr.activity_open,
        "resume_handle": tr.resume_handle,
        "handle_fresh": tr.handle_fresh,
        "at_boundary": tr.at_boundary,
        "go_away_s": tr.go_away_s,
        "carried": {k: n for k, n in tr.carried_usage.to_dict().items() if n},
    }


def apply_intent(tr: GeminiTranslator, intent: dict[str, Any]) -> dict[str, Any]:
    """What an intent line records: the messages sent (and events, or the reconnect flag)."""
    op = intent["op"]
    if op == "setup":
        return {"send": [tr.setup()]}
    if op == "send_audio":
        frames = [tr.start_activity()] if tr.activity_start_due else []
        frames.append(tr.append_audio(base64.b64decode(intent["audio"])))
        return {"send": [orjson.loads(frame) for frame in frames]}
    if op == "commit":
        return {"send": tr.commit(intent["respond"])}
    if op == "send_text":
        return {"send": tr.send_text(intent["text"], final=intent["final"], respond=intent["respond"])}
    if op == "create_response":
        return {"send": tr.create_response(intent.get("instructions"))}
    if op == "interrupt":
        messages, events = tr.interrupt(intent["response_id"], intent["played_ms"])
        return {"send": messages, "events": [render(e) for e in events]}
    if op == "send_tool_result":
        return {"send": tr.tool_result(intent["call_id"], intent["output"])}
    if op == "update":
        fields = {k: intent.get(k) for k in ("instructions", "voice", "tools")}
        return {"reconnect": tr.update(**fields)}
    raise AssertionError(f"unknown intent op {op!r}")


def replay(path: Path) -> None:
    lines = load(path)
    first = next(n for n, line in enumerate(lines) if "comment" not in line)
    header = lines[first]
    assert "config" in header, f"{path.name}: the first line (after comments) must be the config"
    tr = build_translator(header)
    assert tr.input_format.to_dict() == header["formats"]["input"]
    assert tr.output_format.to_dict() == header["formats"]["output"]
    for number, line in enumerate(lines[first + 1 :], start=first + 2):
        where = f"{path.name}:{number}"
        kinds = LINE_KINDS & line.keys()
        assert len(kinds) == 1, f"{where}: a line has exactly one of {sorted(LINE_KINDS)}"
        if "comment" in line:
            continue
        if "intent" in line:
            expected = {k: v for k, v in line.items() if k in ("send", "events", "reconnect")}
            assert apply_intent(tr, line["intent"]) == expected, where
        else:
            if "server" in line:
                got = tr.feed(orjson.dumps(line["server"]))
            elif "raw" in line:
                got = tr.feed(line["raw"])
            else:
                got = tr.connection_lost()
            assert [render(e) for e in got] == line["events"], where
        state = state_of(tr)
        for key, value in line.get("state", {}).items():
            assert state[key] == value, f"{where}: state {key}"


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_transcript(path: Path) -> None:
    replay(path)


def test_transcripts_cover_every_intent_and_server_message() -> None:
    assert len(TRANSCRIPTS) >= 8
    lines = [line for path in TRANSCRIPTS for line in load(path)]
    assert {line["intent"]["op"] for line in lines if "intent" in line} == INTENT_OPS
    assert {key for line in lines if "server" in line for key in line["server"]} >= SERVER_KEYS


def test_every_response_ends_exactly_once_in_the_transcripts() -> None:
    for path in TRANSCRIPTS:
        started: list[str] = []
        done: list[str] = []
        for line in load(path):
            for event in line.get("events", ()):
                if event["type"] == "ResponseStarted":
                    started.append(event["response_id"])
                elif event["type"] == "ResponseDone":
                    done.append(event["response_id"])
        assert sorted(started) == sorted(done), path.name
        assert len(done) == len(set(done)), path.name


# -- pieces the transcripts do not show -----------------------------------------------------------


def make_translator(**overrides: Any) -> GeminiTranslator:
    config = SessionConfig(model=DEFAULT_MODEL, client_input=PCM16_16K, client_output=PCM16_24K, **overrides)
    tr = GeminiTranslator(config, id_prefix="r")
    tr.setup()
    tr.feed(b'{"setupComplete":{}}')
    assert tr.phase is Phase.READY
    return tr


def test_audio_message_is_the_json_of_the_realtime_input() -> None:
    tr = make_translator()
    audio = bytes(range(256)) * 5
    assert orjson.loads(tr.append_audio(audio)) == {
        "realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": base64.b64encode(audio).decode()}}
    }


def test_live_url_and_headers() -> None:
    path = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    assert live_url("https://generativelanguage.googleapis.com/", "v1beta") == (
        f"wss://generativelanguage.googleapis.com{path}"
    )
    assert live_url("http://127.0.0.1:9/prefix?x=1", "v1beta") == f"ws://127.0.0.1:9/prefix{path}?x=1"
    assert live_url("https://h", "v1alpha", ephemeral=True).endswith(
        "v1alpha.GenerativeService.BidiGenerateContentConstrained"
    )
    with pytest.raises(ValueError, match="base_url"):
        live_url("ftp://h", "v1beta")
    with pytest.raises(ValueError, match="api_version"):
        live_url("https://h", "beta")
    assert auth_headers("AIzaKey") == {"x-goog-api-key": "AIzaKey"}
    assert auth_headers("auth_tokens/t") == {"x-goog-api-key": "auth_tokens/t", "Authorization": "Token auth_tokens/t"}


def test_json_schema_becomes_gemini_schema() -> None:
    schema = {
        "type": "object",
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "additionalProperties": False,
        "properties": {
            "city": {"type": "string", "description": "City"},
            "days": {"type": ["integer", "null"], "minimum": 1},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
            "where": {"anyOf": [{"type": "string"}, {"type": "object", "properties": {"lat": {"type": "number"}}}]},
        },
        "required": ["city"],
    }
    assert json_schema_to_gemini(schema) == {
        "type": "OBJECT",
        "properties": {
            "city": {"type": "STRING", "description": "City"},
            "days": {"type": "INTEGER", "nullable": True, "minimum": 1},
            "tags": {"type": "ARRAY", "items": {"type": "STRING", "enum": ["a", "b"]}},
            "where": {"anyOf": [{"type": "STRING"}, {"type": "OBJECT", "properties": {"lat": {"type": "NUMBER"}}}]},
        },
        "required": ["city"],
    }
    assert normalize_tool({"type": "function", "function": {"name": "ping", "parameters": {"type": "object"}}}) == {
        "name": "ping"
    }
    with pytest.raises(ValueError, match="non-empty name"):
        normalize_tool({"type": "code_interpreter"})


def test_usage_normalization() -> None:
    meta = {
        "promptTokenCount": 130,
        "cachedContentTokenCount": 40,
        "responseTokenCount": 50,
        "toolUsePromptTokenCount": 7,
        "thoughtsTokenCount": 3,
        "promptTokensDetails": [
            {"modality": "TEXT", "tokenCount": 20},
            {"modality": "AUDIO", "tokenCount": 100},
            {"modality": "IMAGE", "tokenCount": 5},
        ],
        "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 45}],
    }
    assert normalize_usage(meta, audio_out=True) == Usage(
        input_text_tokens=20 + 5 + 5 + 7,  # TEXT, IMAGE, what the details leave of the prompt, tool use
        input_audio_tokens=100,
        cached_input_tokens=40,
        output_text_tokens=3,  # thoughts
        output_audio_tokens=45 + 5,  # what the details leave counts as the session's output modality
    )
    vertex = {
        "promptTokenCount": 10,
        "candidatesTokenCount": 4,
        "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 4}],
    }
    assert normalize_usage(vertex, audio_out=True) == Usage(input_text_tokens=10, output_text_tokens=4)
    assert normalize_usage({"promptTokenCount": -3, "responseTokenCount": True}, audio_out=False) == Usage()
    assert normalize_usage("nonsense", audio_out=False) == Usage()


def test_durations_and_tool_payloads() -> None:
    assert parse_duration_s("50s") == 50.0
    assert parse_duration_s("0.250s") == 0.25
    assert parse_duration_s(3) == 3.0
    assert parse_duration_s("soon") is None and parse_duration_s(None) is None and parse_duration_s(-1) is None
    assert tool_response_payload('{"temp_c": 21}') == {"output": {"temp_c": 21}}
    assert tool_response_payload("sunny") == {"output": "sunny"}


def test_secrets_are_scrubbed() -> None:
    key = "AIzaSyD-0123456789abcdefghijklmnopqrstu"
    assert key not in scrub_secrets(f"API key {key} not valid")
    assert "AIzaSyOther0123456789" not in scrub_secrets("key AIzaSyOther0123456789 expired")
    assert "auth_tokens/abc" not in scrub_secrets("token auth_tokens/abc.def expired")
    assert "my-custom-secret" not in Scrubber("my-custom-secret")("echo my-custom-secret")
    assert "my-custom-secret" not in repr(Scrubber("my-custom-secret"))
    assert len(scrub_secrets("x" * 2000)) == 500


def test_provider_shape() -> None:
    provider = GeminiProvider("AIzaSy-secret-0123456789abcdef")
    assert (provider.name, provider.kind.value, provider.default_model) == ("gemini", "realtime", DEFAULT_MODEL)
    assert provider.modalities == frozenset({"audio", "text"})
    assert "secret" not in repr(provider)
    assert provider.supports_model(DEFAULT_MODEL)
    assert provider.supports_model("gemini-live-2.5-flash-preview")
    assert provider.supports_model("gemini-3.1-flash-live-preview")
    assert not provider.supports_model("gemini-2.5-pro") and not provider.supports_model("gpt-realtime")
    with pytest.raises(ValueError):
        GeminiProvider("k", base_url="not a url")
    with pytest.raises(ValueError):
        GeminiProvider("k", max_connection_s=0)


def test_interrupt_of_another_response_is_ignored() -> None:
    tr = make_translator()
    tr.feed(b'{"serverContent":{"outputTranscription":{"text":"Hi"}}}')
    assert tr.active_response == "r1"
    assert tr.interrupt("r0", 10) == ([], [])
    messages, events = tr.interrupt(None, None)
    assert messages == [] and events[-1] == ResponseDone("r1", ResponseStatus.CANCELLED)
    assert tr.interrupt(None, None) == ([], [])
