"""The OpenAI translator, replayed against recorded transcripts (tests/transcripts/openai/*.jsonl).

Transcript format — one JSON object per line, replayed top to bottom against one `OpenAITranslator`:

    {"config": {...SessionConfig...}, "formats": {"input": <fmt>, "output": <fmt>}, "api_key": "..."}
        the first line after any comments. `config` has `model`, `client_input`, `client_output`
        (contract audio format dicts), and optionally `voice`, `instructions`, `modalities`,
        `turn_detection` ("server_vad" | "manual"), `tools`. `formats` is the negotiated
        `input_format`/`output_format` the translator must report. `api_key` (optional) is the
        secret the translator's scrubber knows about.
    {"comment": "..."}
        ignored; says what the next lines show.
    {"intent": {"op": <name>, ...arguments}, "send": [<OpenAI client event>, ...]}
        a client intent and exactly the events it must produce (`event_id`s, if any, are ignored).
        ops: configure, send_audio {audio: base64}, commit {respond}, send_text {text, final, respond},
        create_response {instructions}, interrupt {response_id, played_ms}, send_tool_result {call_id, output},
        update {instructions, voice, tools}.
    {"server": <OpenAI server event>, "events": [<provider event>, ...]}
        a server event (fed as a JSON frame) and exactly the provider events it must produce.
    {"raw": "<frame text>", "events": [...]}
        a frame as received, for malformed input.
    {"lost": true, "events": [...]}
        the connection died (`connection_lost()`).

Any line may add "state": {"phase": ..., "active_response": ...} — the translator's state after the line.

A provider event is written as {"type": <class name>, <field>: <value>, ...} with every field of the
dataclass; bytes are base64, `status` is its value, and `usage` lists only its non-zero counts.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from audiocodecs.format import PCM16_16K, PCM16_24K, AudioFormat
from providers.base import SessionConfig, TurnDetection
from providers.events import ResponseDone
from providers.openai.provider import OpenAIProvider, realtime_url
from providers.openai.translator import (
    MAX_TRACKED_RESPONSES,
    OpenAITranslator,
    Phase,
    Scrubber,
    normalize_tool,
    scrub_secrets,
)
from tests.transcripts.format import load, render

TRANSCRIPTS = sorted((Path(__file__).resolve().parents[2] / "transcripts" / "openai").glob("*.jsonl"))
INTENT_OPS = {
    "configure",
    "send_audio",
    "commit",
    "send_text",
    "create_response",
    "interrupt",
    "send_tool_result",
    "update",
}
LINE_KINDS = {"config", "comment", "intent", "server", "raw", "lost"}


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


def without_event_ids(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "event_id"} for e in events]


def apply_intent(tr: OpenAITranslator, intent: dict[str, Any]) -> list[dict[str, Any]]:
    op = intent["op"]
    if op == "configure":
        return tr.configure()
    if op == "send_audio":
        return [orjson.loads(tr.append_audio(base64.b64decode(intent["audio"])))]
    if op == "commit":
        return tr.commit(intent["respond"])
    if op == "send_text":
        return tr.send_text(intent["text"], final=intent["final"], respond=intent["respond"])
    if op == "create_response":
        return tr.create_response(intent.get("instructions"))
    if op == "interrupt":
        return tr.interrupt(intent["response_id"], intent["played_ms"])
    if op == "send_tool_result":
        return tr.tool_result(intent["call_id"], intent["output"])
    if op == "update":
        tools = intent.get("tools")
        return tr.update(instructions=intent.get("instructions"), voice=intent.get("voice"), tools=tools)
    raise AssertionError(f"unknown intent op {op!r}")


def replay(path: Path) -> None:
    lines = load(path)
    first = next(n for n, line in enumerate(lines) if "comment" not in line)
    header = lines[first]
    assert "config" in header, f"{path.name}: the first line (after comments) must be the config"
    secrets = [header["api_key"]] if "api_key" in header else []
    tr = OpenAITranslator(build_config(header["config"]), Scrubber(*secrets))
    assert tr.input_format.to_dict() == header["formats"]["input"]
    assert tr.output_format.to_dict() == header["formats"]["output"]
    for number, line in enumerate(lines[first + 1 :], start=first + 2):
        where = f"{path.name}:{number}"
        kinds = LINE_KINDS & line.keys()
        assert len(kinds) == 1, f"{where}: a line has exactly one of {sorted(LINE_KINDS)}"
        if "comment" in line:
            continue
        if "intent" in line:
            assert without_event_ids(apply_intent(tr, line["intent"])) == line["send"], where
        else:
            if "server" in line:
                got = tr.feed(orjson.dumps(line["server"]))
            elif "raw" in line:
                got = tr.feed(line["raw"])
            else:
                got = tr.connection_lost()
            assert [render(e) for e in got] == line["events"], where
        state = line.get("state", {})
        if "phase" in state:
            assert tr.phase == state["phase"], where
        if "active_response" in state:
            assert tr.active_response == state["active_response"], where


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_transcript(path: Path) -> None:
    replay(path)


def test_transcripts_cover_every_intent() -> None:
    assert len(TRANSCRIPTS) >= 10
    used = {line["intent"]["op"] for path in TRANSCRIPTS for line in load(path) if "intent" in line}
    assert used == INTENT_OPS


# -- pieces the transcripts do not show -----------------------------------------------------------


def make_translator(**overrides: Any) -> OpenAITranslator:
    config = SessionConfig(model="gpt-realtime", client_input=PCM16_24K, client_output=PCM16_24K, **overrides)
    tr = OpenAITranslator(config)
    tr.feed(b'{"type":"session.created","session":{}}')
    tr.configure()
    tr.feed(b'{"type":"session.updated","session":{}}')
    assert tr.phase is Phase.READY
    return tr


def test_append_audio_frame_is_the_json_of_the_event() -> None:
    tr = make_translator()
    audio = bytes(range(256)) * 4
    frame = tr.append_audio(audio)
    assert orjson.loads(frame) == {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode()}
    assert frame == orjson.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode()})


def test_configure_is_legal_only_right_after_session_created() -> None:
    config = SessionConfig(model="m", client_input=PCM16_24K, client_output=PCM16_24K)
    tr = OpenAITranslator(config)
    with pytest.raises(RuntimeError):
        tr.configure()
    tr.feed(b'{"type":"session.created"}')
    tr.configure()
    with pytest.raises(RuntimeError):
        tr.configure()


def test_truncation_memory_is_bounded() -> None:
    tr = make_translator(turn_detection=TurnDetection.MANUAL)
    audio = base64.b64encode(bytes(4800)).decode()  # 100 ms
    for n in range(MAX_TRACKED_RESPONSES + 1):
        rid = f"resp_{n}"
        tr.receive({"type": "response.created", "response": {"id": rid}})
        tr.receive({"type": "response.output_audio.delta", "response_id": rid, "item_id": f"item_{n}", "delta": audio})
        done = tr.receive({"type": "response.done", "response": {"id": rid, "status": "completed"}})
        assert done == [ResponseDone(rid, done[0].status)]  # type: ignore[union-attr]
    assert tr.interrupt("resp_0", 50) == []  # forgotten
    assert tr.interrupt("resp_1", 50) == [
        {"type": "conversation.item.truncate", "item_id": "item_1", "content_index": 0, "audio_end_ms": 50}
    ]


def test_a_new_audio_item_in_the_same_response_restarts_the_count() -> None:
    tr = make_translator(turn_detection=TurnDetection.MANUAL)
    tr.receive({"type": "response.created", "response": {"id": "r"}})
    for item, ms in (("first", 100), ("second", 20)):
        delta = base64.b64encode(bytes(48 * ms)).decode()
        tr.receive({"type": "response.output_audio.delta", "response_id": "r", "item_id": item, "delta": delta})
    assert tr.interrupt("r", 70) == [
        {"type": "response.cancel", "response_id": "r"},
        {"type": "conversation.item.truncate", "item_id": "second", "content_index": 0, "audio_end_ms": 20},
    ]


def test_unknown_types_are_logged_once_and_malformed_frames_without_payload(caplog: pytest.LogCaptureFixture) -> None:
    tr = make_translator()
    with caplog.at_level(logging.DEBUG, logger="providers.openai.translator"):
        for _ in range(3):
            assert tr.feed(b'{"type":"brand.new.event","secret":"PAYLOAD-123"}') == []
        assert tr.feed(b"PAYLOAD-456 is not json") == []
        assert tr.feed(b'{"type":"response.created","response":"PAYLOAD-789"}') == []
    unknown = [r for r in caplog.records if "brand.new.event" in r.getMessage()]
    assert len(unknown) == 1 and unknown[0].levelno == logging.DEBUG
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 2
    assert "PAYLOAD" not in caplog.text


def test_scrub_secrets() -> None:
    text = "key sk-proj-AbC_12-xyz, masked sk-abc***xyz, eph ek_68af296e8e408191, mine my-own-key; "
    text += "fine: task-sk, risk-free"
    clean = scrub_secrets(text, ["my-own-key"])
    assert clean == "key [redacted], masked [redacted], eph [redacted], mine [redacted]; fine: task-sk, risk-free"
    assert len(scrub_secrets("x" * 5000)) == 500


def test_secrets_stay_out_of_reprs() -> None:
    assert "s3cr3t" not in repr(Scrubber("sk-s3cr3t"))
    assert Scrubber("sk-s3cr3t")("bad key sk-s3cr3t") == "bad key [redacted]"
    provider = OpenAIProvider("sk-s3cr3t-key", base_url="http://127.0.0.1:9/v1")
    assert "s3cr3t" not in repr(provider) and "s3cr3t" not in str(vars(provider).get("base_url"))


def test_provider_surface() -> None:
    provider = OpenAIProvider("sk-x")
    assert provider.name == "openai"
    assert provider.kind == "realtime"
    assert provider.modalities == frozenset({"audio", "text"})
    assert provider.default_model == "gpt-realtime"
    assert provider.supports_model("gpt-realtime-mini") and not provider.supports_model("")
    with pytest.raises(ValueError):
        OpenAIProvider("sk-x", base_url="ftp://example.com")


@pytest.mark.parametrize(
    ("base_url", "url"),
    [
        ("https://api.openai.com/v1", "wss://api.openai.com/v1/realtime?model=gpt-realtime"),
        ("http://127.0.0.1:8766/v1/", "ws://127.0.0.1:8766/v1/realtime?model=gpt-realtime"),
        (
            "https://gw.example/openai?api-version=2",
            "wss://gw.example/openai/realtime?api-version=2&model=gpt-realtime",
        ),
        ("wss://relay.example/custom/v1", "wss://relay.example/custom/v1/realtime?model=gpt-realtime"),
    ],
)
def test_realtime_url_follows_the_sdk(base_url: str, url: str) -> None:
    assert realtime_url(base_url, "gpt-realtime") == url


def test_tools_need_a_name() -> None:
    with pytest.raises(ValueError):
        normalize_tool({"description": "nameless"})
    with pytest.raises(ValueError):
        normalize_tool({"type": "mcp", "name": "x"})
