"""The Gemini adapter (provider + connection + translator) against the local Gemini emulator.

Real sockets on loopback, both ends in this process; synchronisation only by awaiting events or
emulator state (with timeouts), never by sleeping.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson
import pytest

from audiocodecs.format import PCM16_16K, PCM16_24K
from providers.base import SessionConfig, TurnDetection, UpstreamError
from providers.emulation import synth
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
    ToolCall,
    TranscriptDelta,
    TranscriptDone,
    Usage,
)
from providers.gemini.connection import MAX_HELD_AUDIO_MS, GeminiUpstreamSession
from providers.gemini.emulator import GeminiEmulator
from providers.gemini.emulator_protocol import GeminiFaults
from providers.gemini.emulator_turn import audio_tokens, text_tokens
from providers.gemini.provider import GeminiProvider
from providers.gemini.wire import normalize_usage
from tests.providers.gemini.conftest import IN_RATE, chunks, load_audio, silence

API_KEY = "AIzaSy-relay-test-0123456789abcdefghij"
MODEL = "gemini-live-2.5-flash-preview"
EVENT_TIMEOUT_S = 10.0
OUT_BYTES_PER_MS = 48  # pcm16 mono at 24 kHz
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def config(turn_detection: TurnDetection = TurnDetection.SERVER_VAD, **overrides: Any) -> SessionConfig:
    fields: dict[str, Any] = {"client_input": PCM16_16K, "client_output": PCM16_24K, **overrides}
    return SessionConfig(model=MODEL, turn_detection=turn_detection, **fields)


def provider_for(emu: GeminiEmulator, api_key: str = API_KEY, **options: Any) -> GeminiProvider:
    options.setdefault("connect_timeout_s", 5.0)
    return GeminiProvider(api_key, base_url=emu.base_url, **options)


async def connect(emu: GeminiEmulator, cfg: SessionConfig | None = None, **options: Any) -> GeminiUpstreamSession:
    upstream = await provider_for(emu, **options).connect(cfg or config())
    assert isinstance(upstream, GeminiUpstreamSession)
    return upstream


class Events:
    """Pulls from `UpstreamSession.events()` with a timeout on every await."""

    def __init__(self, session: GeminiUpstreamSession) -> None:
        self._it = aiter(session.events())
        self.seen: list[ProviderEvent] = []

    async def next(self) -> ProviderEvent:
        event = await asyncio.wait_for(anext(self._it), EVENT_TIMEOUT_S)
        self.seen.append(event)
        return event

    async def until(self, kind: type[Any]) -> Any:
        while True:
            event = await self.next()
            if isinstance(event, kind):
                return event

    async def until_done(self) -> ResponseDone:
        done: ResponseDone = await self.until(ResponseDone)
        return done

    async def expect_end(self) -> None:
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(self._it), EVENT_TIMEOUT_S)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.seen if isinstance(e, kind)]

    def audio_ms(self, response_id: str | None = None) -> float:
        deltas = [e for e in self.of(AudioDelta) if response_id is None or e.response_id == response_id]
        return sum(len(e.audio) for e in deltas) / OUT_BYTES_PER_MS


async def send(session: GeminiUpstreamSession, samples: np.ndarray[Any, Any], ms: int = 40) -> int:
    frames = chunks(samples, ms)
    for frame in frames:
        await session.send_audio(frame)
    return len(frames)


def speech_turn(name: str = "hello-book-table-en-16k.wav", pause_ms: int = 1000) -> np.ndarray[Any, Any]:
    return np.concatenate([load_audio(name), silence(pause_ms)])


def emulator_usage(emu: GeminiEmulator) -> Usage:
    """What the emulator reported, counted once per turn (its final snapshot, at turnComplete)."""
    total = Usage()
    for conn in emu.connections:
        for frame in conn.sent_frames:
            message = orjson.loads(frame)
            if message.get("serverContent", {}).get("turnComplete"):
                total.add(normalize_usage(message.get("usageMetadata"), audio_out=True))
    return total


def total_usage(events: Events) -> Usage:
    total = Usage()
    for done in events.of(ResponseDone):
        total.add(done.usage)
    return total


@pytest.fixture
async def emulator() -> AsyncIterator[GeminiEmulator]:
    async with GeminiEmulator(speed=0.0) as emu:
        yield emu


@pytest.fixture
async def paced() -> AsyncIterator[GeminiEmulator]:
    """4x real time: a response lasts long enough to interrupt it."""
    async with GeminiEmulator(speed=4.0) as emu:
        yield emu


# -- turns ------------------------------------------------------------------------------------------


async def test_audio_turn_is_echoed(emulator: GeminiEmulator) -> None:
    session = await connect(emulator, config(voice="Kore", instructions="Be helpful."))
    assert session.input_format == PCM16_16K and session.output_format == PCM16_24K
    events = Events(session)
    speech = speech_turn()
    frames = await send(session, speech)
    done = await events.until_done()
    await session.close()
    await events.expect_end()

    conn = emulator.connections[0]
    setup = (await conn.wait_for_event("setup"))["setup"]
    assert setup["model"] == f"models/{MODEL}" and setup["sessionResumption"] == {}
    assert setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] == "Kore"
    assert setup["systemInstruction"]["parts"] == [{"text": "Be helpful."}]
    assert conn.ws.request is not None and conn.ws.request.headers["x-goog-api-key"] == API_KEY
    assert conn.received_types().count("realtimeInput.audio") == frames

    assert [e.response_id for e in events.of(ResponseStarted)] == [done.response_id]
    assert done.status is ResponseStatus.COMPLETED
    speech_ms = speech.size * 1000 / IN_RATE
    assert speech_ms - 1000 <= events.audio_ms() <= speech_ms
    assert all(e.response_id == done.response_id for e in events.of(AudioDelta))
    echo_ms = round(events.audio_ms())
    assert done.usage == Usage(
        input_text_tokens=text_tokens("Be helpful."), input_audio_tokens=audio_tokens(echo_ms),
        output_audio_tokens=audio_tokens(echo_ms),
    )  # fmt: skip
    said = "".join(e.text for e in events.of(TranscriptDelta) if e.role == "assistant")
    assert said == f"Echo of {echo_ms / 1000:.1f} s of your audio."
    assert {e.role: e.text for e in events.of(TranscriptDone)} == {
        "user": f"[{echo_ms / 1000:.1f} s of speech]",
        "assistant": said,
    }
    assert not events.of(ProviderError)


async def test_manual_turn(emulator: GeminiEmulator) -> None:
    session = await connect(emulator, config(TurnDetection.MANUAL))
    events = Events(session)
    speech = load_audio("weather-paris-en-16k.wav")
    frames = await send(session, speech)
    await session.commit(respond=True)
    done = await events.until_done()
    await session.send_text("and tomorrow?", final=True, respond=True)
    second = await events.until_done()
    await session.close()

    conn = emulator.connections[0]
    received = conn.received_types()
    assert received[:2] == ["setup", "realtimeInput.activityStart"]
    assert received[2 : 2 + frames] == ["realtimeInput.audio"] * frames
    assert received[2 + frames :] == ["realtimeInput.activityEnd", "realtimeInput.text"]
    setup = (await conn.wait_for_event("setup"))["setup"]
    assert setup["realtimeInputConfig"] == {"automaticActivityDetection": {"disabled": True}}
    assert done.status is ResponseStatus.COMPLETED
    # no VAD: the answer echoes exactly the activity's audio
    assert events.audio_ms(done.response_id) == pytest.approx(speech.size * 1000 / IN_RATE, abs=1)
    assert events.audio_ms(second.response_id) == synth.duration_ms("and tomorrow?")


async def test_text_turn_in_text_modality(emulator: GeminiEmulator) -> None:
    session = await connect(emulator, config(modalities=("text",)))
    events = Events(session)
    await session.send_text("Could you book a table ", final=False, respond=True)
    await session.send_text("for two at eight?", final=True, respond=True)
    done = await events.until_done()
    await session.send_text("Held back.", final=True, respond=False)
    await session.create_response()
    second = await events.until_done()
    await session.close()

    text = "Could you book a table for two at eight?"
    assert "".join(e.text for e in events.of(TextDelta) if e.response_id == done.response_id) == text
    assert [e.text for e in events.of(TextDone)] == [text, "Held back."]
    assert not events.of(AudioDelta)
    assert done.usage == Usage(input_text_tokens=text_tokens(text), output_text_tokens=sum(
        text_tokens(w) for w in ("Could ", "you ", "book ", "a ", "table ", "for ", "two ", "at ", "eight?")
    ))  # fmt: skip
    assert second.status is ResponseStatus.COMPLETED
    texts = [e["realtimeInput"]["text"] for e in emulator.connections[0].received if e["type"] == "realtimeInput.text"]
    assert texts == [text, "Held back."]


async def test_tool_call_round_trip(emulator: GeminiEmulator) -> None:
    session = await connect(emulator, config(tools=(WEATHER,)))
    events = Events(session)
    await session.send_text("Please call get_weather for Paris", final=True, respond=True)
    call = await events.until(ToolCall)
    first = await events.until_done()  # the response that carried the call ends with it
    assert first.response_id == call.response_id
    assert (call.name, orjson.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    await session.send_tool_result(call.call_id, '{"sky": "clear"}')
    second = await events.until_done()
    await session.close()

    assert second.response_id != first.response_id and second.status is ResponseStatus.COMPLETED
    assert events.audio_ms(second.response_id) == synth.duration_ms('{"sky":"clear"}')
    response = next(e for e in emulator.connections[0].received if e["type"] == "toolResponse")
    assert response["toolResponse"]["functionResponses"] == [
        {"id": call.call_id, "name": "get_weather", "response": {"output": {"sky": "clear"}}}
    ]
    setup = (await emulator.connections[0].wait_for_event("setup"))["setup"]
    assert setup["tools"][0]["functionDeclarations"][0]["parameters"]["properties"] == {"city": {"type": "STRING"}}
    assert total_usage(events) == emulator_usage(emulator)  # the turn's usage, on the second response


async def test_usage_is_counted_once_per_turn(emulator: GeminiEmulator) -> None:
    # The emulator repeats each turn's usage snapshot (generationComplete, then turnComplete).
    session = await connect(emulator)
    events = Events(session)
    for _ in range(2):
        await send(session, speech_turn("weather-paris-en-16k.wav"))
        await events.until_done()
    await session.send_text("and a text turn", final=True, respond=True)
    await events.until_done()
    await session.close()

    repeats = sum(1 for conn in emulator.connections for frame in conn.sent_frames if b'"usageMetadata"' in frame)
    assert repeats == 6  # two per turn
    reported = total_usage(events)
    assert reported == emulator_usage(emulator)
    assert reported.input_audio_tokens > 0 and reported.output_audio_tokens > 0


# -- barge-in -----------------------------------------------------------------------------------------


async def test_barge_in_by_server_vad(paced: GeminiEmulator) -> None:
    session = await connect(paced)
    events = Events(session)
    speech = load_audio("hello-book-table-en-16k.wav")
    await send(session, np.concatenate([speech, silence(800)]))
    started = await events.until(ResponseStarted)
    await events.until(AudioDelta)
    await send(session, speech[:IN_RATE])  # the user talks over the answer
    await events.until(SpeechStarted)
    done = await events.until_done()  # at once, before anything else of the new turn
    assert (done.response_id, done.status) == (started.response_id, ResponseStatus.CANCELLED)
    await send(session, silence(800))  # … and stops: that second turn is answered
    second = await events.until_done()
    await session.close()

    barge = events.seen.index(done)
    assert not [e for e in events.seen[barge:] if isinstance(e, AudioDelta) and e.response_id == done.response_id]
    assert second.status is ResponseStatus.COMPLETED and second.response_id != done.response_id
    assert total_usage(events) == emulator_usage(paced)  # the interrupted turn's usage rode on the next response


async def test_client_interrupt_ends_the_response_at_once(paced: GeminiEmulator) -> None:
    session = await connect(paced, config(TurnDetection.MANUAL))
    events = Events(session)
    await send(session, load_audio("hello-book-table-en-16k.wav"))
    await session.commit(respond=True)
    started = await events.until(ResponseStarted)
    await events.until(AudioDelta)
    await session.interrupt(started.response_id, played_ms=40)
    done = await events.until_done()
    assert (done.response_id, done.status) == (started.response_id, ResponseStatus.CANCELLED)
    conn = paced.connections[0]
    await conn.wait_for_event("realtimeInput.activityStart", count=2)  # manual mode: the activity interrupts
    await send(session, load_audio("weather-paris-en-16k.wav"))
    await session.commit(respond=True)
    second = await events.until_done()
    await session.close()

    cancelled = events.seen.index(done)
    assert not [e for e in events.seen[cancelled:] if isinstance(e, AudioDelta) and e.response_id == done.response_id]
    assert second.status is ResponseStatus.COMPLETED
    assert conn.received_types().count("realtimeInput.activityStart") == 2  # the barge-in opened the second turn
    assert b'"interrupted":true' in b"".join(conn.sent_frames)
    assert total_usage(events) == emulator_usage(paced)


# -- rollover ------------------------------------------------------------------------------------------


async def test_go_away_rolls_over_with_audio_sent_during_the_swap(emulator: GeminiEmulator) -> None:
    session = await connect(emulator)
    events = Events(session)
    await send(session, speech_turn("weather-paris-en-16k.wav"))
    first = await events.until_done()
    old = emulator.connections[0]
    audio_before = old.received_types().count("realtimeInput.audio")

    emulator.faults = GeminiFaults(setup_complete_delay_ms=300)  # holds the swap open
    assert await emulator.send_go_away(time_left_ms=5_000) == 1
    new = await emulator.wait_for_connection(2)
    speech = speech_turn("hello-book-table-en-16k.wav", pause_ms=1200)
    frames = await send(session, speech)
    assert session.swapping  # … so all of that audio was held back
    second = await events.until_done()
    await session.close()

    assert session.rollovers == 1
    # The swap waited for the handle issued after the first turn (it follows that turn's turnComplete).
    updates = [orjson.loads(f) for f in old.sent_frames if b"sessionResumptionUpdate" in f]
    handle = updates[-1]["sessionResumptionUpdate"]["newHandle"]
    setup = (await new.wait_for_event("setup"))["setup"]
    assert setup["sessionResumption"] == {"handle": handle}
    assert new.resumed_from == handle and new.conversation.log[:2] == old.conversation.log  # the first turn
    audio = [e["realtimeInput"]["audio"]["data"] for e in new.received if e["type"] == "realtimeInput.audio"]
    assert audio == [len(f) for f in chunks(speech)] and len(audio) == frames  # all of it, in order
    assert old.received_types().count("realtimeInput.audio") == audio_before  # none went to the old one
    assert old.ws.close_code == 1000  # we left it before its deadline
    assert second.status is ResponseStatus.COMPLETED and second.response_id != first.response_id
    assert events.audio_ms(second.response_id) >= speech.size * 1000 / IN_RATE - 1200
    assert not events.of(ProviderError)


async def test_go_away_mid_response_waits_for_the_turn_to_end() -> None:
    async with GeminiEmulator(speed=4.0) as emu:
        session = await connect(emu)
        events = Events(session)
        await send(session, speech_turn("weather-paris-en-16k.wav"))
        started = await events.until(ResponseStarted)
        await events.until(AudioDelta)
        await emu.send_go_away(time_left_ms=8_000)
        done = await events.until_done()
        await emu.wait_for_connection(2)
        await send(session, speech_turn("weather-paris-en-16k.wav"))
        second = await events.until_done()
        await session.close()
    assert (done.response_id, done.status) == (started.response_id, ResponseStatus.COMPLETED)
    assert [d.response_id for d in events.of(ResponseDone)] == [started.response_id, second.response_id]
    assert second.status is ResponseStatus.COMPLETED and session.rollovers == 1


async def test_go_away_with_no_time_to_finish_fails_the_response_once_and_goes_on() -> None:
    async with GeminiEmulator(speed=1.0) as emu:
        session = await connect(emu)
        events = Events(session)
        await send(session, speech_turn("weather-paris-en-16k.wav"))
        started = await events.until(ResponseStarted)
        await events.until(AudioDelta)
        emu.speed = 0.0  # for the next connection
        await emu.send_go_away(time_left_ms=100)
        done = await events.until_done()
        await emu.wait_for_connection(2)
        await send(session, speech_turn("weather-paris-en-16k.wav"))
        second = await events.until_done()
        await session.close()
    assert (done.response_id, done.status) == (started.response_id, ResponseStatus.FAILED)
    assert len([d for d in events.of(ResponseDone) if d.response_id == started.response_id]) == 1
    assert second.status is ResponseStatus.COMPLETED
    assert not events.of(ProviderError)


async def test_proactive_rollover_after_max_connection_s(emulator: GeminiEmulator) -> None:
    session = await connect(emulator, max_connection_s=0.3)
    events = Events(session)
    await send(session, speech_turn("weather-paris-en-16k.wav"))
    await events.until_done()
    new = await emulator.wait_for_connection(2)
    setup = (await new.wait_for_event("setup"))["setup"]
    await send(session, speech_turn("weather-paris-en-16k.wav"))
    second = await events.until_done()
    await session.close()
    assert "handle" in setup["sessionResumption"] and new.resumed_from == setup["sessionResumption"]["handle"]
    assert second.status is ResponseStatus.COMPLETED


async def test_update_moves_to_a_reconfigured_connection(emulator: GeminiEmulator) -> None:
    session = await connect(emulator, config(instructions="Be kind."))
    events = Events(session)
    await session.send_text("hello", final=True, respond=True)
    await events.until_done()
    await session.update(instructions="Be brief.", voice="Puck", tools=None)
    new = await emulator.wait_for_connection(2)
    setup = (await new.wait_for_event("setup"))["setup"]
    await session.send_text("again", final=True, respond=True)
    await events.until_done()
    await session.close()
    assert setup["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    assert setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] == "Puck"
    assert new.resumed_from is not None and new.conversation.log[0] == "user: hello"


# -- failures --------------------------------------------------------------------------------------------


async def test_dropped_connection_fails_the_response_then_raises(emulator: GeminiEmulator) -> None:
    emulator.faults = Faults(drop_after_events=6)  # setupComplete, inputTranscription, a few chunks…
    session = await connect(emulator)
    events = Events(session)
    await send(session, speech_turn("weather-paris-en-16k.wav"))
    with pytest.raises(UpstreamError) as raised:
        while True:
            await events.next()
    started = events.of(ResponseStarted)
    assert len(started) == 1 and events.of(AudioDelta)
    assert events.seen[-1] == ResponseDone(started[0].response_id, ResponseStatus.FAILED)
    assert "connection lost" in str(raised.value) and API_KEY not in str(raised.value)
    await session.close()  # harmless after the loss


async def test_wrong_api_key_is_refused_without_echoing_it() -> None:
    async with GeminiEmulator(api_key="AIzaSy-the-right-key-0123456789") as emu:
        wrong = "AIzaSy-wrong-key-0123456789abcdef"
        with pytest.raises(UpstreamError) as raised:
            await connect(emu, api_key=wrong)
    message = str(raised.value)
    assert "code 1007" in message and "API key not valid" in message
    assert wrong not in message and "the-right-key" not in message
    assert raised.value.retryable is False


async def test_unknown_model_is_refused(emulator: GeminiEmulator) -> None:
    with pytest.raises(UpstreamError) as raised:
        await provider_for(emulator).connect(SessionConfig(model="gemini-1.0-pro", client_input=PCM16_16K,
                                                           client_output=PCM16_24K))  # fmt: skip
    assert "code 1008" in str(raised.value) and raised.value.retryable is False


async def test_close_codes_mid_session_become_clean_errors(emulator: GeminiEmulator) -> None:
    emulator.faults = Faults(error_on_response="Internal error occurred.")
    session = await connect(emulator)
    events = Events(session)
    await session.send_text("hi", final=True, respond=True)
    with pytest.raises(UpstreamError) as raised:
        await events.next()
    assert str(raised.value) == "Gemini connection lost (code 1011: Internal error occurred.)"
    assert raised.value.retryable is True


@pytest.mark.parametrize(("status", "retryable"), [(503, True), (403, False)])
async def test_refused_handshake(emulator: GeminiEmulator, status: int, retryable: bool) -> None:
    emulator.faults = Faults(reject_connect=status)
    with pytest.raises(UpstreamError) as raised:
        await connect(emulator)
    assert f"HTTP {status}" in str(raised.value) and API_KEY not in str(raised.value)
    assert raised.value.retryable is retryable


async def test_setup_timeout(emulator: GeminiEmulator) -> None:
    emulator.faults = GeminiFaults(setup_complete_delay_ms=1_000)
    with pytest.raises(UpstreamError, match=r"did not get ready within 0\.2 s"):
        await connect(emulator, connect_timeout_s=0.2)


async def test_malformed_frame_is_skipped(emulator: GeminiEmulator) -> None:
    emulator.faults = Faults(malformed_after_events=3)
    session = await connect(emulator)
    events = Events(session)
    await session.send_text("still fine", final=True, respond=True)
    done = await events.until_done()
    await session.close()
    assert done.status is ResponseStatus.COMPLETED
    assert events.audio_ms() == synth.duration_ms("still fine")


async def test_tls_with_a_trusted_context() -> None:
    async with GeminiEmulator(tls=True) as emu:
        assert emu.base_url.startswith("https://")
        session = await connect(emu, ssl_context=emu.client_ssl_context())
        events = Events(session)
        await session.send_text("over TLS", final=True, respond=True)
        done = await events.until_done()
        await session.close()
        # the PEM file (what SSL_CERT_FILE would name) is the same trust
        await (await connect(emu, ssl_context=ssl.create_default_context(cafile=emu.ca_pem_path))).close()
        with pytest.raises(UpstreamError, match="could not connect"):
            await connect(emu)  # the system's trust does not include the emulator's certificate
    assert done.status is ResponseStatus.COMPLETED


async def test_nothing_listening() -> None:
    emu = GeminiEmulator()
    await emu.start()
    base_url = emu.base_url
    await emu.stop()
    with pytest.raises(UpstreamError, match="could not connect to Gemini"):
        await GeminiProvider(API_KEY, base_url=base_url, connect_timeout_s=5.0).connect(config())


async def test_create_response_asks_for_an_answer_now(emulator: GeminiEmulator) -> None:
    # Nothing said yet: Gemini generates from the context so far (clientContent turnComplete) — the
    # assistant speaks first. Right after a commit, the answer is due already: nothing more is asked.
    session = await connect(emulator, config(TurnDetection.MANUAL))
    events = Events(session)
    await session.create_response()
    greeting = await events.until_done()
    await send(session, load_audio("weather-paris-en-16k.wav"))
    await session.commit(respond=False)
    await session.create_response()
    answer = await events.until_done()
    await session.close()
    assert greeting.status is ResponseStatus.COMPLETED
    assert events.audio_ms(greeting.response_id) == synth.duration_ms("Hello from the Gemini Live emulator.")
    assert answer.status is ResponseStatus.COMPLETED and len(events.of(ResponseDone)) == 2
    assert emulator.connections[0].received_types().count("clientContent") == 1


async def test_a_long_swap_keeps_only_the_newest_held_audio(emulator: GeminiEmulator) -> None:
    session = await connect(emulator)
    emulator.faults = GeminiFaults(setup_complete_delay_ms=300)
    await emulator.send_go_away(time_left_ms=5_000)
    new = await emulator.wait_for_connection(2)
    oldest = [bytes(1280)] * 50  # 2 s in 40 ms frames: beyond MAX_HELD_AUDIO_MS, so dropped
    newest = [bytes(640)] * (MAX_HELD_AUDIO_MS // 20)  # 30 s in 20 ms frames: kept
    for frame in oldest + newest:
        await session.send_audio(frame)
    assert session.swapping
    await new.wait_for_event("realtimeInput.audio", count=len(newest))
    await session.close()
    audio = [e["realtimeInput"]["audio"]["data"] for e in new.received if e["type"] == "realtimeInput.audio"]
    assert audio == [640] * len(newest)
    assert session.dropped_audio_ms == 2_000
