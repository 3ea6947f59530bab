"""The Gemini emulator on the wire, with a plain `websockets` client: paths, auth, casing, errors, faults.

Every server message received here is also validated strictly against the SDK's types.
"""

from __future__ import annotations

import asyncio
import base64
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from providers.emulation.faults import Faults, FaultSpecError
from providers.emulation.server import MALFORMED_FRAME
from providers.gemini.emulator import LIVE_PATH, GeminiEmulator
from providers.gemini.emulator_protocol import GeminiFaults, normalize_keys
from tests.conftest import REPO
from tests.providers.gemini.conftest import MODEL, chunks, load_audio, silence, validate_server_frame

V1BETA = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
SETUP = {"setup": {"model": f"models/{MODEL}", "generationConfig": {"responseModalities": ["AUDIO"]}}}


async def recv(ws: ClientConnection) -> dict[str, Any]:
    frame = await asyncio.wait_for(ws.recv(decode=False), 5)
    assert isinstance(frame, bytes)  # JSON in binary frames, as the service sends it
    validate_server_frame(frame)
    message: dict[str, Any] = orjson.loads(frame)
    return message


async def until_turn_complete(ws: ClientConnection) -> list[dict[str, Any]]:
    got = []
    while True:
        message = await recv(ws)
        got.append(message)
        if message.get("serverContent", {}).get("turnComplete"):
            return got


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as raised:
        while True:
            await recv(ws)
    assert raised.value.rcvd is not None
    return raised.value.rcvd.code, raised.value.rcvd.reason


def audio_bytes(messages: list[dict[str, Any]]) -> int:
    return sum(
        len(base64.b64decode(part["inlineData"]["data"]))
        for m in messages
        for part in m.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
        if "inlineData" in part
    )


@pytest.fixture
async def emulator() -> AsyncIterator[GeminiEmulator]:
    async with GeminiEmulator(speed=0.0) as emu:
        yield emu


@pytest.fixture
async def keyed() -> AsyncIterator[GeminiEmulator]:
    async with GeminiEmulator(speed=0.0, api_key="secret-key") as emu:
        yield emu


def url(emu: GeminiEmulator, path: str = V1BETA, query: str = "") -> str:
    return f"ws://{emu.host}:{emu.port}{path}{query}"


# -- paths and auth ----------------------------------------------------------------------------------


def test_path_pattern() -> None:
    for version in ("v1", "v1beta", "v1alpha"):
        assert LIVE_PATH.fullmatch(V1BETA.replace("v1beta", version))
    assert LIVE_PATH.fullmatch("/any/prefix" + V1BETA + "Constrained")
    assert LIVE_PATH.fullmatch("//ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent")
    assert not LIVE_PATH.fullmatch(V1BETA.replace("v1beta", "v2"))
    assert not LIVE_PATH.fullmatch("/ws/google.ai.generativelanguage.v1beta.GenerativeService.GenerateContent")


async def test_healthz_and_unknown_paths(emulator: GeminiEmulator) -> None:
    with pytest.raises(InvalidStatus) as raised:
        async with connect(url(emulator, "/v1beta/models")):
            pass
    assert raised.value.response.status_code == 404
    async with connect(url(emulator, "/prefix" + V1BETA.replace("v1beta", "v1alpha"))) as ws:
        await ws.send(orjson.dumps(SETUP).decode())
        assert await recv(ws) == {"setupComplete": {}}


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({"x-goog-api-key": "secret-key"}, ""),
        ({}, "?key=secret-key"),
        ({"Authorization": "Token secret-key"}, ""),
        ({}, "?access_token=secret-key"),
    ],
    ids=["header", "key-query", "token-header", "access-token-query"],
)
async def test_every_way_to_present_the_key(keyed: GeminiEmulator, headers: dict[str, str], query: str) -> None:
    async with connect(url(keyed, query=query), additional_headers=headers) as ws:
        await ws.send(orjson.dumps(SETUP).decode())
        assert await recv(ws) == {"setupComplete": {}}


async def test_wrong_and_missing_keys_are_refused_after_setup(keyed: GeminiEmulator) -> None:
    async with connect(url(keyed), additional_headers={"x-goog-api-key": "nope"}) as ws:
        await ws.send(orjson.dumps(SETUP).decode())
        assert await closed_with(ws) == (1007, "API key not valid. Please pass a valid API key.")
    async with connect(url(keyed)) as ws:
        await ws.send(orjson.dumps(SETUP).decode())
        assert (await closed_with(ws))[0] == 1008


# -- casing, setup, messages ------------------------------------------------------------------------------


PARAMETERS = {"type": "OBJECT", "properties": {"city_name": {"type": "STRING", "max_length": 9}}}


def audio_message(chunk: bytes, **blob: Any) -> str:
    return orjson.dumps({"realtime_input": {"audio": {"data": base64.b64encode(chunk).decode(), **blob}}}).decode()


def test_normalize_keys_leaves_user_data_alone() -> None:
    message = {
        "tool_response": {
            "function_responses": [{"id": "c1", "response": {"temp_c": 21, "snake_case": True}}],
        },
        "setup": {"tools": [{"function_declarations": [{"name": "f", "parameters": PARAMETERS}]}]},
    }
    assert normalize_keys(message) == {
        "toolResponse": {"functionResponses": [{"id": "c1", "response": {"temp_c": 21, "snake_case": True}}]},
        "setup": {"tools": [{"functionDeclarations": [{"name": "f", "parameters": PARAMETERS}]}]},
    }


async def test_snake_case_everywhere_and_a_manual_turn(emulator: GeminiEmulator) -> None:
    setup = {
        "setup": {
            "model": f"models/{MODEL}",
            "generation_config": {"response_modalities": ["AUDIO"]},
            "realtime_input_config": {"automatic_activity_detection": {"disabled": True}},
            "output_audio_transcription": {},
        }
    }
    speech = load_audio("weather-paris-en-16k.wav")
    async with connect(url(emulator)) as ws:
        await ws.send(orjson.dumps(setup).decode())
        assert await recv(ws) == {"setupComplete": {}}
        await ws.send(orjson.dumps({"realtime_input": {"activity_start": {}}}).decode())
        for chunk in chunks(speech):
            data = base64.urlsafe_b64encode(chunk).decode().rstrip("=")  # as proto3 JSON allows
            await ws.send(orjson.dumps({"realtime_input": {"audio": {"data": data, "mime_type": "audio/pcm"}}}))
        await ws.send(orjson.dumps({"realtime_input": {"activity_end": {}}}).decode())
        messages = await until_turn_complete(ws)
        await ws.send(orjson.dumps({"client_content": {"turns": [{"role": "user", "parts": [{"text": "hi"}]}],
                                                        "turn_complete": True}}).decode())  # fmt: skip
        text_turn = await until_turn_complete(ws)
    assert audio_bytes(messages) == speech.size * 3  # 16 kHz in, 24 kHz out, 2 bytes a sample
    assert "".join(m["serverContent"].get("outputTranscription", {}).get("text", "") for m in text_turn) == "hi"
    conn = emulator.connections[0]
    assert conn.setup is not None and not conn.setup.automatic_vad and not conn.setup.input_transcription
    assert conn.received_types()[-1] == "clientContent"


async def test_audio_at_another_rate_is_resampled(emulator: GeminiEmulator) -> None:
    import soxr

    speech = load_audio("weather-paris-en-16k.wav")
    at_24k = soxr.resample(speech, 16_000, 24_000).astype("<i2")
    async with connect(url(emulator)) as ws:
        await ws.send(orjson.dumps({**SETUP}).decode())
        await recv(ws)
        for chunk in chunks(at_24k, rate=24_000):
            blob = {"data": base64.b64encode(chunk).decode(), "mimeType": "audio/pcm;rate=24000"}
            await ws.send(orjson.dumps({"realtimeInput": {"audio": blob}}).decode())
        await ws.send(orjson.dumps({"realtimeInput": {"audioStreamEnd": True}}).decode())  # ends the speech now
        messages = await until_turn_complete(ws)
    echoed_ms = audio_bytes(messages) / 48
    assert speech.size / 16 - 350 <= echoed_ms <= speech.size / 16 + 50  # the turn, cut at the stream's end


async def test_config_as_first_message_is_accepted(emulator: GeminiEmulator) -> None:
    async with connect(url(emulator)) as ws:
        await ws.send(orjson.dumps({"config": {"model": f"models/{MODEL}", "responseModalities": ["TEXT"]}}).decode())
        assert await recv(ws) == {"setupComplete": {}}
        await ws.send(orjson.dumps({"realtimeInput": {"text": "two words"}}).decode())
        messages = await until_turn_complete(ws)
    parts = [p["text"] for m in messages for p in m.get("serverContent", {}).get("modelTurn", {}).get("parts", [])]
    assert parts == ["two ", "words"]


@pytest.mark.parametrize(
    ("messages", "code", "reason"),
    [
        ([{"realtimeInput": {"text": "hi"}}], 1007, "The first message must be a setup message."),
        ([{"setup": {"model": "models/gemini-1.5-pro"}}], 1008, "not supported for bidiGenerateContent"),
        ([{"setup": {"model": f"models/{MODEL}", "generationConfig": {"responseModalities": ["AUDIO", "TEXT"]}}}],
         1007, "response_modalities"),
        ([SETUP, {"realtimeInput": {"text": "a", "audioStreamEnd": True}}], 1007, "exactly one"),
        ([SETUP, {"somethingElse": {}}], 1007, 'Unknown name "somethingElse"'),
        ([SETUP, {"realtimeInput": {"activityStart": {}}}], 1007, "automatic activity detection is off"),
        ([SETUP, {"toolResponse": {"functionResponses": [{"name": "f", "response": {}}]}}], 1007, "id"),
        ([SETUP, {"setup": {}}], 1007, 'Unknown name "setup"'),
    ],
    ids=["not-setup-first", "unknown-model", "two-modalities", "two-fields", "unknown-message", "activity-in-vad",
         "tool-response-without-id", "second-setup"],
)  # fmt: skip
async def test_client_mistakes_close_the_socket(
    emulator: GeminiEmulator, messages: list[dict[str, Any]], code: int, reason: str
) -> None:
    async with connect(url(emulator)) as ws:
        for message in messages:
            await ws.send(orjson.dumps(message).decode())
        got_code, got_reason = await closed_with(ws)
    assert got_code == code and reason in got_reason


async def test_resumption_with_an_unknown_handle_is_refused(emulator: GeminiEmulator) -> None:
    async with connect(url(emulator)) as ws:
        await ws.send(orjson.dumps({"setup": {**SETUP["setup"], "sessionResumption": {"handle": "nope"}}}).decode())
        assert await closed_with(ws) == (1007, "Invalid session resumption handle.")


# -- faults -----------------------------------------------------------------------------------------------


def test_gemini_faults_parse_and_print() -> None:
    faults = GeminiFaults.parse("delay_ms:5,go_away_after_events:3,setup_complete_delay_ms:200")
    assert (faults.delay_ms, faults.go_away_after_events, faults.setup_complete_delay_ms) == (5.0, 3, 200.0)
    assert GeminiFaults.parse(faults.to_query()) == faults and faults.active and not GeminiFaults().active
    assert GeminiFaults.of(Faults(drop_after_events=2)).drop_after_events == 2
    with pytest.raises(FaultSpecError, match="go_away_after_events"):
        GeminiFaults.parse("go_away_after_events:-1")
    with pytest.raises(FaultSpecError):
        GeminiFaults.parse("no_such_fault:1")


async def test_go_away_fault_from_the_query_string(emulator: GeminiEmulator) -> None:
    emulator.faults = Faults(delay_ms=1)  # a plain Faults is taken too
    async with connect(url(emulator, query="?emulator_faults=go_away_after_events:1")) as ws:
        await ws.send(orjson.dumps(SETUP).decode())
        assert await recv(ws) == {"setupComplete": {}}
        assert await recv(ws) == {"goAway": {"timeLeft": "1s"}}
        assert await closed_with(ws) == (1011, "Deadline expired before operation could complete.")
    assert isinstance(emulator.faults, GeminiFaults) and emulator.faults.delay_ms == 1


async def test_malformed_and_drop_faults(emulator: GeminiEmulator) -> None:
    emulator.faults = Faults(malformed_after_events=1, drop_after_events=2)
    async with connect(url(emulator)) as ws:
        await ws.send(orjson.dumps(SETUP).decode())
        assert await recv(ws) == {"setupComplete": {}}
        assert await ws.recv(decode=False) == MALFORMED_FRAME.encode()
        await ws.send(orjson.dumps({"realtimeInput": {"text": "hello"}}).decode())
        await recv(ws)  # the second message goes out, then the TCP connection is dropped
        with pytest.raises(ConnectionClosed) as raised:
            await recv(ws)
        assert raised.value.rcvd is None


async def test_send_go_away_reaches_only_open_sessions(emulator: GeminiEmulator) -> None:
    async with connect(url(emulator)) as ws:
        await ws.send(orjson.dumps(SETUP).decode())
        await recv(ws)
        assert await emulator.send_go_away(time_left_ms=60_000) == 1
        assert await recv(ws) == {"goAway": {"timeLeft": "60s"}}
        speech = load_audio("weather-paris-en-16k.wav")
        for chunk in chunks(speech) + chunks(silence(800)):  # the connection still works until its deadline
            await ws.send(audio_message(chunk))
        assert audio_bytes(await until_turn_complete(ws)) > 0
    assert await emulator.send_go_away(time_left_ms=10) == 0  # that socket is closed


# -- command line -------------------------------------------------------------------------------------------


async def test_cli_serves_until_interrupted() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "providers.gemini.emulator", "--port", "0", "--speed", "0",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        endpoint = line.split(" on ", 1)[1].split(" ", 1)[0]
        assert endpoint.startswith("ws://127.0.0.1:") and endpoint.endswith(V1BETA)
        async with connect(endpoint, additional_headers={"x-goog-api-key": "k"}) as ws:
            await ws.send(orjson.dumps(SETUP).decode())
            assert await recv(ws) == {"setupComplete": {}}
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert b"stopped" in await proc.stdout.read()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
