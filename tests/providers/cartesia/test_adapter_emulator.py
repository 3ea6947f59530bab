"""The Cartesia adapter (provider + connection + translator) against the local Cartesia emulator.

Real sockets on loopback, both ends in this process; synchronisation only by awaiting events
(with timeouts), never by sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from audiocodecs.format import PCM16_16K, PCM16_24K, ULAW_8K, AudioFormat, Encoding
from audiocodecs.g711 import ulaw_encode
from audiocodecs.pcm import pcm16_to_f32
from providers.base import SessionConfig, UpstreamError, UpstreamSession
from providers.cartesia.emulator import CartesiaEmulator
from providers.cartesia.emulator_context import ContextState
from providers.cartesia.provider import CartesiaProvider
from providers.emulation import synth
from providers.emulation.faults import Faults
from providers.events import (
    Alignment,
    AudioDelta,
    ProviderError,
    ProviderEvent,
    ResponseDone,
    ResponseStarted,
    ResponseStatus,
)
from tests.providers.cartesia.conftest import API_KEY
from tests.providers.cartesia.harness import open_pair

EVENT_TIMEOUT_S = 5.0
PIECES = ("Hello there, ", "this is ", "stream", "ed text ", "from an LLM.")
TEXT = "".join(PIECES)


@pytest.fixture
async def emulator() -> AsyncIterator[CartesiaEmulator]:
    async with CartesiaEmulator(speed=0.0, api_key=API_KEY) as emu:
        yield emu


def config(client_output: AudioFormat = PCM16_24K, **overrides: Any) -> SessionConfig:
    return SessionConfig(model="sonic-3.5", client_input=PCM16_16K, client_output=client_output, **overrides)


def provider_for(emu: CartesiaEmulator, api_key: str = API_KEY, **options: Any) -> CartesiaProvider:
    return CartesiaProvider(api_key, base_url=emu.base_url, connect_timeout_s=5.0, **options)


class Events:
    """Pulls from `UpstreamSession.events()` with a timeout on every await."""

    def __init__(self, session: UpstreamSession) -> None:
        self._it = aiter(session.events())
        self.seen: list[ProviderEvent] = []

    async def next(self) -> ProviderEvent:
        event = await asyncio.wait_for(anext(self._it), EVENT_TIMEOUT_S)
        self.seen.append(event)
        return event

    async def until(self, kind: type[Any], response_id: str | None = None) -> Any:
        while True:
            event = await self.next()
            if isinstance(event, kind) and (response_id is None or getattr(event, "response_id", None) == response_id):
                return event

    async def expect_end(self) -> None:
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(self._it), EVENT_TIMEOUT_S)

    def audio(self, response_id: str) -> bytes:
        return b"".join(e.audio for e in self.seen if isinstance(e, AudioDelta) and e.response_id == response_id)

    def of(self, kind: type[Any], response_id: str) -> list[Any]:
        return [e for e in self.seen if isinstance(e, kind) and getattr(e, "response_id", None) == response_id]


async def stream(session: UpstreamSession, pieces: tuple[str, ...] = PIECES) -> None:
    for n, piece in enumerate(pieces):
        await session.send_text(piece, final=n == len(pieces) - 1, respond=True)


async def test_streamed_pieces_make_one_response(emulator: CartesiaEmulator) -> None:
    session = await provider_for(emulator).connect(config())
    assert session.output_format == PCM16_24K and session.input_format == PCM16_16K
    events = Events(session)
    await stream(session)
    done = await events.until(ResponseDone)
    await session.close()
    await events.expect_end()

    rid = done.response_id
    assert [e.response_id for e in events.seen if isinstance(e, ResponseStarted)] == [rid]
    assert done.status is ResponseStatus.COMPLETED
    assert done.usage.characters == len(TEXT) == emulator.billed_characters
    # The audio is exactly the synthesizer's rendering of the whole text, in order.
    audio = np.frombuffer(events.audio(rid), dtype="<i2")
    assert audio.size * 1000 // 24000 == synth.duration_ms(TEXT)
    assert np.array_equal(audio, synth.synthesize(TEXT, 24000))
    # Word alignment covers the text in order, at the synthesizer's character times.
    alignments = events.of(Alignment, rid)
    words = [w for a in alignments for w in a.words]
    starts = [s for a in alignments for s in a.start_ms]
    durations = [d for a in alignments for d in a.duration_ms]
    assert words == TEXT.split()
    position = 0
    for word, start, duration in zip(words, starts, durations, strict=True):
        position = TEXT.index(word, position)
        assert (start, duration) == (position * synth.CHAR_MS, len(word) * synth.CHAR_MS)
        position += len(word)
    # One context, the pieces sent as they came, the last one closing it.
    received = emulator.connections[0].received
    assert [(m["transcript"], m["continue"]) for m in received] == [(p, p != PIECES[-1]) for p in PIECES]
    assert {m["context_id"] for m in received} == {rid}
    assert received[0]["voice"] == {"mode": "id", "id": "a0e99841-438c-4a64-b679-ae501e7d6091"}


@pytest.mark.parametrize(
    ("client", "wire"),
    [
        (ULAW_8K, {"encoding": "pcm_mulaw", "sample_rate": 8000}),
        (AudioFormat(Encoding.F32, 44100), {"encoding": "pcm_f32le", "sample_rate": 44100}),
    ],
)
async def test_output_in_the_clients_own_format(
    emulator: CartesiaEmulator, client: AudioFormat, wire: dict[str, Any]
) -> None:
    session = await provider_for(emulator).connect(config(client, voice="custom-voice"))
    assert session.output_format == client  # nothing for the session to convert
    events = Events(session)
    await session.send_text("Table for two.", final=True, respond=True)
    done = await events.until(ResponseDone)
    await session.close()
    request = emulator.connections[0].received[0]
    assert request["output_format"] == {"container": "raw", **wire}
    assert request["voice"]["id"] == "custom-voice"
    samples = synth.synthesize("Table for two.", client.sample_rate)
    expected = (
        ulaw_encode(samples) if client.encoding is Encoding.ULAW else pcm16_to_f32(samples).astype("<f4").tobytes()
    )
    assert events.audio(done.response_id) == expected  # bit-exact: rendered at that rate, never resampled


async def test_cancel_mid_utterance_ends_it_at_once() -> None:
    async with open_pair(speed=1.0) as (provider, emulator):
        session = await provider.connect(config())
        events = Events(session)
        long_text = "This answer is long enough to take several seconds to speak at real time."
        await session.send_text(long_text, final=True, respond=True)
        first = await events.until(AudioDelta)
        rid = first.response_id
        await session.interrupt(rid, played_ms=40)
        done = await events.until(ResponseDone)
        assert (done.response_id, done.status) == (rid, ResponseStatus.CANCELLED)
        assert done.usage.characters == len(long_text)
        cancel = await emulator.wait_for_event("cancel")
        assert cancel == {"type": "cancel", "context_id": rid, "cancel": True}

        # The session goes on: the next utterance is a new context, and nothing of the old one follows.
        await session.send_text("Okay.", final=True, respond=True)
        nxt = await events.until(ResponseDone)
        await session.close()
        assert nxt.response_id != rid and nxt.status is ResponseStatus.COMPLETED
        after = events.seen[events.seen.index(done) + 1 :]
        assert not [e for e in after if getattr(e, "response_id", None) == rid]
        context = emulator.connections[0].contexts[rid]
        assert context.state is ContextState.CANCELLED
        assert 0 < context.audio_ms < synth.duration_ms(long_text) / 2  # stopped early, not played out


async def test_utterances_never_interleave(emulator: CartesiaEmulator) -> None:
    emulator.max_contexts = 1  # one context at a time is all the adapter ever holds
    session = await provider_for(emulator).connect(config())
    events = Events(session)
    await session.send_text("First one.", final=True, respond=True)
    await session.send_text("Second ", final=False, respond=True)
    await session.send_text("one.", final=True, respond=True)
    first = await events.until(ResponseDone)
    second = await events.until(ResponseDone)
    await session.close()
    assert first.status is second.status is ResponseStatus.COMPLETED
    order = [(type(e).__name__, e.response_id) for e in events.seen if isinstance(e, ResponseStarted | ResponseDone)]
    assert order == [
        ("ResponseStarted", first.response_id),
        ("ResponseDone", first.response_id),
        ("ResponseStarted", second.response_id),
        ("ResponseDone", second.response_id),
    ]
    assert (first.usage.characters, second.usage.characters) == (10, 11)


async def test_create_response_flushes_a_dangling_word(emulator: CartesiaEmulator) -> None:
    session = await provider_for(emulator).connect(config())
    events = Events(session)
    await session.send_text("Thinking", final=False, respond=True)  # no word boundary: the service buffers it
    await session.create_response()
    await events.until(AudioDelta)  # the flush made it speak now, not after the 3 s buffer delay
    await session.send_text("", final=True, respond=True)
    done = await events.until(ResponseDone)
    await session.close()
    assert done.usage.characters == len("Thinking")
    received = emulator.connections[0].received
    assert [(m["transcript"], m["continue"], m.get("flush")) for m in received] == [
        ("Thinking", True, None),
        ("", True, True),
        ("", False, None),
    ]


async def test_a_refused_context_fails_its_response_only(emulator: CartesiaEmulator) -> None:
    emulator.faults = Faults(error_on_response="synthesis backend unavailable")
    session = await provider_for(emulator).connect(config())
    events = Events(session)
    await session.send_text("Hello.", final=True, respond=True)
    error = await events.until(ProviderError)
    done = await events.until(ResponseDone)
    assert (error.code, error.fatal) == ("internal_error", False)
    assert "synthesis backend unavailable" in error.message
    assert done.status is ResponseStatus.FAILED and done.usage.characters == 0  # errors are not billed
    emulator.connections[0].faults = Faults()
    await session.send_text("Again.", final=True, respond=True)
    assert (await events.until(ResponseDone)).status is ResponseStatus.COMPLETED
    await session.close()


async def test_429_at_connect_is_retryable(emulator: CartesiaEmulator) -> None:
    emulator.max_connections = 1
    provider = provider_for(emulator)
    first = await provider.connect(config())
    with pytest.raises(UpstreamError) as refused:
        await provider.connect(config())
    assert refused.value.retryable and refused.value.code == "concurrency_limited"
    assert "concurrency" in str(refused.value)
    await first.close()
    # The plain-text 429 of an older version (or a gateway) means the same.
    emulator.max_connections = None
    emulator.faults = Faults(reject_connect=429)
    with pytest.raises(UpstreamError) as refused:
        await provider.connect(config())
    assert refused.value.retryable and refused.value.code == "concurrency_limited"


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_key_is_permanent_and_secret(emulator: CartesiaEmulator, status: int) -> None:
    secret = "sk_car_wrong-secret-key-42"
    if status == 403:
        emulator.faults = Faults(reject_connect=403)
    with pytest.raises(UpstreamError) as refused:
        await provider_for(emulator, api_key=secret).connect(config())
    assert not refused.value.retryable
    assert f"HTTP {status}" in str(refused.value)
    for text in (str(refused.value), repr(refused.value), *map(str, refused.value.args)):
        assert "wrong-secret" not in text


async def test_upstream_drop_mid_utterance_fails_it_then_raises(emulator: CartesiaEmulator) -> None:
    emulator.faults = Faults(drop_after_events=3)  # a chunk, its timestamps, a chunk: then the TCP connection goes
    session = await provider_for(emulator).connect(config())
    events = Events(session)
    await session.send_text("Hello ", final=False, respond=True)
    await session.send_text("world, how are you?", final=True, respond=True)
    with pytest.raises(UpstreamError) as lost:
        while True:
            await events.next()
    assert lost.value.retryable and "lost" in str(lost.value)
    done = [e for e in events.seen if isinstance(e, ResponseDone)]
    assert len(done) == 1 and done[0].status is ResponseStatus.FAILED
    assert done[0].usage.characters == len("Hello world, how are you?")
    assert events.seen[-1] is done[0] and any(isinstance(e, AudioDelta) for e in events.seen)
    # Intents after the failure are dropped, not raised (the failure was reported once, by events()).
    await session.send_text("ignored", final=True, respond=True)
    await session.close()


async def test_idle_close_reopens_on_the_next_utterance(emulator: CartesiaEmulator) -> None:
    emulator.idle_timeout_s = 0.05  # the service closes sockets idle for 5 minutes
    session = await provider_for(emulator).connect(config())
    events = Events(session)
    await session.send_text("Before.", final=True, respond=True)
    assert (await events.until(ResponseDone)).status is ResponseStatus.COMPLETED
    await asyncio.wait_for(emulator.connections[0].ws.wait_closed(), EVENT_TIMEOUT_S)
    assert emulator.connections[0].ws.close_code == 1000
    await session.send_text("After.", final=True, respond=True)
    done = await events.until(ResponseDone)
    await session.close()
    await events.expect_end()
    assert done.status is ResponseStatus.COMPLETED and len(emulator.connections) == 2


async def test_tls_with_the_callers_trust() -> None:
    async with CartesiaEmulator(tls=True) as emulator:
        assert emulator.base_url.startswith("https://")
        trusted = provider_for(emulator, ssl_context=emulator.client_ssl_context())
        session = await trusted.connect(config())
        events = Events(session)
        await session.send_text("Secure.", final=True, respond=True)
        assert (await events.until(ResponseDone)).status is ResponseStatus.COMPLETED
        await session.close()
        with pytest.raises(UpstreamError) as refused:  # the system's trust store does not know this certificate
            await provider_for(emulator).connect(config())
        assert "SSL" in str(refused.value) or "certificate" in str(refused.value)


async def test_newer_version_and_provider_options(emulator: CartesiaEmulator) -> None:
    provider = provider_for(emulator, cartesia_version="2026-08-14", language="de", max_buffer_delay_ms=0)
    session = await provider.connect(config())
    events = Events(session)
    await session.send_text("Gut", final=False, respond=True)
    await events.until(AudioDelta)  # max_buffer_delay_ms 0: spoken at once, no word boundary needed
    await session.send_text("en Tag.", final=True, respond=True)
    await events.until(ResponseDone)
    await session.close()
    request = emulator.connections[0].received[0]
    assert request["voice"] == {"id": "a0e99841-438c-4a64-b679-ae501e7d6091"}
    assert (request["language"], request["max_buffer_delay_ms"]) == ("de", 0)
    assert emulator.connections[0].version == "2026-08-14"


async def test_tts_ignores_audio_and_close_ends_events(emulator: CartesiaEmulator) -> None:
    session = await provider_for(emulator).connect(config())
    events = Events(session)
    await session.send_audio(b"\x00\x01" * 160)
    await session.commit(respond=True)
    await session.send_tool_result("call_1", "{}")
    await session.update(instructions="ignored", voice=None, tools=None)
    await session.interrupt(None, 100)
    await session.close()
    await session.close()  # idempotent
    await events.expect_end()
    assert emulator.connections[0].received == []
    with pytest.raises(RuntimeError):
        await anext(aiter(session.events()))  # one iteration per session


async def test_missing_key_is_refused_before_connecting() -> None:
    with pytest.raises(UpstreamError) as refused:
        await CartesiaProvider("", base_url="http://127.0.0.1:9").connect(config())
    assert not refused.value.retryable


async def test_unreachable_service_is_retryable() -> None:
    async with CartesiaEmulator() as emulator:
        base_url = emulator.base_url
    with pytest.raises(UpstreamError) as refused:  # the port is closed now
        await CartesiaProvider(API_KEY, base_url=base_url, connect_timeout_s=2.0).connect(config())
    assert refused.value.retryable and API_KEY not in str(refused.value)
