"""The conformance client's own checks must bite: the contract checker refuses bad events, echo matching tells
speech apart, and the G.711 codec is the standard one. No relay needed."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from tests.conformance import audio as A
from tests.conformance.client import ContractViolation, check_event
from tests.conformance.conftest import REPO

GOOD: list[tuple[dict[str, Any], str]] = [
    ({"type": "response.started", "response_id": "r1"}, "json"),
    ({"type": "audio", "audio": base64.b64encode(b"\0\0").decode(), "response_id": "r1"}, "json"),
    ({"type": "audio", "audio": b"\0\0", "response_id": "r1"}, "msgpack"),
    ({"type": "transcript.done", "role": "user", "text": "hi", "response_id": None}, "json"),
    ({"type": "response.done", "response_id": "r1", "status": "completed", "usage": {}}, "json"),
    ({"type": "pong", "id": "x", "extra": "fields are allowed"}, "json"),
]

BAD: list[tuple[dict[str, Any], str]] = [
    ({"type": "response.begun", "response_id": "r1"}, "unknown type"),
    ({"response_id": "r1"}, "no type"),
    ({"type": "response.started"}, "missing response_id"),
    ({"type": "response.started", "response_id": 7}, "wrong type"),
    ({"type": "response.done", "response_id": "r1", "status": "ok", "usage": {}}, "bad status"),
    ({"type": "response.done", "response_id": "r1", "status": "completed", "usage": {"audio_in_ms": 1.5}}, "float"),
    ({"type": "response.done", "response_id": "r1", "status": "completed", "usage": {"audio_in_ms": True}}, "bool"),
    ({"type": "error", "code": "x", "message": "m", "fatal": "no"}, "fatal not bool"),
    ({"type": "error", "code": "x", "message": "Traceback (most recent call last):\n ...", "fatal": False}, "trace"),
    ({"type": "error", "code": "x", "message": "bad key sk-proj-abcdefghijklmnop", "fatal": False}, "key"),
    ({"type": "transcript.delta", "role": "assistant", "text": "hi"}, "assistant without response_id"),
    ({"type": "transcript.delta", "role": "system", "text": "hi", "response_id": "r"}, "bad role"),
    ({"type": "tool.call", "call_id": "c", "name": "f", "arguments": {"a": 1}}, "arguments not a string"),
    ({"type": "audio", "audio": "AAA=", "response_id": None}, "audio without response_id"),
    ({"type": "audio", "audio": "not base64!", "response_id": "r"}, "bad base64"),
    ({"type": "alignment", "response_id": "r", "chars": ["a"], "start_ms": [0, 1], "duration_ms": [1]}, "lengths"),
    (
        {
            "type": "session.started",
            "session_id": "s",
            "provider": "openai",
            "model": "m",
            "input_audio": {"encoding": "pcm16", "sample_rate": 16000, "channels": 1},
            "output_audio": {"encoding": "mp3", "sample_rate": 24000, "channels": 1},
            "limits": {"max_message_bytes": 1, "max_session_s": 1},
        },
        "unknown encoding",
    ),
]


@pytest.mark.parametrize(("msg", "wire"), GOOD)
def test_checker_accepts(msg: dict[str, Any], wire: str) -> None:
    check_event(msg, wire="msgpack" if wire == "msgpack" else "json")


@pytest.mark.parametrize(("msg", "why"), BAD, ids=[why for _, why in BAD])
def test_checker_refuses(msg: dict[str, Any], why: str) -> None:
    with pytest.raises(ContractViolation):
        check_event(msg)


def test_echo_matching_tells_speech_apart() -> None:
    hello, _ = A.load_wav(REPO / "tests" / "audio" / "hello-book-table-en-16k.wav")
    weather, _ = A.load_wav(REPO / "tests" / "audio" / "weather-paris-en-16k.wav")
    same = A.match_echo(hello, 16000, A.resample(hello, 16000, 24000)[4800:], 24000)
    assert same.envelope_correlation > 0.99 and abs(same.lag_s - 0.2) < 0.001
    assert A.match_echo(hello, 16000, weather, 16000).envelope_correlation < 0.5
    assert A.match_echo(hello, 16000, hello[::-1].copy(), 16000).envelope_correlation < 0.5


def test_ulaw_codec_is_g711() -> None:
    # Reference points of ITU-T G.711 μ-law: 0 ↔ 0xFF, full scale ↔ 0x80 / 0x00, decoded values exact.
    assert A.to_ulaw(np.array([0.0], dtype=np.float32)) == b"\xff"
    assert A.to_ulaw(np.array([0.99997, -1.0], dtype=np.float32)) == b"\x80\x00"
    assert A.to_pcm16(A.from_ulaw(b"\x80\x00\xff\x7f")) == np.array([32124, -32124, 0, 0], dtype="<i2").tobytes()
    every = bytes(range(256))
    assert A.to_ulaw(A.from_ulaw(every)) == every.replace(b"\x7f", b"\xff")  # -0 encodes as +0
