"""The ElevenLabs translator, replayed against transcripts (tests/transcripts/elevenlabs/*.jsonl).

Transcript format — one JSON object per line, replayed top to bottom against one `ElevenLabsTranslator`
whose context ids are ``utt_1``, ``utt_2``, … in order:

    {"config": {...SessionConfig...}, "options": {...}, "formats": {"wire": ..., "output": <fmt>}, "api_key": "..."}
        the first line after any comments. `config` has `model`, `client_input`, `client_output` (contract
        audio format dicts) and optionally `voice`. `options` are the translator's keyword arguments
        (`voice`, `voice_settings`, `chunk_length_schedule`). `formats` is the negotiated ``output_format``
        query value and the `AudioFormat` it means. `api_key` (optional) is the secret the scrubber knows.
    {"comment": "..."}
        ignored; says what the next lines show.
    {"intent": {"op": <name>, ...arguments}, "send": [<client message>, ...], "events": [<provider event>, ...]}
        a client intent, and exactly the messages and events it must produce. ops: send_text {text, final},
        interrupt {response_id}, keepalive, update {voice}.
    {"server": <ElevenLabs server message>, "events": [...], "send": [...]}
        a server message (fed as a JSON frame) and exactly the events — and, if given, the client messages
        (held-back utterances let go) — it must produce.
    {"raw": "<frame text>", "events": [...]}
        a frame as received, for malformed input.
    {"lost": true, "events": [...]}
        the connection died (`connection_lost()`).

Any line may add "state": {"current_response": ..., "live_contexts": n, "pending_error": ..., "states": {id: state
or null}} — the translator's state after the line.

A provider event is written as {"type": <class name>, <field>: <value>, ...} with every field of the
dataclass; bytes are base64, `status` is its value, and `usage` lists only its non-zero counts.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from audiocodecs.format import PCM16_16K, PCM16_24K, ULAW_8K, AudioFormat, Encoding
from providers.base import SessionConfig
from providers.elevenlabs.formats import negotiate_output_format
from providers.elevenlabs.provider import ElevenLabsProvider, stream_url
from providers.elevenlabs.translator import (
    ElevenLabsTranslator,
    Scrubber,
    UtteranceState,
    _Utterance,
    is_permanent_failure,
    scrub_secrets,
)
from tests.transcripts.format import load, render

TRANSCRIPTS = sorted((Path(__file__).resolve().parents[2] / "transcripts" / "elevenlabs").glob("*.jsonl"))
INTENT_OPS = {"send_text", "interrupt", "keepalive", "update"}
LINE_KINDS = {"config", "comment", "intent", "server", "raw", "lost"}


def build_config(d: dict[str, Any]) -> SessionConfig:
    return SessionConfig(
        model=d["model"],
        client_input=AudioFormat.from_dict(d["client_input"], PCM16_16K),
        client_output=AudioFormat.from_dict(d["client_output"], PCM16_24K),
        voice=d.get("voice"),
    )


def apply_intent(tr: ElevenLabsTranslator, intent: dict[str, Any]) -> Any:
    op = intent["op"]
    if op == "send_text":
        return tr.send_text(intent["text"], final=intent["final"])
    if op == "interrupt":
        return tr.interrupt(intent["response_id"])
    if op == "keepalive":
        return tr.keepalive()
    if op == "update":
        return tr.update(voice=intent["voice"])
    raise AssertionError(f"unknown intent op {op!r}")


def check_state(tr: ElevenLabsTranslator, state: dict[str, Any], where: str) -> None:
    if "current_response" in state:
        assert tr.current_response == state["current_response"], where
    if "live_contexts" in state:
        assert tr.live_contexts == state["live_contexts"], where
    if "pending_error" in state:
        assert tr.pending_error == state["pending_error"], where
    for response_id, expected in state.get("states", {}).items():
        assert tr.state_of(response_id) == expected, f"{where}: {response_id}"


def replay(path: Path) -> None:
    lines = load(path)
    first = next(n for n, line in enumerate(lines) if "comment" not in line)
    header = lines[first]
    assert "config" in header, f"{path.name}: the first line (after comments) must be the config"
    secrets = [header["api_key"]] if "api_key" in header else []
    counter = itertools.count(1)
    tr = ElevenLabsTranslator(
        build_config(header["config"]),
        **header["options"],
        scrub=Scrubber(*secrets),
        new_id=lambda: f"utt_{next(counter)}",
    )
    assert tr.wire_output_format == header["formats"]["wire"]
    assert tr.output_format.to_dict() == header["formats"]["output"]
    for number, line in enumerate(lines[first + 1 :], start=first + 2):
        where = f"{path.name}:{number}"
        kinds = LINE_KINDS & line.keys()
        assert len(kinds) == 1, f"{where}: a line has exactly one of {sorted(LINE_KINDS)}"
        if "comment" in line:
            continue
        if "lost" in line:
            sent: list[dict[str, Any]] = []
            events = tr.connection_lost()
        else:
            if "intent" in line:
                step = apply_intent(tr, line["intent"])
            elif "server" in line:
                step = tr.feed(orjson.dumps(line["server"]))
            else:
                step = tr.feed(line["raw"])
            sent, events = step.send, step.events
        assert [render(e) for e in events] == line["events"], where
        assert sent == line.get("send", []), where
        check_state(tr, line.get("state", {}), where)


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_transcript(path: Path) -> None:
    replay(path)


def test_transcripts_cover_every_intent() -> None:
    assert len(TRANSCRIPTS) >= 9
    used = {line["intent"]["op"] for path in TRANSCRIPTS for line in load(path) if "intent" in line}
    assert used == INTENT_OPS


# -- pieces the transcripts do not show -----------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "wire"),
    [
        (PCM16_16K, "pcm_16000"),
        (PCM16_24K, "pcm_24000"),
        (AudioFormat(Encoding.PCM16, 8000), "pcm_8000"),
        (AudioFormat(Encoding.PCM16, 12000), "pcm_16000"),
        (AudioFormat(Encoding.PCM16, 32000), "pcm_32000"),
        (AudioFormat(Encoding.F32, 48000), "pcm_48000"),
        (ULAW_8K, "ulaw_8000"),
        (AudioFormat(Encoding.ALAW, 8000), "alaw_8000"),
        (AudioFormat(Encoding.ULAW, 16000), "pcm_16000"),
        (AudioFormat(Encoding.OPUS, 48000), "pcm_48000"),
    ],
)
def test_output_format_negotiation(client: AudioFormat, wire: str) -> None:
    assert negotiate_output_format(client) == wire


def test_illegal_transitions_raise() -> None:
    utterance = _Utterance("u", UtteranceState.CLOSING)
    with pytest.raises(RuntimeError, match="closing -> open"):
        utterance.to(UtteranceState.OPEN)
    utterance.to(UtteranceState.CANCELLED)
    with pytest.raises(RuntimeError):
        utterance.to(UtteranceState.CLOSING)


def test_malformed_and_unknown_messages_are_logged_without_payload(caplog: pytest.LogCaptureFixture) -> None:
    config = SessionConfig(model="eleven_flash_v2_5", client_input=PCM16_16K, client_output=PCM16_16K)
    tr = ElevenLabsTranslator(config, voice="v")
    with caplog.at_level(logging.DEBUG, logger="providers.elevenlabs.translator"):
        for _ in range(3):
            assert tr.feed(b'{"brand_new":"PAYLOAD-123"}').events == []
        assert tr.feed(b"PAYLOAD-456 is not json").events == []
        assert tr.feed(b'{"audio":"AAAA","alignment":{"chars":["PAYLOAD-789"],"charStartTimesMs":[]}}').events == []
    assert len([r for r in caplog.records if "brand_new" in r.getMessage()]) == 1
    assert "PAYLOAD" not in caplog.text


def test_scrub_secrets() -> None:
    text = "bad key sk_0123456789abcdef0123, masked sk_abc***xyz, mine my-own-key; fine: desk_top, sk_1"
    assert scrub_secrets(text, ["my-own-key"]) == (
        "bad key [redacted], masked [redacted], mine [redacted]; fine: desk_top, sk_1"
    )
    assert len(scrub_secrets("x" * 5000)) == 500
    assert "s3cr3t" not in repr(Scrubber("sk_s3cr3t"))


def test_permanent_failures() -> None:
    assert is_permanent_failure("code 1008: Invalid API key")
    assert is_permanent_failure("quota_exceeded: This request exceeds your quota")
    assert not is_permanent_failure("code 1008: We are sorry, something went wrong.")
    assert not is_permanent_failure("code 1008: Have not received a new text input within the timeout of 20 seconds.")


def test_provider_surface() -> None:
    provider = ElevenLabsProvider("sk_s3cr3t_key_0123456789", base_url="http://127.0.0.1:9")
    assert "s3cr3t" not in repr(provider) and "s3cr3t" not in str(vars(provider).get("base_url"))
    assert (provider.name, provider.kind, provider.modalities) == ("elevenlabs", "tts", frozenset({"audio"}))
    assert provider.default_model == "eleven_flash_v2_5"
    for model in ("eleven_flash_v2_5", "eleven_turbo_v2", "eleven_multilingual_v2", "eleven_flash_v3"):
        assert provider.supports_model(model), model
    for model in ("eleven_v3", "", "gpt-realtime", "eleven_english_sts_v2"):
        assert not provider.supports_model(model), model
    with pytest.raises(ValueError):
        ElevenLabsProvider("sk_x", base_url="ftp://example.com")
    with pytest.raises(ValueError):
        ElevenLabsProvider("sk_x", inactivity_timeout_s=500)


@pytest.mark.parametrize(
    ("base_url", "url"),
    [
        (
            "https://api.elevenlabs.io",
            "wss://api.elevenlabs.io/v1/text-to-speech/v%2F1/multi-stream-input?model_id=m&output_format=pcm_16000",
        ),
        (
            "http://127.0.0.1:8767/",
            "ws://127.0.0.1:8767/v1/text-to-speech/v%2F1/multi-stream-input?model_id=m&output_format=pcm_16000",
        ),
        (
            "https://gw.example/elevenlabs?tenant=a",
            "wss://gw.example/elevenlabs/v1/text-to-speech/v%2F1/multi-stream-input"
            "?tenant=a&model_id=m&output_format=pcm_16000",
        ),
    ],
)
def test_stream_url_follows_the_sdk(base_url: str, url: str) -> None:
    assert stream_url(base_url, "v/1", model="m", output_format="pcm_16000") == url
    single = stream_url(base_url, "v", model="m", output_format="ulaw_8000", multi=False, extra={"auto_mode": "true"})
    assert "/v1/text-to-speech/v/stream-input?" in single and single.endswith("&auto_mode=true")
