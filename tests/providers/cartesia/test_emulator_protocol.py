"""The Cartesia emulator's wire behaviour, from a plain `websockets` client: handshake checks, text
buffering, request rules, errors, faults, pacing and the idle timeout. Every server frame is
validated strictly against the SDK's types."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK, InvalidStatus

from providers.cartesia.emulator import CartesiaEmulator
from providers.emulation import synth
from tests.providers.cartesia.conftest import API_KEY, TIMEOUT_S, generation, strict_model, validate_server_event

VERSION = {"Cartesia-Version": "2026-03-01"}


@pytest.fixture
async def emulator() -> AsyncIterator[CartesiaEmulator]:
    async with CartesiaEmulator(api_key=API_KEY) as emu:
        yield emu


def open_socket(emu: CartesiaEmulator, query: str = "", headers: dict[str, str] | None = None) -> Any:
    if headers is None:
        headers = {"X-API-Key": API_KEY, **VERSION}
    return connect(emu.ws_url + query, additional_headers=headers, open_timeout=TIMEOUT_S)


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(message).decode())


async def until(ws: ClientConnection, kind: str, *, legacy: bool = False) -> list[dict[str, Any]]:
    """Frames up to one of type `kind`, each validated against the SDK (legacy errors carry `error`)."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            raw = await ws.recv(decode=False)
            if legacy:
                strict_model(raw, allowed_extras={"error"})
                events.append(orjson.loads(raw))
            else:
                events.append(validate_server_event(raw))
            if events[-1]["type"] == kind:
                return events


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("", {"X-API-Key": API_KEY, **VERSION}),
        ("", {"Authorization": f"Bearer {API_KEY}", **VERSION}),
        (f"?api_key={API_KEY}", VERSION),
        (f"?access_token={API_KEY}&cartesia_version=2026-03-01", {}),
    ],
    ids=["x-api-key", "bearer", "api_key-query", "access_token-query"],
)
async def test_every_auth_form_is_accepted(emulator: CartesiaEmulator, query: str, headers: dict[str, str]) -> None:
    async with open_socket(emulator, query, headers) as ws:
        await send(ws, generation("c1", "Hi."))
        assert (await until(ws, "done"))[-1]["context_id"] == "c1"


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        (VERSION, 401, "unauthorized"),
        ({"X-API-Key": "sk_car_wrong", **VERSION}, 401, "unauthorized"),
        ({"Authorization": "Bearer ", **VERSION}, 401, "unauthorized"),
        ({"X-API-Key": API_KEY}, 400, "invalid_version"),
        ({"X-API-Key": API_KEY, "Cartesia-Version": "latest"}, 400, "invalid_version"),
    ],
)
async def test_handshake_refusals(emulator: CartesiaEmulator, headers: dict[str, str], status: int, code: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with open_socket(emulator, headers=headers):
            pass
    response = refused.value.response
    assert response.status_code == status
    if "Cartesia-Version" in headers and headers["Cartesia-Version"] >= "2026-03-01" and status == 401:
        body = orjson.loads(response.body)
        assert body["error_code"] == code and set(body) == {"error_code", "title", "message", "request_id"}


async def test_an_old_version_gets_plain_text_refusals_and_legacy_errors(emulator: CartesiaEmulator) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with open_socket(emulator, headers={"X-API-Key": "wrong", "Cartesia-Version": "2024-11-13"}):
            pass
    assert refused.value.response.body == b"Unauthorized: Invalid API key."
    # The query parameter wins over the header.
    async with open_socket(emulator, "?cartesia_version=2024-11-13", {"X-API-Key": API_KEY, **VERSION}) as ws:
        await send(ws, generation("c1", "Hi.", model_id="nope"))
        error = (await until(ws, "error", legacy=True))[-1]
    assert error == {
        "type": "error",
        "done": True,
        "error": "Invalid model: The model is not valid, make sure it is a valid model ID.",
        "status_code": 400,
        "context_id": "c1",
    }


async def test_connection_cap_gives_429(emulator: CartesiaEmulator) -> None:
    emulator.max_connections = 2
    async with open_socket(emulator), open_socket(emulator):
        with pytest.raises(InvalidStatus) as refused:
            async with open_socket(emulator):
                pass
        assert refused.value.response.status_code == 429
        assert orjson.loads(refused.value.response.body)["error_code"] == "concurrency_limited"
    async with open_socket(emulator):  # closed sockets free their places
        pass


async def test_text_is_spoken_as_it_arrives_up_to_word_boundaries(emulator: CartesiaEmulator) -> None:
    async with open_socket(emulator) as ws:
        await send(ws, generation("c1", "Hello wor", more=True))
        first = await until(ws, "chunk")  # "Hello " is spoken before the rest of the text exists
        assert first[-1]["context_id"] == "c1"
        await send(ws, generation("c1", "ld and", more=True))
        await send(ws, generation("c1", " more.", more=False))
        await until(ws, "done")
    spoken = emulator.connections[0].contexts["c1"].spoken
    assert spoken[0] == "Hello " and "".join(spoken) == "Hello world and more."
    assert all(s[-1].isspace() for s in spoken[:-1])  # never a word cut in two
    assert emulator.connections[0].billed_characters == len("Hello world and more.")


async def test_buffer_delay_speaks_a_dangling_word(emulator: CartesiaEmulator) -> None:
    async with open_socket(emulator) as ws:
        await send(ws, generation("c1", "Hmm", more=True, max_buffer_delay_ms=20))
        chunk = (await until(ws, "chunk"))[-1]  # no boundary and no more input: spoken after 20 ms
        assert chunk["context_id"] == "c1"
        await send(ws, generation("c1", "", more=False, max_buffer_delay_ms=20))
        await until(ws, "done")
    assert emulator.connections[0].contexts["c1"].spoken == ["Hmm"]


async def test_request_rules(emulator: CartesiaEmulator) -> None:
    async with open_socket(emulator) as ws:
        await send(ws, generation("c1", "Same ", more=True))
        await send(ws, generation("c1", "voice?", voice={"mode": "id", "id": "another-voice"}))
        error = (await until(ws, "error"))[-1]
        assert (error["status_code"], error["error_code"], error["context_id"]) == (400, "invalid_request", "c1")
        assert "same model_id, voice" in error["message"]
        await send(ws, generation("c1", "voice.", more=False))
        await until(ws, "done")
        await send(ws, generation("c1", "Too late."))
        error = (await until(ws, "error"))[-1]
        assert "already ended" in error["message"] and error["context_id"] == "c1"
        cases: list[tuple[dict[str, Any], str]] = [
            ({"output_format": {"container": "mp3", "encoding": "pcm_s16le", "sample_rate": 24000}}, "container"),
            ({"output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 32000}}, "sample_rate"),
            ({"output_format": {"container": "raw", "encoding": "opus", "sample_rate": 24000}}, "encoding"),
            ({"voice": {"mode": "embedding", "embedding": [0.1]}}, "voice mode"),
            ({"language": "xx"}, "language"),
            ({"max_buffer_delay_ms": 9000}, "max_buffer_delay_ms"),
            ({"transcript": 5}, "transcript"),
            ({"continue": "yes"}, "continue"),
        ]
        for bad, field in cases:
            await send(ws, {**generation("c2", "x"), **bad})
            error = (await until(ws, "error"))[-1]
            assert error["status_code"] == 400 and field in error["message"], (bad, error)
        await ws.send("{not json")
        assert (await until(ws, "error"))[-1]["error_code"] == "invalid_request"
        await send(ws, {"transcript": "no context"})
        error = (await until(ws, "error"))[-1]
        assert "context_id" in error["message"] and "context_id" not in error
    assert emulator.connections[0].received_types()[-2:] == ["invalid", "generate"]
    assert emulator.connections[0].billed_characters == len("Same voice.")  # refused requests bill nothing


async def test_cancel_stops_a_context_without_done(emulator: CartesiaEmulator) -> None:
    emulator.speed = 0.5
    async with open_socket(emulator) as ws:
        await send(ws, generation("slow", "Long enough to be cancelled halfway through."))
        await until(ws, "chunk")
        await send(ws, {"context_id": "slow", "cancel": True})
        await send(ws, {"context_id": "unknown", "cancel": True})  # harmless
        emulator.connections[0].speed = 0.0
        await send(ws, generation("next", "Next."))
        later = await until(ws, "done")
    assert later[-1]["context_id"] == "next"
    assert not [e for e in later if e["type"] in ("done", "error") and e["context_id"] != "next"]
    assert emulator.connections[0].received_types() == ["generate", "cancel", "cancel", "generate"]


async def test_per_connection_context_limit(emulator: CartesiaEmulator) -> None:
    emulator.max_contexts = 1
    async with open_socket(emulator) as ws:
        await send(ws, generation("a", "Open ", more=True))
        await send(ws, generation("b", "Refused."))
        error = (await until(ws, "error"))[-1]
        assert (error["status_code"], error["error_code"], error["context_id"]) == (429, "concurrency_limited", "b")
        await send(ws, generation("a", "and closed.", more=False))
        await until(ws, "done")
        await send(ws, generation("b", "Now it fits."))
        assert (await until(ws, "done"))[-1]["context_id"] == "b"


async def test_faults_from_the_query_string(emulator: CartesiaEmulator) -> None:
    async with open_socket(emulator, "?emulator_faults=error_on_response:backend+down") as ws:
        await send(ws, generation("c1", "Hi."))
        error = (await until(ws, "error"))[-1]
    assert (error["status_code"], error["error_code"], error["message"]) == (500, "internal_error", "backend down")
    async with open_socket(emulator, "?emulator_faults=malformed_after_events:1") as ws:
        await send(ws, generation("c1", "Hi."))
        strict_model(await ws.recv(decode=False))
        assert await ws.recv() == "emulator fault: this frame is not JSON {"


async def test_speed_paces_the_audio(emulator: CartesiaEmulator) -> None:
    emulator.speed = 10.0
    text = "Twenty characters ok"  # 1.4 s of audio: 0.14 s at 10x
    started = time.monotonic()
    async with open_socket(emulator) as ws:
        await send(ws, generation("c1", text))
        await until(ws, "done")
    elapsed = time.monotonic() - started
    last_chunk_due = (synth.duration_ms(text) - emulator.chunk_ms) / 1000 / emulator.speed
    assert last_chunk_due <= elapsed < 1.4  # paced, and well faster than real time


async def test_idle_socket_is_closed(emulator: CartesiaEmulator) -> None:
    emulator.idle_timeout_s = 0.05
    async with open_socket(emulator) as ws:
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(ws.recv(), TIMEOUT_S)
        assert ws.close_code == 1000 and ws.close_reason == "idle timeout"


async def test_an_open_context_is_not_idle(emulator: CartesiaEmulator) -> None:
    emulator.idle_timeout_s = 0.05
    async with open_socket(emulator) as ws:
        await send(ws, generation("c1", "Waiting for the rest ", more=True))
        await until(ws, "timestamps")
        # Wait for well past the idle timeout on a real event: the buffer delay of a dangling word.
        await send(ws, generation("c1", "of", more=True, max_buffer_delay_ms=300))
        await until(ws, "chunk")
        await send(ws, generation("c1", " it.", more=False))
        assert (await until(ws, "done"))[-1]["context_id"] == "c1"


def test_emulator_surface() -> None:
    with pytest.raises(ValueError):
        CartesiaEmulator(speed=-1)
    with pytest.raises(ValueError):
        CartesiaEmulator(chunk_ms=0)
    assert "stopped" in repr(CartesiaEmulator())
