"""Handshake, authentication and fault switches of the OpenAI Realtime emulator."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import pytest_asyncio
from openai import AsyncOpenAI
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.typing import Subprotocol

from providers.emulation.faults import Faults
from providers.emulation.server import MALFORMED_FRAME
from providers.openai.emulator import OpenAIRealtimeEmulator
from tests.providers.openai.conftest import MODEL, EventLog, open_session, validate_server_event

KEY = "sk-right"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def keyed() -> AsyncIterator[OpenAIRealtimeEmulator]:
    async with OpenAIRealtimeEmulator(api_key=KEY) as emu:
        yield emu


@pytest_asyncio.fixture(loop_scope="session")
async def faulty(emulator: OpenAIRealtimeEmulator) -> AsyncIterator[OpenAIRealtimeEmulator]:
    """The shared emulator; whatever faults a test sets are switched off afterwards."""
    yield emulator
    emulator.faults = Faults()


def client_for(emulator: OpenAIRealtimeEmulator, key: str = "sk-test") -> AsyncOpenAI:
    return AsyncOpenAI(api_key=key, base_url=emulator.base_url)


async def test_subprotocol_auth_selects_realtime(keyed: OpenAIRealtimeEmulator) -> None:
    async with connect(
        f"{keyed.ws_url}?model={MODEL}",
        subprotocols=[Subprotocol("realtime"), Subprotocol(f"openai-insecure-api-key.{KEY}")],
    ) as ws:
        assert ws.subprotocol == "realtime"
        created = validate_server_event(await ws.recv(decode=False))
        assert created["type"] == "session.created"


async def test_bearer_auth_with_the_right_key(keyed: OpenAIRealtimeEmulator) -> None:
    async for log in open_session(client_for(keyed, KEY)):
        assert log.events[0]["session"]["model"] == MODEL


async def test_wrong_key_gets_error_then_close_3000(keyed: OpenAIRealtimeEmulator) -> None:
    async with client_for(keyed, "sk-wrong").realtime.connect(model=MODEL) as conn:
        log = EventLog(conn)
        error = (await log.next())["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
        with pytest.raises(ConnectionClosedError) as closed:
            await log.next()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (3000, "invalid_request_error.invalid_api_key")


async def test_missing_key_and_missing_model(keyed: OpenAIRealtimeEmulator) -> None:
    async with connect(f"{keyed.ws_url}?model={MODEL}", subprotocols=[Subprotocol("realtime")]) as ws:
        assert validate_server_event(await ws.recv(decode=False))["error"]["code"] == "invalid_api_key"
        with pytest.raises(ConnectionClosedError):
            await ws.recv()
    assert ws.close_code == 3000
    async with connect(keyed.ws_url, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
        assert validate_server_event(await ws.recv(decode=False))["error"]["code"] == "missing_model"
        with pytest.raises(ConnectionClosedError):
            await ws.recv()


async def test_healthz_and_unknown_paths(emulator: OpenAIRealtimeEmulator) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{emulator.port}/healthz")
    assert response.status_code == 200
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://127.0.0.1:{emulator.port}/v1/chat?model={MODEL}"):
            pass
    assert refused.value.response.status_code == 404


async def test_fault_delay_ms(faulty: OpenAIRealtimeEmulator) -> None:
    faulty.faults = Faults(delay_ms=60)
    started = time.monotonic()
    async for log in open_session(client_for(faulty)):
        assert time.monotonic() - started >= 0.06
        await log.conn.input_audio_buffer.clear()
        before = time.monotonic()
        await log.until("input_audio_buffer.cleared")
        assert time.monotonic() - before >= 0.06


async def test_fault_drop_after_events(faulty: OpenAIRealtimeEmulator) -> None:
    faulty.faults = Faults(drop_after_events=3)
    async for log in open_session(client_for(faulty)):  # event 1: session.created
        await log.conn.input_audio_buffer.clear()  # event 2
        await log.conn.input_audio_buffer.clear()  # event 3, then the drop
        await log.until("input_audio_buffer.cleared")
        await log.next()
        with pytest.raises(ConnectionClosedError) as dropped:
            await log.next()
        assert dropped.value.rcvd is None  # no close frame: the TCP connection just ended
    assert faulty.connections[-1].events_sent == 3


async def test_fault_malformed_after_events(faulty: OpenAIRealtimeEmulator) -> None:
    faulty.faults = Faults(malformed_after_events=1)
    async with client_for(faulty).realtime.connect(model=MODEL) as conn:
        assert validate_server_event(await conn.recv_bytes())["type"] == "session.created"
        frame = await conn.recv_bytes()
        assert frame == MALFORMED_FRAME.encode()
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(frame)
        log = EventLog(conn)  # the connection carries on
        await conn.input_audio_buffer.clear()
        assert (await log.next())["type"] == "input_audio_buffer.cleared"


async def test_fault_reject_connect(faulty: OpenAIRealtimeEmulator) -> None:
    faulty.faults = Faults(reject_connect=503)
    with pytest.raises(InvalidStatus) as refused:
        async with client_for(faulty).realtime.connect(model=MODEL):
            pass
    assert refused.value.response.status_code == 503


async def test_fault_error_on_response(faulty: OpenAIRealtimeEmulator) -> None:
    faulty.faults = Faults(error_on_response="upstream exploded")
    async for log in open_session(client_for(faulty)):
        await log.conn.response.create()
        events = await log.until("response.done")
        assert [e["type"] for e in events] == ["response.created", "error", "response.done"]
        assert events[1]["error"]["message"] == "upstream exploded"
        response = events[2]["response"]
        assert response["status"] == "failed"
        assert response["status_details"]["type"] == "failed"
        assert response["status_details"]["error"]["message"] == "upstream exploded"


async def test_faults_from_the_query_string(faulty: OpenAIRealtimeEmulator) -> None:
    connection = client_for(faulty).realtime.connect(
        model=MODEL, extra_query={"emulator_faults": "drop_after_events:1,delay_ms:1"}
    )
    async with connection as conn:
        log = EventLog(conn)
        assert (await log.next())["type"] == "session.created"
        with pytest.raises(ConnectionClosedError):
            await log.next()
    assert faulty.connections[-1].faults == Faults(drop_after_events=1, delay_ms=1.0)
    with pytest.raises(InvalidStatus) as refused:
        async with client_for(faulty).realtime.connect(model=MODEL, extra_query={"emulator_faults": "explode:1"}):
            pass
    assert refused.value.response.status_code == 400
    with pytest.raises(InvalidStatus) as refused:
        async with client_for(faulty).realtime.connect(
            model=MODEL, extra_query={"emulator_faults": "reject_connect:429"}
        ):
            pass
    assert refused.value.response.status_code == 429
