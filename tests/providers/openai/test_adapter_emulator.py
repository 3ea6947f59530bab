"""The OpenAI adapter (provider + connection + translator) against the local OpenAI Realtime emulator.

Real sockets on loopback, both ends in this process; synchronisation only by awaiting events
(with timeouts), never by sleeping.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from audiocodecs.format import PCM16_16K, PCM16_24K, ULAW_8K
from providers.base import SessionConfig, TurnDetection, UpstreamError, UpstreamSession
from providers.emulation.faults import Faults
from providers.events import (
    AudioDelta,
    ProviderError,
    ProviderEvent,
    ResponseDone,
    ResponseStarted,
    ResponseStatus,
    SpeechStarted,
    TextDelta,
    TextDone,
)
from providers.openai.emulator import OpenAIRealtimeEmulator
from providers.openai.provider import OpenAIProvider

API_KEY = "sk-relay-test-0123456789abcdef"
EVENT_TIMEOUT_S = 10.0
CHUNK_MS = 40
BYTES_PER_MS = 48  # pcm16 mono at 24 kHz


@pytest.fixture(scope="module")
def speech_24k(audio_dir: Path) -> bytes:
    """The hello/book-a-table recording as pcm16 mono 24 kHz."""
    with wave.open(str(audio_dir / "hello-book-table-en-16k.wav"), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    resampled = soxr.resample(samples, rate, 24000)
    return np.asarray(resampled, dtype="<i2").tobytes()


@pytest.fixture
async def emulator() -> AsyncIterator[OpenAIRealtimeEmulator]:
    async with OpenAIRealtimeEmulator(host="127.0.0.1", port=0, speed=0.0, chunk_ms=CHUNK_MS) as emu:
        yield emu


def config(turn_detection: TurnDetection = TurnDetection.MANUAL, **overrides: Any) -> SessionConfig:
    fields: dict[str, Any] = {"client_input": PCM16_16K, "client_output": PCM16_24K, **overrides}
    return SessionConfig(model="gpt-realtime", turn_detection=turn_detection, **fields)


class Events:
    """Pulls from `UpstreamSession.events()` with a timeout on every await."""

    def __init__(self, session: UpstreamSession) -> None:
        self._it = aiter(session.events())
        self.seen: list[ProviderEvent] = []

    async def next(self) -> ProviderEvent:
        event = await asyncio.wait_for(anext(self._it), EVENT_TIMEOUT_S)
        self.seen.append(event)
        return event

    async def until_done(self) -> ResponseDone:
        while True:
            event = await self.next()
            if isinstance(event, ResponseDone):
                return event

    async def expect_end(self) -> None:
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(self._it), EVENT_TIMEOUT_S)

    def audio_ms(self) -> float:
        return sum(len(e.audio) for e in self.seen if isinstance(e, AudioDelta)) / BYTES_PER_MS


async def send_speech(session: UpstreamSession, audio: bytes) -> None:
    step = CHUNK_MS * BYTES_PER_MS
    for start in range(0, len(audio), step):
        await session.send_audio(audio[start : start + step])


def provider_for(emu: OpenAIRealtimeEmulator, api_key: str = API_KEY, timeout_s: float = 5.0) -> OpenAIProvider:
    return OpenAIProvider(api_key, base_url=emu.base_url, connect_timeout_s=timeout_s)


async def test_manual_audio_turn(emulator: OpenAIRealtimeEmulator, speech_24k: bytes) -> None:
    session = await provider_for(emulator).connect(config(voice="marin", instructions="Be helpful."))
    assert session.input_format == PCM16_24K and session.output_format == PCM16_24K
    conn = emulator.connections[0]
    update = await conn.wait_for_event("session.update")
    assert update["session"]["audio"]["input"]["turn_detection"] is None
    assert update["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert update["session"]["audio"]["output"]["voice"] == "marin"

    events = Events(session)
    await send_speech(session, speech_24k)
    await session.commit(respond=True)
    done = await events.until_done()
    await session.close()
    await events.expect_end()

    started = [e for e in events.seen if isinstance(e, ResponseStarted)]
    assert [s.response_id for s in started] == [done.response_id]
    assert done.status is ResponseStatus.COMPLETED
    assert done.usage.input_audio_tokens > 0 and done.usage.output_audio_tokens > 0
    input_ms = len(speech_24k) / BYTES_PER_MS
    assert 0.5 * input_ms <= events.audio_ms() <= 1.5 * input_ms
    assert all(e.response_id == done.response_id for e in events.seen if isinstance(e, AudioDelta))
    assert not [e for e in events.seen if isinstance(e, ProviderError)]
    assert conn.received_types().count("input_audio_buffer.append") == -(-len(speech_24k) // (CHUNK_MS * BYTES_PER_MS))


async def test_text_turn(emulator: OpenAIRealtimeEmulator) -> None:
    session = await provider_for(emulator).connect(config(modalities=("text",)))
    events = Events(session)
    await session.send_text("Could you book a table ", final=False, respond=True)
    await session.send_text("for two at eight?", final=True, respond=True)
    done = await events.until_done()
    await session.close()
    await events.expect_end()

    assert done.status is ResponseStatus.COMPLETED
    assert done.usage.input_text_tokens > 0 and done.usage.output_text_tokens > 0
    deltas = "".join(e.text for e in events.seen if isinstance(e, TextDelta))
    finals = [e for e in events.seen if isinstance(e, TextDone)]
    assert len(finals) == 1 and finals[0].text == deltas != ""
    assert not [e for e in events.seen if isinstance(e, AudioDelta)]
    item = await emulator.connections[0].wait_for_event("conversation.item.create")
    assert item["item"]["content"] == [{"type": "input_text", "text": "Could you book a table for two at eight?"}]


async def test_interrupt_mid_response_cancels_and_truncates(speech_24k: bytes) -> None:
    # Real-time pacing, so the response is still running when the client barges in.
    async with OpenAIRealtimeEmulator(host="127.0.0.1", port=0, speed=1.0, chunk_ms=CHUNK_MS) as emu:
        session = await provider_for(emu).connect(config())
        events = Events(session)
        await send_speech(session, speech_24k)
        await session.commit(respond=True)
        response_id = None
        while events.audio_ms() < 3 * CHUNK_MS:
            event = await events.next()
            if isinstance(event, ResponseStarted):
                response_id = event.response_id
        assert response_id is not None
        played_ms = 2 * CHUNK_MS - 7
        await session.interrupt(response_id, played_ms)
        done = await events.until_done()
        truncate = await emu.connections[0].wait_for_event("conversation.item.truncate")
        cancel = await emu.connections[0].wait_for_event("response.cancel")
        await session.close()

    assert done.response_id == response_id and done.status is ResponseStatus.CANCELLED
    assert truncate["audio_end_ms"] == played_ms and truncate["content_index"] == 0
    assert cancel.get("response_id") == response_id
    assert not [e for e in events.seen if isinstance(e, ProviderError)]


async def test_server_vad_barge_in(speech_24k: bytes) -> None:
    # Server VAD cuts the turn and answers by itself; speaking again while the answer plays
    # barges in: the server cancels the response, so the adapter only truncates (no response.cancel).
    silence = bytes(800 * BYTES_PER_MS)
    async with OpenAIRealtimeEmulator(host="127.0.0.1", port=0, speed=1.0, chunk_ms=CHUNK_MS) as emu:
        session = await provider_for(emu).connect(config(TurnDetection.SERVER_VAD))
        events = Events(session)
        await send_speech(session, speech_24k + silence)
        response_id = None
        while events.audio_ms() < 3 * CHUNK_MS:
            event = await events.next()
            if isinstance(event, ResponseStarted):
                response_id = event.response_id
        assert response_id is not None
        await send_speech(session, speech_24k[: 1000 * BYTES_PER_MS])
        while not isinstance(await events.next(), SpeechStarted):
            pass
        await session.interrupt(response_id, CHUNK_MS)
        done = await events.until_done()
        truncate = await emu.connections[0].wait_for_event("conversation.item.truncate")
        await session.close()
        received = emu.connections[0].received_types()

    assert done.response_id == response_id and done.status is ResponseStatus.CANCELLED
    assert truncate["audio_end_ms"] == CHUNK_MS
    assert "response.cancel" not in received
    assert sum(isinstance(e, SpeechStarted) for e in events.seen) == 2
    assert not [e for e in events.seen if isinstance(e, ProviderError)]


async def test_dropped_connection_fails_the_response_then_raises(
    emulator: OpenAIRealtimeEmulator, speech_24k: bytes
) -> None:
    # A clean run first, to learn where in the emulator's event sequence the response runs.
    session = await provider_for(emulator).connect(config())
    events = Events(session)
    await send_speech(session, speech_24k[: 500 * BYTES_PER_MS])
    await session.commit(respond=True)
    await events.until_done()
    await session.close()
    sent = emulator.connections[0].sent_types
    first_delta = sent.index("response.output_audio.delta")
    assert first_delta + 2 < sent.index("response.done")

    emulator.faults = Faults(drop_after_events=first_delta + 2)
    session = await provider_for(emulator).connect(config())
    events = Events(session)
    await send_speech(session, speech_24k[: 500 * BYTES_PER_MS])
    await session.commit(respond=True)
    with pytest.raises(UpstreamError) as raised:
        while True:
            await events.next()
    started = [e for e in events.seen if isinstance(e, ResponseStarted)]
    assert len(started) == 1
    assert events.seen[-1] == ResponseDone(started[0].response_id, ResponseStatus.FAILED)
    assert any(isinstance(e, AudioDelta) for e in events.seen)
    assert "connection lost" in str(raised.value)
    await session.close()  # harmless after the loss


async def test_malformed_frame_is_skipped(emulator: OpenAIRealtimeEmulator, speech_24k: bytes) -> None:
    emulator.faults = Faults(malformed_after_events=4)
    session = await provider_for(emulator).connect(config())
    events = Events(session)
    await send_speech(session, speech_24k[: 500 * BYTES_PER_MS])
    await session.commit(respond=True)
    done = await events.until_done()
    await session.close()
    assert done.status is ResponseStatus.COMPLETED


async def test_error_on_response_is_reported(emulator: OpenAIRealtimeEmulator) -> None:
    emulator.faults = Faults(error_on_response="the model is having a bad day")
    session = await provider_for(emulator).connect(config(modalities=("text",)))
    events = Events(session)
    await session.send_text("hello", final=True, respond=True)
    done = await events.until_done()
    await session.close()
    assert done.status is ResponseStatus.FAILED
    errors = [e for e in events.seen if isinstance(e, ProviderError)]
    assert errors and not errors[0].fatal and "bad day" in errors[0].message


async def test_pcmu_client_gets_pcmu_upstream(emulator: OpenAIRealtimeEmulator) -> None:
    session = await provider_for(emulator).connect(config(client_input=ULAW_8K, client_output=ULAW_8K))
    assert session.input_format == ULAW_8K == session.output_format
    update = await emulator.connections[0].wait_for_event("session.update")
    assert update["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert update["session"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    await session.close()


async def test_wrong_api_key_is_refused_without_echoing_it() -> None:
    async with OpenAIRealtimeEmulator(host="127.0.0.1", port=0, speed=0.0, api_key="sk-the-right-key-42") as emu:
        wrong = "sk-wrong-key-0123456789"
        with pytest.raises(UpstreamError) as raised:
            await provider_for(emu, api_key=wrong).connect(config())
    message = str(raised.value)
    assert wrong not in message and "0123456789" not in message and "the-right-key" not in message
    assert raised.value.retryable is False


@pytest.mark.parametrize(("status", "retryable"), [(503, True), (401, False)])
async def test_refused_handshake(emulator: OpenAIRealtimeEmulator, status: int, retryable: bool) -> None:
    emulator.faults = Faults(reject_connect=status)
    with pytest.raises(UpstreamError) as raised:
        await provider_for(emulator).connect(config())
    assert f"HTTP {status}" in str(raised.value) and API_KEY not in str(raised.value)
    assert raised.value.retryable is retryable


async def test_setup_timeout(emulator: OpenAIRealtimeEmulator) -> None:
    emulator.faults = Faults(delay_ms=600)  # before every server event, session.created included
    with pytest.raises(UpstreamError, match=r"did not get ready within 0\.2 s"):
        await provider_for(emulator, timeout_s=0.2).connect(config())


async def test_nothing_listening() -> None:
    emu = OpenAIRealtimeEmulator(host="127.0.0.1", port=0)
    await emu.start()
    base_url = emu.base_url
    await emu.stop()
    with pytest.raises(UpstreamError, match="could not connect to OpenAI"):
        await OpenAIProvider(API_KEY, base_url=base_url, connect_timeout_s=5.0).connect(config())
