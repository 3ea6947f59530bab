"""The Cartesia translator, replayed against recorded transcripts (tests/transcripts/cartesia/*.jsonl).

Transcript format — one JSON object per line, replayed top to bottom against one `CartesiaTranslator`:

    {"config": {...}, "provider": {...}, "formats": {"output": <fmt>}, "api_key": "..."}
        the first line after any comments. `config` has `client_output` (a contract audio format
        dict) and optionally `model` and `voice` (the session's); `provider` has the provider's
        `model`, `voice`, `version` and optionally `language`, `max_buffer_delay_ms` — what
        `CartesiaProvider.connect` combines with the session's. `formats.output` is the negotiated
        output format. `api_key` (optional) is the secret the translator's scrubber knows about.
        Context ids are deterministic: "utt_1", "utt_2", … in the order utterances start.
    {"comment": "..."}
        ignored; says what the next lines show.
    {"intent": {"op": <name>, ...arguments}, "send": [<Cartesia client message>, ...], "events": [...]}
        a client intent, the messages it must queue and the provider events it must return.
        ops: send_text {text, final}, flush, interrupt {response_id}, voice {voice} (a session.update).
    {"server": <Cartesia server event>, "events": [...], "send": [...]}
        a server event (fed as a JSON frame), the provider events it must produce and the messages it
        must queue ("send" may be left out when it queues none).
    {"raw": "<frame text>", "events": [...]}
        a frame as received, for malformed input.
    {"lost": true, "events": [...]}
        the connection died (`connection_lost()`).

Any line may add "state": {"live_response": ...} — the translator's state after the line.

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

from audiocodecs.format import OPUS_48K, PCM16_24K, AudioFormat, Encoding
from providers.base import ProviderKind
from providers.cartesia.provider import DEFAULT_MODEL, DEFAULT_VERSION, CartesiaProvider, tts_url
from providers.cartesia.translator import (
    CartesiaTranslator,
    Scrubber,
    UtteranceState,
    _Utterance,
    error_details,
    negotiate_output,
    scrub_secrets,
    voice_spec,
    wire_output_format,
)
from providers.events import ProviderEvent
from tests.transcripts.format import load, render

TRANSCRIPTS = sorted((Path(__file__).resolve().parents[2] / "transcripts" / "cartesia").glob("*.jsonl"))
INTENT_OPS = {"send_text", "flush", "interrupt", "voice"}
LINE_KINDS = {"config", "comment", "intent", "server", "raw", "lost"}


def build(header: dict[str, Any]) -> CartesiaTranslator:
    config, provider = header["config"], header["provider"]
    counter = itertools.count(1)
    secrets = [header["api_key"]] if "api_key" in header else []
    return CartesiaTranslator(
        model=config.get("model") or provider["model"],
        voice=config.get("voice") or provider["voice"],
        output_format=negotiate_output(AudioFormat.from_dict(config["client_output"], PCM16_24K)),
        version=provider["version"],
        language=provider.get("language"),
        max_buffer_delay_ms=provider.get("max_buffer_delay_ms"),
        scrub=Scrubber(*secrets),
        new_id=lambda: f"utt_{next(counter)}",
    )


def apply_intent(tr: CartesiaTranslator, intent: dict[str, Any]) -> list[ProviderEvent]:
    op = intent["op"]
    if op == "send_text":
        return tr.send_text(intent["text"], final=intent["final"])
    if op == "flush":
        return tr.flush()
    if op == "interrupt":
        return tr.interrupt(intent["response_id"])
    if op == "voice":
        tr.voice = intent["voice"]
        return []
    raise AssertionError(f"unknown intent op {op!r}")


def replay(path: Path) -> None:
    lines = load(path)
    first = next(n for n, line in enumerate(lines) if "comment" not in line)
    header = lines[first]
    assert "config" in header, f"{path.name}: the first line (after comments) must be the config"
    tr = build(header)
    assert tr.output_format.to_dict() == header["formats"]["output"], path.name
    for number, line in enumerate(lines[first + 1 :], start=first + 2):
        where = f"{path.name}:{number}"
        kinds = LINE_KINDS & line.keys()
        assert len(kinds) == 1, f"{where}: a line has exactly one of {sorted(LINE_KINDS)}"
        if "comment" in line:
            continue
        if "intent" in line:
            got = apply_intent(tr, line["intent"])
        elif "server" in line:
            got = tr.feed(orjson.dumps(line["server"]))
        elif "raw" in line:
            got = tr.feed(line["raw"])
        else:
            got = tr.connection_lost()
        assert [render(e) for e in got] == line.get("events", []), where
        assert tr.data_to_send() == line.get("send", []), where
        if "live_response" in line.get("state", {}):
            assert tr.live_response == line["state"]["live_response"], where


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_transcript(path: Path) -> None:
    replay(path)


def test_transcripts_cover_every_intent_and_event_type() -> None:
    assert len(TRANSCRIPTS) >= 8
    lines = [line for path in TRANSCRIPTS for line in load(path)]
    assert {line["intent"]["op"] for line in lines if "intent" in line} == INTENT_OPS
    server_types = {line["server"]["type"] for line in lines if "server" in line}
    assert server_types >= {"chunk", "timestamps", "flush_done", "done", "error", "phoneme_timestamps"}
    assert any("lost" in line for line in lines) and any("raw" in line for line in lines)


# -- pieces the transcripts do not show -----------------------------------------------------------


def make_translator(**overrides: Any) -> CartesiaTranslator:
    counter = itertools.count(1)
    options: dict[str, Any] = {
        "model": "sonic-3.5",
        "voice": "v1",
        "output_format": PCM16_24K,
        "version": "2026-03-01",
        "new_id": lambda: f"utt_{next(counter)}",
        **overrides,
    }
    return CartesiaTranslator(**options)


@pytest.mark.parametrize(
    ("client", "negotiated"),
    [
        (AudioFormat(Encoding.PCM16, 24000), AudioFormat(Encoding.PCM16, 24000)),
        (AudioFormat(Encoding.PCM16, 16000), AudioFormat(Encoding.PCM16, 16000)),
        (AudioFormat(Encoding.F32, 44100), AudioFormat(Encoding.F32, 44100)),
        (AudioFormat(Encoding.ULAW, 8000), AudioFormat(Encoding.ULAW, 8000)),
        (AudioFormat(Encoding.ALAW, 8000), AudioFormat(Encoding.ALAW, 8000)),
        (AudioFormat(Encoding.ULAW, 16000), AudioFormat(Encoding.ULAW, 16000)),
        (AudioFormat(Encoding.PCM16, 11025), AudioFormat(Encoding.PCM16, 16000)),  # not a Cartesia rate: next above
        (AudioFormat(Encoding.PCM16, 32000), AudioFormat(Encoding.PCM16, 44100)),
        (AudioFormat(Encoding.F32, 12000), AudioFormat(Encoding.F32, 16000)),
        (OPUS_48K, AudioFormat(Encoding.PCM16, 48000)),  # Opus is encoded from PCM at its own rate
        (AudioFormat(Encoding.PCM16, 24000, channels=2), AudioFormat(Encoding.PCM16, 24000)),
    ],
)
def test_output_negotiation(client: AudioFormat, negotiated: AudioFormat) -> None:
    assert negotiate_output(client) == negotiated
    wire = wire_output_format(negotiated)
    assert wire["container"] == "raw" and wire["sample_rate"] == negotiated.sample_rate


def test_wire_format_refuses_what_cartesia_lacks() -> None:
    with pytest.raises(ValueError):
        wire_output_format(OPUS_48K)
    with pytest.raises(ValueError):
        wire_output_format(AudioFormat(Encoding.PCM16, 11025))


def test_voice_shape_follows_the_version() -> None:
    assert voice_spec("v", "2024-11-13") == {"mode": "id", "id": "v"}
    assert voice_spec("v", "2026-03-01") == {"mode": "id", "id": "v"}
    assert voice_spec("v", "2026-08-14") == {"id": "v"}


def test_error_details_both_shapes() -> None:
    structured = {"status_code": 429, "error_code": "concurrency_limited", "title": "Too many", "message": "Slow down."}
    assert error_details(structured) == ("concurrency_limited", "Too many: Slow down.")
    assert error_details({"status_code": 400, "error": "Invalid model: nope"}) == (
        "invalid_request",
        "Invalid model: nope",
    )
    assert error_details({"status_code": 418, "error_code": None}) == (
        "cartesia_error",
        "Cartesia reported an error (status 418)",
    )
    assert error_details({}) == ("cartesia_error", "cartesia_error")


def test_utterance_transitions_are_enforced() -> None:
    utt = _Utterance("c", "v")
    with pytest.raises(RuntimeError):
        utt.to(UtteranceState.CLOSING)  # must go live first
    utt.to(UtteranceState.SPEAKING)
    utt.to(UtteranceState.ENDED)
    with pytest.raises(RuntimeError):
        utt.to(UtteranceState.SPEAKING)


def test_unknown_types_are_logged_once_and_malformed_frames_without_payload(caplog: pytest.LogCaptureFixture) -> None:
    tr = make_translator()
    tr.send_text("Hi.", final=True)
    with caplog.at_level(logging.DEBUG, logger="providers.cartesia.translator"):
        for _ in range(3):
            assert tr.feed(b'{"type":"brand_new","secret":"PAYLOAD-123"}') == []
        assert tr.feed(b"PAYLOAD-456 is not json") == []
        assert tr.feed(b'{"type":"chunk","context_id":"utt_1","data":"PAYLOAD-789!"}') == []
        assert tr.feed(b'{"type":"timestamps","context_id":"utt_1","word_timestamps":{"words":"PAYLOAD"}}') == []
    unknown = [r for r in caplog.records if "brand_new" in r.getMessage()]
    assert len(unknown) == 1 and unknown[0].levelno == logging.DEBUG
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 3
    assert "PAYLOAD" not in caplog.text


def test_ended_contexts_are_remembered_boundedly() -> None:
    tr = make_translator()
    for n in range(1, 70):
        tr.send_text("Hi.", final=True)
        tr.feed(orjson.dumps({"type": "done", "done": True, "status_code": 206, "context_id": f"utt_{n}"}))
    tr.data_to_send()
    # an error for a long-forgotten context is reported (without a response to fail), a recent one is not
    assert [type(e).__name__ for e in tr.receive({"type": "error", "context_id": "utt_1", "status_code": 500})] == [
        "ProviderError"
    ]
    assert tr.receive({"type": "error", "context_id": "utt_69", "status_code": 500}) == []


def test_scrub_secrets() -> None:
    text = "bad key sk_car_AbC123xyz, admin sk_car_admin_9f, mine my-own-key; fine: task-sk, risk-free"
    assert (
        scrub_secrets(text, ["my-own-key"])
        == "bad key [redacted], admin [redacted], mine [redacted]; fine: task-sk, risk-free"
    )
    assert len(scrub_secrets("x" * 5000)) == 500
    assert "s3cr3t" not in repr(Scrubber("sk_car_s3cr3t"))


def test_provider_surface_and_secrets() -> None:
    provider = CartesiaProvider("sk_car_s3cr3t-key", base_url="http://127.0.0.1:9")
    assert (provider.name, provider.kind, provider.modalities) == ("cartesia", ProviderKind.TTS, frozenset({"audio"}))
    assert provider.default_model == DEFAULT_MODEL == "sonic-3.5"
    assert provider.cartesia_version == DEFAULT_VERSION
    assert "s3cr3t" not in repr(provider) and all(
        "s3cr3t" not in str(v) for k, v in vars(provider).items() if k != "_api_key"
    )
    for model in ("sonic-3.5", "sonic-3-2026-01-12", "sonic-latest", "sonic"):
        assert provider.supports_model(model), model
    for model in ("", "gpt-realtime", "eleven_flash_v2_5", "sonic 3"):
        assert not provider.supports_model(model), model
    with pytest.raises(ValueError):
        CartesiaProvider("k", base_url="ftp://example.com")
    with pytest.raises(ValueError):
        CartesiaProvider("k", cartesia_version="latest")
    with pytest.raises(ValueError):
        CartesiaProvider("k", max_buffer_delay_ms=9000)


@pytest.mark.parametrize(
    ("base_url", "url"),
    [
        ("https://api.cartesia.ai", "wss://api.cartesia.ai/tts/websocket"),
        ("http://127.0.0.1:8767/", "ws://127.0.0.1:8767/tts/websocket"),
        ("https://gw.example/cartesia?tenant=2", "wss://gw.example/cartesia/tts/websocket?tenant=2"),
        ("wss://relay.example/custom", "wss://relay.example/custom/tts/websocket"),
    ],
)
def test_tts_url_follows_the_sdk(base_url: str, url: str) -> None:
    assert tts_url(base_url) == url
