"""End to end through a real relay (uvicorn, ephemeral port) and its OpenAI emulator: what the
conformance suite cannot see from outside — what reached the provider, the metering sink and the
relay's queues."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from providers.emulation.faults import Faults
from relay.session import Session
from tests.conformance.client import Event, RelayClient
from tests.relay.conftest import RunningRelay, relay_settings, start_relay, stop_relay

LONG_TEXT = "The quick brown fox jumps over the lazy dog. " * 4


@pytest.fixture
def emulator_speed(relay: RunningRelay) -> Iterator[None]:
    """Real-time pacing for tests that must act while a response is still streaming."""
    emulator = relay.emulator
    emulator.speed = 1.0
    try:
        yield
    finally:
        emulator.speed = 0.0


@pytest.fixture
def faults(relay: RunningRelay) -> Iterator[Faults]:
    emulator = relay.emulator
    emulator.faults = Faults()
    try:
        yield emulator.faults
    finally:
        emulator.faults = Faults()


async def _session(relay: RunningRelay, **start: object) -> RelayClient:
    client = await RelayClient.connect(relay.url)
    await client.start(**start)
    return client


async def test_usage_of_each_response_reaches_the_sink_as_reported(relay: RunningRelay) -> None:
    client = await _session(relay, modalities=["audio"], metadata={"user": "u-42"})
    await client.send({"type": "text", "text": "Hello relay"})
    response, _ = await client.collect_response()
    assert response.done is not None
    reported = response.done["usage"]
    event = await relay.sink.wait_for(lambda e: e.response_id == response.response_id)
    assert event.usage.to_dict() == reported
    assert event.tenant == "local" and event.provider == "openai" and event.metadata == {"user": "u-42"}
    assert reported["output_audio_tokens"] > 0 and reported["audio_out_ms"] > 0
    ended, _ = await client.end()
    summary = await relay.sink.wait_for(lambda e: e.kind == "session" and e.session_id == client.session["session_id"])  # type: ignore[index]
    assert summary.usage.to_dict() == ended["usage"]


async def test_barge_in_truncates_the_provider_turn_at_played_ms(relay: RunningRelay, emulator_speed: None) -> None:
    client = await _session(relay)
    await client.send({"type": "text", "text": LONG_TEXT})
    # Wait for 200 ms of audio (24 kHz pcm16): the client cannot have played more than it received,
    # and the relay never truncates past what the provider produced.
    received = bytearray()

    def enough(e: Event) -> bool:
        if e.type == "audio":
            received.extend(e.audio)
        return len(received) >= 9600

    started = await client.collect_until(enough, what="200 ms of audio")
    rid = next(e["response_id"] for e in started if e.type == "response.started")
    await client.send({"type": "playback", "response_id": rid, "played_ms": 120})
    await client.send({"type": "response.cancel"})
    events = await client.collect_until(lambda e: e.type == "response.done", what="response.done")
    assert events[-1]["status"] == "cancelled"
    truncate = await relay.emulator.wait_for_event("conversation.item.truncate")
    assert truncate["audio_end_ms"] == 120
    assert "response.cancel" in relay.emulator.connections[-1].received_types()
    after = await client.ping()
    assert not [e for e in after if e.type == "audio"], "audio of a cancelled response after response.done"
    await client.end()


async def test_upstream_dying_mid_response_reports_usage_then_1014(relay: RunningRelay, faults: Faults) -> None:
    faults.drop_after_events = 14  # session.created/updated, item added/done, response.created, … a few deltas
    client = await _session(relay)
    await client.send({"type": "text", "text": LONG_TEXT})
    events = await client.until_closed()
    assert client.close_code == 1014
    kinds = [e.type for e in events]
    assert "audio" in kinds, kinds
    done = next(e for e in events if e.type == "response.done")
    assert done["status"] == "failed" and done["usage"]["audio_out_ms"] > 0
    error = next(e for e in events if e.type == "error")
    assert error["code"] == "upstream_error" and error["fatal"] is True
    assert kinds.index("response.done") < kinds.index("error") < kinds.index("session.ended")
    metered = await relay.sink.wait_for(lambda e: e.response_id == done["response_id"])
    assert metered.status == "failed" and metered.usage.audio_out_ms == done["usage"]["audio_out_ms"]


async def test_client_vanishing_mid_response_still_meters_it(relay: RunningRelay, emulator_speed: None) -> None:
    client = await _session(relay)
    await client.send({"type": "text", "text": LONG_TEXT})
    await client.collect_until(lambda e: e.type == "audio", what="first audio")
    session_id = client.session["session_id"]  # type: ignore[index]
    client.ws.transport.abort()  # no close frame: the client is simply gone
    metered = await relay.sink.wait_for(lambda e: e.session_id == session_id and e.kind == "response")
    assert metered.status == "cancelled" and metered.usage.output_audio_tokens > 0
    await relay.sink.wait_for(lambda e: e.session_id == session_id and e.kind == "session")


async def test_upstream_refused_without_fallback_is_1014(relay: RunningRelay, faults: Faults) -> None:
    faults.reject_connect = 503
    client = await RelayClient.connect(relay.url)
    await client.send({"type": "session.start", "provider": "openai"})
    events = await client.until_closed()
    assert client.close_code == 1014
    error = next(e for e in events if e.type == "error")
    assert error["code"] == "upstream_error" and "emulated-no-key" not in error["message"]


# -- relays of their own: admission limits, fallback, draining, bugs --------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def small_relay() -> AsyncIterator[RunningRelay]:
    running = await start_relay(
        relay_settings(
            outbound_high_water_ms=200,
            outbound_hard_limit_ms=400,
            backpressure_max_wait_ms=100,
            max_sessions=2,
            tenant_max_sessions=1,
            drain_timeout_s=0.5,
        )
    )
    yield running
    await stop_relay(running)


def _tiny_receive_buffer_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_slow_client_keeps_memory_bounded_and_counts_drops(small_relay: RunningRelay) -> None:
    ws = await connect(
        small_relay.url, sock=_tiny_receive_buffer_socket(small_relay.port), max_queue=1, compression=None
    )
    client = RelayClient(ws, "relay.v1.json")
    await client.start(output_audio={"encoding": "f32", "sample_rate": 48000, "channels": 1})
    await client.send({"type": "text", "text": LONG_TEXT * 5})
    # Read nothing while the provider produces ~70 s of audio (13 MB at 48 kHz f32).
    metered = await small_relay.sink.wait_for(lambda e: e.kind == "response", timeout_s=30)
    session = next(s for s in small_relay.state.registry.sessions() if isinstance(s, Session))
    queue = session.outbound
    assert queue.dropped_ms > 0 and queue.dropped_frames > 0
    assert queue.peak_audio_ms <= queue.hard_limit_ms + 100, queue.peak_audio_ms
    events = await client.collect_until(lambda e: e.type == "response.done", wait_s=30, what="response.done")
    received_ms = sum(len(e.audio) for e in events if e.type == "audio") / (48000 * 4) * 1000
    produced_ms = metered.usage.audio_out_ms
    assert received_ms + queue.dropped_ms == pytest.approx(produced_ms, abs=50)
    await client.end()
    metrics = await asyncio.to_thread(_get, f"{small_relay.http}/metrics")
    assert "relay_dropped_audio_ms_total" in metrics


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as reply:
        body: bytes = reply.read()
        return body.decode()


async def test_tenant_cap_refuses_at_handshake_and_capacity_closes_1013(small_relay: RunningRelay) -> None:
    from websockets.exceptions import InvalidStatus

    first = await _session(small_relay)
    with pytest.raises(InvalidStatus) as refused:
        await RelayClient.connect(small_relay.url)
    assert refused.value.response.status_code == 429
    await first.end()
    # Capacity is per process, across tenants: fill it by hand to see 1013.
    small_relay.state.registry.max_sessions = 0
    try:
        client = await RelayClient.connect(small_relay.url)
        await client.until_closed()
        assert client.close_code == 1013
    finally:
        small_relay.state.registry.max_sessions = 2


async def test_fallback_provider_takes_over_when_the_primary_refuses(relay: RunningRelay, faults: Faults) -> None:
    from providers.openai.emulator import OpenAIRealtimeEmulator
    from providers.openai.provider import OpenAIProvider

    async with OpenAIRealtimeEmulator() as backup:
        provider = OpenAIProvider(api_key="k", base_url=backup.base_url)
        provider.name = "openai-backup"
        relay.state.directory.add(provider)
        faults.reject_connect = 503
        client = await RelayClient.connect(relay.url)
        started = await client.start(provider="openai", fallback=["openai-backup"])
        assert started["provider"] == "openai-backup"
        await client.send({"type": "text", "text": "hi"})
        response, _ = await client.collect_response()
        assert response.status == "completed"
        await client.end()


async def test_drain_ends_sessions_with_server_restart_and_1012() -> None:
    running = await start_relay(relay_settings(drain_timeout_s=0.2))
    client = await _session(running)
    running.server.should_exit = True
    events = await client.until_closed()
    assert client.close_code == 1012
    assert events[-1].type == "session.ended" and events[-1]["reason"] == "server_restart"
    await running._task  # type: ignore[attr-defined]


async def test_a_bug_closes_1011_without_details(relay: RunningRelay) -> None:
    from tests.relay.buggy import BuggyProvider

    relay.state.directory.add(BuggyProvider())
    client = await RelayClient.connect(relay.url)
    await client.start(provider="buggy")
    events = await client.until_closed()
    assert client.close_code == 1011
    error = next(e for e in events if e.type == "error")
    assert "secret internals" not in error["message"] and "Traceback" not in error["message"]
