"""The ElevenLabs emulator with a plain WebSocket client: both endpoints, the limits, auth and faults.

Every server frame a test receives is validated strictly against the SDK's own message types
(`strict_server_message`), except in the test of the snake_case key drift, which the SDK's types
do not describe on purpose.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from audiocodecs.g711 import ulaw_decode
from providers.elevenlabs.emulator import ElevenLabsEmulator
from providers.elevenlabs.emulator_connection import INVALID_KEY_REASON, VOICE_SETTINGS_REASON
from providers.emulation import synth
from providers.emulation.faults import Faults
from providers.emulation.server import MALFORMED_FRAME
from tests.providers.elevenlabs.conftest import TIMEOUT_S, strict_server_message

KEY = "sk_emulator_test_42"
VOICE = "voice123"
QUERY = "?model_id=eleven_flash_v2_5&output_format=pcm_16000"


@pytest_asyncio.fixture(loop_scope="session")
async def emulator() -> AsyncIterator[ElevenLabsEmulator]:
    async with ElevenLabsEmulator(api_key=KEY) as emu:
        yield emu


def url(emu: ElevenLabsEmulator, *, multi: bool = True, query: str = QUERY) -> str:
    return emu.ws_url(VOICE, multi=multi) + query


def headers(key: str = KEY) -> dict[str, str]:
    return {"xi-api-key": key}


async def send(ws: ClientConnection, **message: Any) -> None:
    await ws.send(orjson.dumps(message).decode())


async def receive(ws: ClientConnection, *, multi: bool = True) -> dict[str, Any]:
    return strict_server_message(await asyncio.wait_for(ws.recv(), TIMEOUT_S), multi=multi)


async def until_final(ws: ClientConnection, *, multi: bool = True) -> list[dict[str, Any]]:
    got = []
    while True:
        message = await receive(ws, multi=multi)
        got.append(message)
        if message.get("isFinal"):
            return got


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), TIMEOUT_S)
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason or ""


def audio_of(messages: list[dict[str, Any]], context_id: str | None = None) -> bytes:
    return b"".join(base64.b64decode(m["audio"]) for m in messages if "audio" in m and m.get("contextId") == context_id)


async def test_two_contexts_interleave_and_end_with_their_own_final(emulator: ElevenLabsEmulator) -> None:
    async with connect(url(emulator), additional_headers=headers()) as ws:
        await send(ws, text=" ", context_id="a", voice_settings={"stability": 0.5})
        await send(ws, text=" ", context_id="b")
        await send(ws, text="First context. ", context_id="a", flush=True)
        await send(ws, text="Second one.", context_id="b")
        await send(ws, context_id="b", flush=True)
        await send(ws, context_id="a", close_context=True)
        await send(ws, context_id="b", close_context=True)
        messages: list[dict[str, Any]] = []
        finals: list[str] = []
        while len(finals) < 2:
            message = await receive(ws)
            messages.append(message)
            if message.get("isFinal"):
                finals.append(message["contextId"])
        await send(ws, close_socket=True)
        assert await closed_with(ws) == (1000, "")
    assert sorted(finals) == ["a", "b"]
    for context_id, text in (("a", "First context. "), ("b", "Second one.")):
        chunks = [m for m in messages if m.get("contextId") == context_id and "audio" in m]
        assert len(audio_of(messages, context_id)) == synth.duration_ms(text) * 32
        assert "".join(c for m in chunks for c in m["alignment"]["chars"]) == text
        assert all(m["alignment"] == m["normalizedAlignment"] for m in chunks)
        for m in chunks:  # relative to the chunk, and each character ends where the next begins
            starts, durations = m["alignment"]["charStartTimesMs"], m["alignment"]["charDurationsMs"]
            assert starts[0] == 0 and [s + d for s, d in zip(starts, durations, strict=True)][:-1] == starts[1:]
    kinds = emulator.connections[-1].received_types()
    assert kinds == ["init", "init", "flush", "text", "flush", "close_context", "close_context", "close_socket"]


async def test_chunk_schedule_holds_text_back_until_flush(emulator: ElevenLabsEmulator) -> None:
    words = "word " * 30  # 150 characters: one generation at 120, up to the last space
    async with connect(url(emulator), additional_headers=headers()) as ws:
        await send(ws, text=" ", context_id="c", generation_config={"chunk_length_schedule": [120, 500]})
        await send(ws, text="short ", context_id="c")
        await send(ws, text=words, context_id="c")
        first = await receive(ws)
        assert "".join(first["alignment"]["chars"]) == "shor"  # speech began only past the threshold
        await send(ws, text="tail", context_id="c", flush=True)
        await send(ws, context_id="c", close_context=True)
        messages = [first, *await until_final(ws)]
    spoken = "".join(c for m in messages if "audio" in m for c in m["alignment"]["chars"])
    assert spoken == "short " + words + "tail"
    context = emulator.connections[-1]
    assert context.ended_contexts == ["c"]


async def test_auto_mode_speaks_each_sentence_as_it_ends(emulator: ElevenLabsEmulator) -> None:
    async with connect(url(emulator, query=QUERY + "&auto_mode=true"), additional_headers=headers()) as ws:
        await send(ws, text=" ", context_id="auto")
        await send(ws, text="No end yet ", context_id="auto")
        await send(ws, text="but now.", context_id="auto")
        first = await receive(ws)  # no flush: the sentence end alone set it off
        await send(ws, context_id="auto", close_context=True)
        messages = [first, *await until_final(ws)]
    assert "".join(c for m in messages[:-1] for c in m["alignment"]["chars"]) == "No end yet but now."


async def test_close_context_drops_unflushed_text(emulator: ElevenLabsEmulator) -> None:
    async with connect(url(emulator), additional_headers=headers()) as ws:
        await send(ws, text=" ", context_id="x")
        await send(ws, text="Spoken. ", context_id="x", flush=True)
        await send(ws, text="Never spoken.", context_id="x")
        await send(ws, context_id="x", close_context=True)
        messages = await until_final(ws)
    assert "".join(c for m in messages[:-1] for c in m["alignment"]["chars"]) == "Spoken. "
    assert messages[-1] == {"isFinal": True, "contextId": "x"}


async def test_a_sixth_context_is_refused_like_the_service(emulator: ElevenLabsEmulator) -> None:
    async with connect(url(emulator), additional_headers=headers()) as ws:
        for n in range(5):
            await send(ws, text=" ", context_id=f"ctx{n}")
        await send(ws, text="", context_id="ctx0")  # a keepalive on a live context is fine
        await send(ws, text="")  # so is a connection keepalive: it opens nothing
        await send(ws, text=" ", context_id="ctx5")
        error = await receive(ws)
        code, reason = await closed_with(ws)
    assert error["error"] == "max_active_conversations" and error["code"] == 1008
    assert error["message"].startswith("Maximum simultaneous contexts per WebSocket connection exceeded (5).")
    assert code == 1008 and reason.startswith("Maximum simultaneous contexts")
    assert emulator.connections[-1].peak_contexts == 5


async def test_an_ended_context_frees_its_slot_and_its_id(emulator: ElevenLabsEmulator) -> None:
    async with connect(url(emulator), additional_headers=headers()) as ws:
        for n in range(5):
            await send(ws, text=" ", context_id=f"ctx{n}")
        await send(ws, context_id="ctx0", close_context=True)
        assert await receive(ws) == {"isFinal": True, "contextId": "ctx0"}
        await send(ws, text="Again.", context_id="ctx0", flush=True)
        await send(ws, context_id="ctx0", close_context=True)
        messages = await until_final(ws)
    assert len(audio_of(messages, "ctx0")) == synth.duration_ms("Again.") * 32


async def test_changed_voice_settings_close_1008(emulator: ElevenLabsEmulator) -> None:
    async with connect(url(emulator), additional_headers=headers()) as ws:
        await send(ws, text=" ", context_id="v", voice_settings={"stability": 0.5})
        await send(ws, text="Same. ", context_id="v", voice_settings={"stability": 0.5})
        await send(ws, text="Changed. ", context_id="v", voice_settings={"stability": 0.9})
        code, reason = await closed_with(ws)
    assert (code, reason) == (1008, VOICE_SETTINGS_REASON)


async def test_stream_input_single_context(emulator: ElevenLabsEmulator) -> None:
    query = "?model_id=eleven_turbo_v2_5&output_format=ulaw_8000"
    async with connect(url(emulator, multi=False, query=query), additional_headers=headers()) as ws:
        await send(ws, text=" ", voice_settings={"stability": 0.5}, generation_config={"chunk_length_schedule": [50]})
        await send(ws, text="Tiny ", try_trigger_generation=True)  # below the minimum: buffered
        await send(ws, text=" ")  # keepalive
        await send(ws, text="then enough text to pass the fifty character minimum ", try_trigger_generation=True)
        first = await receive(ws, multi=False)
        await send(ws, text="end.")
        await send(ws, text="")
        messages = [first, *await until_final(ws, multi=False)]
        assert await closed_with(ws) == (1000, "")
    assert messages[-1] == {"isFinal": True}
    text = "Tiny then enough text to pass the fifty character minimum end."
    assert "".join(c for m in messages[:-1] for c in m["alignment"]["chars"]) == text
    audio = audio_of(messages)
    assert len(audio) == synth.duration_ms(text) * 8  # µ-law at 8 kHz: one byte per sample
    expected = synth.synthesize(text, 8000)
    assert abs(int(ulaw_decode(audio).astype(int).max()) - int(expected.max())) < 400  # really G.711 speech
    kinds = emulator.connections[-1].received_types()
    assert kinds == ["init", "text", "keepalive", "text", "text", "end_of_input"]


async def test_stream_input_needs_the_init_first(emulator: ElevenLabsEmulator) -> None:
    async with connect(url(emulator, multi=False), additional_headers=headers()) as ws:
        await send(ws, text="Hello without init")
        code, reason = await closed_with(ws)
    assert code == 1008 and "first message" in reason


@pytest.mark.parametrize(
    ("how", "outcome"),
    [
        ("header-right", None),
        ("header-wrong", INVALID_KEY_REASON),
        ("query-bearer", None),
        ("message-right", None),
        ("message-wrong", INVALID_KEY_REASON),
        ("missing", "Missing API key: send the xi-api-key header or put the key in the first message"),
    ],
)
async def test_authentication(emulator: ElevenLabsEmulator, how: str, outcome: str | None) -> None:
    query, extra_headers, init_fields = QUERY, {}, {}
    if how.startswith("header"):
        extra_headers = headers(KEY if how.endswith("right") else "sk_wrong")
    elif how == "query-bearer":
        query += f"&authorization=Bearer%20{KEY}"
    elif how.startswith("message"):
        init_fields = {"xi_api_key": KEY if how.endswith("right") else "sk_wrong"}
    async with connect(url(emulator, query=query), additional_headers=extra_headers) as ws:
        with contextlib.suppress(ConnectionClosed):  # a refused header key is closed before any message
            await send(ws, text=" ", context_id="k", **init_fields)
            await send(ws, text="Hi.", context_id="k", flush=True)
            await send(ws, context_id="k", close_context=True)
        if outcome is None:
            assert (await until_final(ws))[-1]["isFinal"] is True
        else:
            assert await closed_with(ws) == (1008, outcome)
    if how == "message-right":
        assert emulator.connections[-1].received[0]["xi_api_key"] == "[redacted]"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("?model_id=eleven_flash_v2_5&output_format=mp3_44100_128", "output_format mp3_44100_128 is not emulated"),
        ("?model_id=eleven_flash_v2_5", "output_format mp3_44100_128 is not emulated"),
        ("?model_id=eleven_v3&output_format=pcm_16000", "eleven_v3 is not available over WebSockets"),
    ],
)
async def test_unsupported_format_and_model(emulator: ElevenLabsEmulator, query: str, reason: str) -> None:
    async with connect(url(emulator, query=query), additional_headers=headers()) as ws:
        code, got = await closed_with(ws)
    assert code == 1008 and reason in got


async def test_inactivity_closes_with_the_services_reason_cut_to_a_close_frame() -> None:
    async with (
        ElevenLabsEmulator(inactivity_timeout_s=0.2) as emu,
        connect(url(emu), additional_headers=headers()) as ws,
    ):
        await send(ws, text=" ", context_id="idle")
        code, reason = await closed_with(ws)
    assert code == 1008
    assert reason.startswith("Have not received a new text input within the timeout of 0.2 seconds.")
    assert len(reason.encode()) == 123  # the service's own reason is cut there too


async def test_snake_case_key_style() -> None:
    async with (
        ElevenLabsEmulator(key_style="snake") as emu,
        connect(url(emu), additional_headers=headers()) as ws,
    ):
        await send(ws, text=" ", context_id="s")
        await send(ws, text="Hi.", context_id="s", flush=True)
        await send(ws, context_id="s", close_context=True)
        frames = []
        while not frames or "is_final" not in frames[-1]:
            frames.append(orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S)))
    assert frames[-1] == {"is_final": True, "context_id": "s"}
    assert all(f["context_id"] == "s" and "contextId" not in f for f in frames)


async def test_speed_paces_the_audio() -> None:
    text = "Paced speech."  # 910 ms of audio; at 4x real time at least 227 ms
    async with (
        ElevenLabsEmulator(speed=4.0) as emu,
        connect(url(emu), additional_headers=headers()) as ws,
    ):
        started = time.monotonic()
        await send(ws, text=text, context_id="p", flush=True)
        await send(ws, context_id="p", close_context=True)
        await until_final(ws)
        elapsed = time.monotonic() - started
    last_chunk_ms = (len(text) - 1) // 4 * 4 * synth.CHAR_MS  # the last chunk is due at its start
    assert elapsed >= 0.95 * last_chunk_ms / 4 / 1000


async def test_faults_and_http(emulator: ElevenLabsEmulator) -> None:
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{emulator.base_url}/healthz")).status_code == 200
        assert (await http.get(f"{emulator.base_url}/v1/text-to-speech/{VOICE}/other")).status_code == 404
    emulator.faults = Faults(reject_connect=429)
    try:
        with pytest.raises(InvalidStatus) as refused:
            await connect(url(emulator), additional_headers=headers())
        assert refused.value.response.status_code == 429
    finally:
        emulator.faults = Faults()
    faulty = url(emulator) + "&emulator_faults=malformed_after_events:1,drop_after_events:2"
    async with connect(faulty, additional_headers=headers()) as ws:
        await send(ws, text="Several chunks of speech.", context_id="f", flush=True)
        await receive(ws)
        assert await asyncio.wait_for(ws.recv(), TIMEOUT_S) == MALFORMED_FRAME
        await receive(ws)
        code, _ = await closed_with(ws)
    assert code == 1006  # dropped: no close frame


def test_strict_validation_rejects_drift() -> None:
    good = {
        "audio": "AAAA",
        "contextId": "c",
        "alignment": {"chars": ["a"], "charStartTimesMs": [0], "charDurationsMs": [5]},
    }
    strict_server_message(orjson.dumps(good))
    for bad in (
        {**good, "isFinal": False},  # not a field of the SDK's audio message
        {**good, "alignment": {"chars": ["a"], "charStartTimesMs": [0.5], "charDurationsMs": [5]}},
        {**good, "alignment": {"chars": ["a"], "charStartTimesMs": [0], "charsDurationsMs": [5]}},
        {"isFinal": True, "context_id": "c"},
        {"contextId": "c"},
    ):
        with pytest.raises(AssertionError):
            strict_server_message(orjson.dumps(bad))
