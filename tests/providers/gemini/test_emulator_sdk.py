"""The Gemini emulator against the official SDK (google-genai 3.4.0, ``client.aio.live.connect``) over TLS.

Every message the emulator sent during a test is validated strictly against the SDK's types
(conftest.validate_server_frame), in addition to what the SDK's own ``receive()`` makes of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from google import genai
from google.genai import errors, types
from google.genai.live import AsyncSession

from providers.emulation import synth
from providers.gemini.emulator import GeminiEmulator
from providers.gemini.emulator_turn import audio_tokens, text_tokens
from tests.providers.gemini.conftest import (
    IN_RATE,
    MODEL,
    OUT_RATE,
    TIMEOUT_S,
    chunks,
    load_audio,
    sdk_client,
    silence,
    validate_all,
)

AUDIO_CONFIG = types.LiveConnectConfig(
    response_modalities=[types.Modality.AUDIO],
    input_audio_transcription=types.AudioTranscriptionConfig(),
    output_audio_transcription=types.AudioTranscriptionConfig(),
    session_resumption=types.SessionResumptionConfig(),
)
WEATHER_TOOL = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            description="Weather for a city",
            parameters=types.Schema(type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}),
        )
    ]
)


async def turn(session: AsyncSession) -> list[types.LiveServerMessage]:
    """One ``receive()`` loop: the messages up to and including ``turnComplete``."""
    got: list[types.LiveServerMessage] = []

    async def collect() -> None:
        async for message in session.receive():
            got.append(message)

    await asyncio.wait_for(collect(), TIMEOUT_S)
    return got


async def next_message(session: AsyncSession) -> types.LiveServerMessage:
    return await asyncio.wait_for(anext(aiter(session.receive())), TIMEOUT_S)


def audio_of(messages: list[types.LiveServerMessage]) -> bytes:
    out = b""
    for m in messages:
        if m.server_content and m.server_content.model_turn:
            for part in m.server_content.model_turn.parts or ():
                if part.inline_data and part.inline_data.data:
                    assert part.inline_data.mime_type == "audio/pcm;rate=24000"
                    out += part.inline_data.data
    return out


def transcript_of(messages: list[types.LiveServerMessage], field: str = "output_transcription") -> str:
    texts = [getattr(m.server_content, field) for m in messages if m.server_content]
    return "".join(t.text or "" for t in texts if t is not None)


async def send_pcm(session: AsyncSession, samples: np.ndarray[Any, Any]) -> None:
    for chunk in chunks(samples):
        await session.send_realtime_input(audio=types.Blob(data=chunk, mime_type=f"audio/pcm;rate={IN_RATE}"))


@pytest.fixture
async def session(tls_emulator: GeminiEmulator) -> AsyncIterator[AsyncSession]:
    async with sdk_client(tls_emulator).aio.live.connect(model=MODEL, config=AUDIO_CONFIG) as s:
        yield s
    validate_all(tls_emulator.connections[-1].sent_frames)


async def test_audio_turn_is_echoed_with_transcripts_usage_and_a_handle(
    tls_emulator: GeminiEmulator, session: AsyncSession
) -> None:
    speech = load_audio("hello-book-table-en-16k.wav")
    await send_pcm(session, np.concatenate([silence(300), speech, silence(1200)]))
    messages = await turn(session)

    conn = tls_emulator.connections[-1]
    assert conn.path == "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    assert conn.ws.request is not None and conn.ws.request.headers["x-goog-api-key"] == "test-key"
    setup = (await conn.wait_for_event("setup"))["setup"]
    assert setup["model"] == f"models/{MODEL}" and setup["generationConfig"]["responseModalities"] == ["AUDIO"]

    echoed_ms = len(audio_of(messages)) / 2 / OUT_RATE * 1000
    speech_ms = speech.size / IN_RATE * 1000
    assert speech_ms <= echoed_ms <= speech_ms + 1200  # the turn: speech, its padding and the closing silence
    assert transcript_of(messages) == f"Echo of {echoed_ms / 1000:.1f} s of your audio."
    assert transcript_of(messages, "input_transcription") == f"[{echoed_ms / 1000:.1f} s of speech]"
    ends = [
        m
        for m in messages
        if m.server_content and (m.server_content.generation_complete or m.server_content.turn_complete)
    ]
    assert [bool(m.server_content and m.server_content.turn_complete) for m in ends] == [False, True]
    usage = ends[-1].usage_metadata
    assert usage is not None and usage == ends[0].usage_metadata  # the same snapshot, repeated
    assert usage.response_token_count == audio_tokens(round(echoed_ms))
    assert usage.prompt_tokens_details is not None
    assert {d.modality: d.token_count for d in usage.prompt_tokens_details}[types.MediaModality.AUDIO] == audio_tokens(
        round(echoed_ms)
    )
    update = await next_message(session)  # after turnComplete: the next receive() loop
    assert update.session_resumption_update is not None and update.session_resumption_update.resumable
    assert update.session_resumption_update.new_handle


async def test_text_turns_realtime_text_and_client_content(session: AsyncSession) -> None:
    await session.send_realtime_input(text="Hello there")
    messages = await turn(session)
    assert transcript_of(messages) == "Hello there"
    assert len(audio_of(messages)) == synth.duration_ms("Hello there") * OUT_RATE // 1000 * 2
    assert messages[-1].usage_metadata is not None
    assert messages[-1].usage_metadata.prompt_tokens_details == [
        types.ModalityTokenCount(modality=types.MediaModality.TEXT, token_count=text_tokens("Hello there"))
    ]

    await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="And again")]))
    messages = await turn(session)
    assert transcript_of(messages) == "And again"
    usage = messages[-1].usage_metadata
    assert usage is not None and usage.prompt_token_count is not None
    # the context grows: the first turn's input and output are part of the second prompt
    assert usage.prompt_token_count > text_tokens("And again") + text_tokens("Hello there")


async def test_text_modality_gives_text_parts(tls_emulator: GeminiEmulator) -> None:
    config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT], system_instruction="Be terse.")
    async with sdk_client(tls_emulator).aio.live.connect(model=MODEL, config=config) as session:
        await session.send_realtime_input(text="Two words here")
        messages = await turn(session)
    texts = [p.text for m in messages if m.server_content and m.server_content.model_turn
             for p in m.server_content.model_turn.parts or () if p.text]  # fmt: skip
    assert "".join(texts) == "Two words here" and len(texts) == 3
    assert not audio_of(messages)
    validate_all(tls_emulator.connections[-1].sent_frames)


async def test_tool_call_round_trip(tls_emulator: GeminiEmulator) -> None:
    config = AUDIO_CONFIG.model_copy(update={"tools": [WEATHER_TOOL]})
    async with sdk_client(tls_emulator).aio.live.connect(model=MODEL, config=config) as session:
        await session.send_realtime_input(text="Please call get_weather for Paris.")
        call_message = await next_message(session)
        assert call_message.tool_call is not None and call_message.tool_call.function_calls
        call = call_message.tool_call.function_calls[0]
        assert (call.name, call.args) == ("get_weather", {"city": "Paris"}) and call.id
        await session.send_tool_response(
            function_responses=[types.FunctionResponse(id=call.id, name=call.name, response={"output": "Sunny, 21 C"})]
        )
        messages = await turn(session)
    assert transcript_of(messages) == "Sunny, 21 C"
    assert len(audio_of(messages)) == synth.duration_ms("Sunny, 21 C") * OUT_RATE // 1000 * 2
    received = tls_emulator.connections[-1].received_types()
    assert received[-1] == "toolResponse"
    validate_all(tls_emulator.connections[-1].sent_frames)


async def test_manual_activity_turn(tls_emulator: GeminiEmulator) -> None:
    config = AUDIO_CONFIG.model_copy(
        update={
            "realtime_input_config": types.RealtimeInputConfig(
                automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)
            )
        }
    )
    speech = load_audio("weather-paris-en-16k.wav")
    async with sdk_client(tls_emulator).aio.live.connect(model=MODEL, config=config) as session:
        await session.send_realtime_input(activity_start=types.ActivityStart())
        await send_pcm(session, speech)
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        messages = await turn(session)
    # no VAD: the turn is exactly the activity's audio
    assert len(audio_of(messages)) == pytest.approx(speech.size * OUT_RATE / IN_RATE * 2, abs=8)
    conn = tls_emulator.connections[-1]
    assert conn.received_types()[1] == "realtimeInput.activityStart"
    validate_all(conn.sent_frames)


async def test_barge_in_interrupts_the_model(paced_tls_emulator: GeminiEmulator) -> None:
    speech = load_audio("hello-book-table-en-16k.wav")
    async with sdk_client(paced_tls_emulator).aio.live.connect(model=MODEL, config=AUDIO_CONFIG) as session:
        await send_pcm(session, np.concatenate([speech, silence(800)]))
        first = await next_message(session)  # the model starts answering
        assert first.server_content is not None
        await send_pcm(session, speech[:IN_RATE])  # the user speaks again
        messages = [first, *await turn(session)]
    flags = [m.server_content.interrupted for m in messages if m.server_content and m.server_content.interrupted]
    assert flags == [True]
    assert messages[-1].server_content is not None and messages[-1].server_content.turn_complete
    assert not any(m.server_content and m.server_content.generation_complete for m in messages)
    full_ms = (speech.size / IN_RATE + 0.8) * 1000
    assert len(audio_of(messages)) / 2 / OUT_RATE * 1000 < full_ms / 2  # cut well before its end
    validate_all(paced_tls_emulator.connections[-1].sent_frames)


async def test_go_away_is_a_typed_message_then_the_connection_closes(tls_emulator: GeminiEmulator) -> None:
    async with sdk_client(tls_emulator).aio.live.connect(model=MODEL, config=AUDIO_CONFIG) as session:
        await tls_emulator.wait_for_event("setup")
        assert await tls_emulator.send_go_away(time_left_ms=200) >= 1
        message = await next_message(session)
        assert message.go_away is not None and message.go_away.time_left == "0.2s"
        with pytest.raises(errors.APIError) as raised:
            await next_message(session)
        assert raised.value.code == 1011 and "Deadline expired" in str(raised.value)
    validate_all(tls_emulator.connections[-1].sent_frames)


async def test_resumption_continues_the_conversation(tls_emulator: GeminiEmulator) -> None:
    client = sdk_client(tls_emulator)
    async with client.aio.live.connect(model=MODEL, config=AUDIO_CONFIG) as session:
        await session.send_realtime_input(text="Remember this")
        first = await turn(session)
        update = await next_message(session)
    handle = update.session_resumption_update.new_handle if update.session_resumption_update else None
    assert handle
    resumed = AUDIO_CONFIG.model_copy(update={"session_resumption": types.SessionResumptionConfig(handle=handle)})
    async with client.aio.live.connect(model=MODEL, config=resumed) as session:
        await session.send_realtime_input(text="Go on")
        second = await turn(session)
    conn = tls_emulator.connections[-1]
    assert conn.resumed_from == handle
    assert conn.conversation.log[:2] == ["user: Remember this", "model: Remember this"]
    before, after = first[-1].usage_metadata, second[-1].usage_metadata
    assert before is not None and after is not None and before.total_token_count and after.prompt_token_count
    assert after.prompt_token_count == before.total_token_count + text_tokens("Go on")


async def test_default_api_version_and_ephemeral_token_path(tls_emulator: GeminiEmulator) -> None:
    # google-genai 3.x defaults to v1; an auth_tokens/ key goes to …Constrained with a Token header.
    client = sdk_client(tls_emulator, api_key="auth_tokens/abc123", api_version="v1alpha")
    with pytest.warns(errors.ExperimentalWarning):
        async with client.aio.live.connect(model=MODEL, config=AUDIO_CONFIG):
            pass
    conn = tls_emulator.connections[-1]
    assert conn.path.endswith("v1alpha.GenerativeService.BidiGenerateContentConstrained")
    assert conn.ws.request is not None and conn.ws.request.headers["Authorization"] == "Token auth_tokens/abc123"
    options = types.HttpOptions(
        base_url=tls_emulator.base_url + "/", async_client_args={"ssl": tls_emulator.client_ssl_context()}
    )
    async with genai.Client(api_key="k", http_options=options).aio.live.connect(model=MODEL, config=AUDIO_CONFIG):
        pass
    request = tls_emulator.connections[-1].ws.request
    assert request is not None
    assert request.path == "//ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent"


async def test_wrong_key_is_refused_with_1007() -> None:
    async with GeminiEmulator(tls=True, api_key="right-key") as emulator:
        with pytest.raises(errors.APIError) as raised:
            async with sdk_client(emulator, api_key="wrong-key").aio.live.connect(model=MODEL, config=AUDIO_CONFIG):
                pass
    assert raised.value.code == 1007 and "API key not valid" in str(raised.value)


async def test_unknown_model_is_refused_with_1008(tls_emulator: GeminiEmulator) -> None:
    with pytest.raises(errors.APIError) as raised:
        async with sdk_client(tls_emulator).aio.live.connect(model="gemini-1.0-pro", config=AUDIO_CONFIG):
            pass
    assert raised.value.code == 1008 and "not supported for bidiGenerateContent" in str(raised.value)
