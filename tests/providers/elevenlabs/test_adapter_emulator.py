"""The ElevenLabs adapter (provider + connection + translator) against the local ElevenLabs emulator.

Real sockets on loopback, both ends in this process; synchronisation only by awaiting events
(with timeouts), never by sleeping. Every client message the adapter sends is checked against the
SDK's own client message types.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from audiocodecs.format import PCM16_16K, PCM16_24K, ULAW_8K, AudioFormat, Encoding
from providers.base import SessionConfig, UpstreamError, UpstreamSession
from providers.elevenlabs.emulator import ElevenLabsEmulator
from providers.elevenlabs.emulator_connection import ElevenLabsEmulatedConnection
from providers.elevenlabs.provider import ElevenLabsProvider
from providers.emulation import synth
from providers.emulation.faults import Faults
from providers.events import (
    Alignment,
    AudioDelta,
    ProviderError,
    ResponseDone,
    ResponseStarted,
    ResponseStatus,
)
from tests.providers.elevenlabs.conftest import Events, check_client_message
from tests.providers.elevenlabs.harness import API_KEY, open_pair

PIECES = ("Hello there, ", "this is the relay ", "speaking in pieces.")
TEXT = "".join(PIECES)


@pytest_asyncio.fixture(loop_scope="session")
async def emulator() -> AsyncIterator[ElevenLabsEmulator]:
    async with ElevenLabsEmulator(api_key=API_KEY) as emu:
        yield emu


def config(client_output: AudioFormat = PCM16_16K, **overrides: Any) -> SessionConfig:
    return SessionConfig(model="eleven_flash_v2_5", client_input=PCM16_16K, client_output=client_output, **overrides)


def provider_for(emu: ElevenLabsEmulator, api_key: str = API_KEY, **options: Any) -> ElevenLabsProvider:
    return ElevenLabsProvider(api_key, base_url=emu.base_url, connect_timeout_s=5.0, **options)


async def speak(session: UpstreamSession, pieces: tuple[str, ...] = PIECES) -> None:
    for n, piece in enumerate(pieces):
        await session.send_text(piece, final=n == len(pieces) - 1, respond=True)


def check_sent(conn: ElevenLabsEmulatedConnection) -> None:
    for message in conn.received:
        check_client_message(message)


async def test_streamed_pieces_are_one_response_with_accumulated_alignment(emulator: ElevenLabsEmulator) -> None:
    session = await provider_for(emulator).connect(config())
    assert session.output_format == PCM16_16K
    events = Events(session)
    await speak(session)
    done = await events.until_done()
    await session.close()
    await events.expect_end()

    conn = emulator.connections[-1]
    assert (conn.output_format_name, conn.model_id, conn.voice_id) == (
        "pcm_16000",
        "eleven_flash_v2_5",
        "21m00Tcm4TlvDq8ikWAM",
    )
    started = [e for e in events.seen if isinstance(e, ResponseStarted)]
    assert [s.response_id for s in started] == [done.response_id]
    assert done.status is ResponseStatus.COMPLETED and done.usage.characters == len(TEXT)
    rid = done.response_id
    assert len(events.audio(rid)) == synth.duration_ms(TEXT) * 32  # pcm16 mono 16 kHz: 32 bytes per ms
    alignments = events.alignments(rid)
    assert len(alignments) > 3  # several chunks, so the offsets really were accumulated
    chars = [c for a in alignments for c in a.chars or []]
    starts = [s for a in alignments for s in a.start_ms]
    assert "".join(chars) == TEXT
    assert starts == sorted(starts) and starts[0] == 0
    assert starts[-1] == (len(TEXT) - 1) * synth.CHAR_MS  # utterance time, not chunk time
    assert all(isinstance(e, ResponseStarted | Alignment | AudioDelta) for e in events.seen[:-1])
    kinds = conn.received_types()
    assert kinds == ["init", "text", "text", "flush", "close_context"]
    assert all(m["context_id"] == rid for m in conn.received)
    check_sent(conn)


@pytest.mark.parametrize(
    ("client_output", "wire", "negotiated"),
    [
        (PCM16_16K, "pcm_16000", PCM16_16K),
        (ULAW_8K, "ulaw_8000", ULAW_8K),
        (AudioFormat(Encoding.ALAW, 8000), "alaw_8000", AudioFormat(Encoding.ALAW, 8000)),
        (AudioFormat(Encoding.PCM16, 22050), "pcm_22050", AudioFormat(Encoding.PCM16, 22050)),
        (AudioFormat(Encoding.F32, 44100), "pcm_44100", AudioFormat(Encoding.PCM16, 44100)),
        (AudioFormat(Encoding.OPUS, 48000), "pcm_48000", AudioFormat(Encoding.PCM16, 48000)),
        (AudioFormat(Encoding.PCM16, 11025), "pcm_16000", PCM16_16K),
    ],
)
async def test_output_format_follows_the_client(
    emulator: ElevenLabsEmulator, client_output: AudioFormat, wire: str, negotiated: AudioFormat
) -> None:
    session = await provider_for(emulator).connect(config(client_output))
    assert session.output_format == negotiated
    events = Events(session)
    await session.send_text("Hi.", final=True, respond=True)
    done = await events.until_done()
    await session.close()
    assert emulator.connections[-1].output_format_name == wire
    expected = negotiated.bytes_for_ms(synth.duration_ms("Hi."))
    assert abs(len(events.audio(done.response_id)) - expected) <= 2 * negotiated.frame_bytes


async def test_barge_in_mid_utterance_cancels_and_drops_later_audio() -> None:
    long_text = "Long enough to be interrupted."
    async with open_pair(speed=1.0) as (provider, emu):
        session = await provider.connect(config())
        events = Events(session)
        await session.send_text(long_text, final=False, respond=True)
        await session.send_text("", final=True, respond=True)
        first = await events.next()
        assert isinstance(first, ResponseStarted)
        while len([e for e in events.seen if isinstance(e, AudioDelta)]) < 2:
            await events.next()
        conn = emu.connections[0]
        context = conn.contexts[first.response_id]
        await session.interrupt(first.response_id, 100)
        done = await events.until_done()
        assert done == ResponseDone(first.response_id, ResponseStatus.CANCELLED, done.usage)
        assert done.usage.characters == len(long_text)
        cut = len(events.seen)
        # close_context does not stop flushed text: the emulator streams the rest of it, as the service
        # does. A second utterance started after that tail is out proves the adapter read all of it.
        await asyncio.wait_for(context.ended.wait(), 5)
        await session.send_text("Ok.", final=True, respond=True)
        second = await events.until_done()
        await session.close()

    after = events.seen[cut:]
    assert context.spoken_characters == len(long_text)  # the whole tail went out …
    assert second.status is ResponseStatus.COMPLETED and second.response_id != first.response_id
    # … and none of it came through
    assert not [e for e in after if isinstance(e, AudioDelta | Alignment) and e.response_id == first.response_id]
    assert len(events.audio(first.response_id)) < synth.duration_ms(long_text) * 32 // 2
    assert [e for e in events.seen if isinstance(e, ResponseDone) and e.response_id == first.response_id] == [done]
    assert len(events.audio(second.response_id)) == synth.duration_ms("Ok.") * 32
    # The close for the cancel is not sent twice: the final piece had already closed the context.
    assert conn.received_types().count("close_context") == 2
    check_sent(conn)


async def test_interrupt_while_text_still_streams_closes_the_context() -> None:
    async with open_pair(speed=1.0) as (provider, emu):
        session = await provider.connect(config())
        events = Events(session)
        await session.send_text("Half a sentence that", final=False, respond=True)
        started = await events.next()
        assert isinstance(started, ResponseStarted)
        await session.interrupt(None, None)  # None: the one in flight
        done = await events.until_done()
        closing = await emu.wait_for_event("close_context")
        await session.send_text("A new one.", final=True, respond=True)
        second = await events.until_done()
        await session.close()

    assert done == ResponseDone(started.response_id, ResponseStatus.CANCELLED, done.usage)
    assert closing["context_id"] == started.response_id
    assert second.status is ResponseStatus.COMPLETED and second.usage.characters == len("A new one.")
    assert second.response_id != started.response_id


async def test_six_utterances_share_five_contexts() -> None:
    # Paced, so that every context is still speaking when the next utterance starts: the sixth must
    # wait for the first to end instead of tripping the service's limit.
    texts = [f"Line {n}." for n in range(6)]
    async with open_pair(speed=2.0) as (provider, emu):
        session = await provider.connect(config())
        events = Events(session)
        for text in texts:
            await session.send_text(text, final=True, respond=True)
        done = [await events.until_done() for _ in texts]
        await session.close()
        conn = emu.connections[0]

    started = [e.response_id for e in events.seen if isinstance(e, ResponseStarted)]
    assert len(set(started)) == 6
    assert sorted(d.response_id for d in done) == sorted(started)
    assert all(d.status is ResponseStatus.COMPLETED for d in done)
    assert {d.response_id: d.usage.characters for d in done} == dict(zip(started, map(len, texts), strict=True))
    assert conn.close_code is None and not [e for e in events.seen if isinstance(e, ProviderError)]
    # The limit was reached and never passed (the emulator closes 1008 on a sixth live context).
    assert conn.peak_contexts == 5
    assert conn.ended_contexts == started


async def test_a_service_error_before_the_close_is_reported_whole() -> None:
    # An emulator stricter than the service (one context): the second utterance trips its limit.
    async with ElevenLabsEmulator(api_key=API_KEY, speed=1.0, max_contexts=1) as emu:
        session = await provider_for(emu).connect(config())
        events = Events(session)
        await session.send_text("First one.", final=True, respond=True)
        await session.send_text("Second one.", final=True, respond=True)
        with pytest.raises(UpstreamError) as raised:
            while True:
                await events.next()
    failed = [e for e in events.seen if isinstance(e, ResponseDone)]
    assert [d.status for d in failed] == [ResponseStatus.FAILED, ResponseStatus.FAILED]
    message = str(raised.value)
    assert "code 1008: max_active_conversations: Maximum simultaneous contexts" in message
    assert message.endswith("before opening a new one.)")  # the whole message, not the cut close reason
    assert raised.value.retryable


async def test_wrong_key_is_refused_without_echoing_it(emulator: ElevenLabsEmulator) -> None:
    wrong = "sk_wrong0123456789abcdef"
    with pytest.raises(UpstreamError) as raised:
        await provider_for(emulator, api_key=wrong).connect(config())
    message = str(raised.value)
    assert "Invalid API key" in message and "1008" in message
    assert wrong not in message and "0123456789" not in message and API_KEY not in message
    assert raised.value.retryable is False


async def test_dropped_connection_fails_the_response_then_raises(emulator: ElevenLabsEmulator) -> None:
    emulator.faults = Faults(drop_after_events=3)
    try:
        session = await provider_for(emulator).connect(config())
        events = Events(session)
        await speak(session)
        with pytest.raises(UpstreamError) as raised:
            while True:
                await events.next()
    finally:
        emulator.faults = Faults()
    started = [e for e in events.seen if isinstance(e, ResponseStarted)]
    assert len(started) == 1
    assert events.seen[-1] == ResponseDone(started[0].response_id, ResponseStatus.FAILED, events.seen[-1].usage)  # type: ignore[union-attr]
    assert events.seen[-1].usage.characters == len(TEXT)  # type: ignore[union-attr]
    assert len([e for e in events.seen if isinstance(e, AudioDelta)]) == 3
    assert "connection lost" in str(raised.value) and raised.value.retryable
    await session.close()  # harmless after the loss


async def test_provider_failure_is_reported_with_its_message(emulator: ElevenLabsEmulator) -> None:
    emulator.faults = Faults(error_on_response="We are sorry, something went wrong.")
    try:
        session = await provider_for(emulator).connect(config())
        events = Events(session)
        await session.send_text("Hello.", final=True, respond=True)
        with pytest.raises(UpstreamError) as raised:
            while True:
                await events.next()
    finally:
        emulator.faults = Faults()
    assert isinstance(events.seen[-1], ResponseDone) and events.seen[-1].status is ResponseStatus.FAILED
    assert "something went wrong" in str(raised.value) and "1008" in str(raised.value)
    assert raised.value.retryable is True


async def test_malformed_frame_is_skipped(emulator: ElevenLabsEmulator) -> None:
    emulator.faults = Faults(malformed_after_events=2)
    try:
        session = await provider_for(emulator).connect(config())
        events = Events(session)
        await speak(session)
        done = await events.until_done()
        await session.close()
    finally:
        emulator.faults = Faults()
    assert done.status is ResponseStatus.COMPLETED
    assert len(events.audio(done.response_id)) == synth.duration_ms(TEXT) * 32


@pytest.mark.parametrize(("status", "retryable"), [(503, True), (401, False)])
async def test_refused_handshake(emulator: ElevenLabsEmulator, status: int, retryable: bool) -> None:
    emulator.faults = Faults(reject_connect=status)
    try:
        with pytest.raises(UpstreamError) as raised:
            await provider_for(emulator).connect(config())
    finally:
        emulator.faults = Faults()
    assert f"HTTP {status}" in str(raised.value) and API_KEY not in str(raised.value)
    assert raised.value.retryable is retryable


async def test_keepalives_hold_an_idle_session_open() -> None:
    async with ElevenLabsEmulator(api_key=API_KEY, inactivity_timeout_s=0.3) as emu:
        session = await provider_for(emu, keepalive_s=0.05).connect(config())
        events = Events(session)
        await emu.wait_for_event("keepalive", count=10)  # >= 0.5 s of silence from the client's side
        await session.send_text("Still here", final=False, respond=True)
        await emu.wait_for_event("keepalive", count=16)  # and while an utterance waits for more text
        await session.send_text(".", final=True, respond=True)
        done = await events.until_done()
        await session.close()
        conn = emu.connections[0]
    assert done.status is ResponseStatus.COMPLETED and conn.close_code is None
    keepalives = [m for m in conn.received if m["type"] == "keepalive"]
    assert "context_id" not in keepalives[0]
    assert keepalives[-1].get("context_id") == done.response_id  # the open context's timer too
    check_sent(conn)


async def test_without_keepalives_the_service_times_out() -> None:
    async with ElevenLabsEmulator(api_key=API_KEY, inactivity_timeout_s=0.2) as emu:
        session = await provider_for(emu, keepalive_s=0).connect(config())
        events = Events(session)
        with pytest.raises(UpstreamError) as raised:
            await events.next()
    assert "Have not received a new text input within the timeout of 0.2 seconds" in str(raised.value)


async def test_tls_and_snake_case_keys() -> None:
    async with ElevenLabsEmulator(api_key=API_KEY, tls=True, key_style="snake") as emu:
        assert emu.tls is not None and emu.base_url.startswith("https://")
        session = await provider_for(emu, ssl_context=emu.client_ssl_context()).connect(config())
        events = Events(session)
        await speak(session)
        done = await events.until_done()
        await session.close()
    assert done.status is ResponseStatus.COMPLETED and done.usage.characters == len(TEXT)
    assert "".join(c for a in events.alignments(done.response_id) for c in a.chars or []) == TEXT


async def test_voice_settings_and_schedule_go_in_every_context_init(emulator: ElevenLabsEmulator) -> None:
    settings = {"stability": 0.4, "similarity_boost": 0.8, "speed": 1.1}
    provider = provider_for(emulator, voice_settings=settings, chunk_length_schedule=[50, 90])
    session = await provider.connect(config(voice="pNInz6obpgDQGcFmaJgB"))
    events = Events(session)
    for _ in range(2):
        await session.send_text("Same settings.", final=True, respond=True)
        await events.until_done()
    await session.update(instructions=None, voice="another-voice", tools=None)
    error = await events.next()
    await session.close()
    conn = emulator.connections[-1]
    assert conn.voice_id == "pNInz6obpgDQGcFmaJgB" and conn.close_code is None
    inits = [m for m in conn.received if m["type"] == "init"]
    assert len(inits) == 2
    assert all(m["voice_settings"] == settings for m in inits)
    assert all(m["generation_config"] == {"chunk_length_schedule": [50, 90]} for m in inits)
    assert isinstance(error, ProviderError) and error.code == "unsupported" and not error.fatal
    check_sent(conn)


async def test_close_ends_events_quietly(emulator: ElevenLabsEmulator) -> None:
    session = await provider_for(emulator).connect(config())
    events = Events(session)
    await session.close()
    await events.expect_end()
    await session.send_text("too late", final=True, respond=True)  # dropped, no error
    await session.close()


async def test_setup_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers the upgrade
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(UpstreamError, match=r"did not answer within 0\.2 s"):
            await ElevenLabsProvider(API_KEY, base_url=f"http://127.0.0.1:{port}", connect_timeout_s=0.2).connect(
                config()
            )


async def test_nothing_listening() -> None:
    emu = ElevenLabsEmulator()
    await emu.start()
    base_url = emu.base_url
    await emu.stop()
    with pytest.raises(UpstreamError, match="could not connect to ElevenLabs"):
        await ElevenLabsProvider(API_KEY, base_url=base_url, connect_timeout_s=5.0).connect(config())


async def test_missing_key_is_refused_before_connecting() -> None:
    with pytest.raises(UpstreamError, match="not configured") as raised:
        await ElevenLabsProvider("", base_url="http://127.0.0.1:9").connect(config(PCM16_24K))
    assert raised.value.retryable is False
