"""The OpenAI Realtime emulator against the official SDK (`AsyncOpenAI(...).realtime.connect`).

Every server event is validated strictly against the SDK's typed models (conftest.EventLog).
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import orjson
import pytest
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeFunctionToolParam

from audiocodecs.g711 import ulaw_decode, ulaw_encode
from providers.emulation import synth
from providers.emulation.vad import VadConfig, detect_turns
from providers.openai.emulator import OpenAIRealtimeEmulator
from tests.providers.openai.conftest import (
    RATE,
    EventLog,
    audio_of,
    load_audio,
    open_session,
    send_audio,
    silence,
    transcript_of,
    types_of,
)

MESSAGE_SEQUENCE = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
    "rate_limits.updated",
]
DELTAS = ("response.output_audio.delta", "response.output_audio_transcript.delta", "response.output_text.delta")


def without_deltas(events: list[dict[str, Any]]) -> list[str]:
    return [t for t in types_of(events) if t not in DELTAS]


def response_done(events: list[dict[str, Any]]) -> dict[str, Any]:
    done = [e for e in events if e["type"] == "response.done"]
    assert len(done) == 1, types_of(events)
    response: dict[str, Any] = done[0]["response"]
    return response


async def text_turn(log: EventLog, text: str) -> None:
    await log.conn.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    )
    await log.until("conversation.item.done")


async def test_session_created_and_updated(session: EventLog) -> None:
    created = session.events[0]["session"]
    assert created["model"] == "gpt-realtime"
    assert created["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert created["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert created["id"].startswith("sess_")

    await session.conn.session.update(
        session={
            "type": "realtime",
            "instructions": "Be brief.",
            "audio": {"input": {"format": {"type": "audio/pcmu"}}, "output": {"voice": "cedar"}},
        }
    )
    updated = (await session.until("session.updated"))[-1]["session"]
    assert updated["instructions"] == "Be brief."
    assert updated["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert updated["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}  # merged, not replaced
    assert updated["audio"]["output"]["voice"] == "cedar"
    assert updated["audio"]["input"]["turn_detection"] == created["audio"]["input"]["turn_detection"]

    bad_rate = {"type": "realtime", "audio": {"output": {"format": {"type": "audio/pcm", "rate": 16000}}}}
    await session.conn.send_raw(orjson.dumps({"type": "session.update", "event_id": "evt_c1", "session": bad_rate}))
    error = (await session.until("error"))[-1]["error"]
    assert (error["code"], error["param"], error["event_id"]) == (
        "invalid_value",
        "session.audio.output.format.rate",
        "evt_c1",
    )
    await session.conn.send_raw(orjson.dumps({"type": "session.update", "session": {"type": "realtime", "voice": "x"}}))
    error = (await session.until("error"))[-1]["error"]
    assert (error["code"], error["param"]) == ("unknown_parameter", "session.voice")
    await session.conn.session.update(session={"type": "realtime", "output_modalities": ["audio", "text"]})
    assert (await session.until("error"))[-1]["error"]["code"] == "invalid_value"


async def test_audio_turn_with_server_vad_is_echoed(session: EventLog) -> None:
    speech = np.concatenate([silence(400), load_audio("weather-paris-en-16k.wav"), silence(1000)])
    await send_audio(session.conn, speech.tobytes())
    events = await session.until("rate_limits.updated")

    sequence = without_deltas(events)
    assert sequence == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        *MESSAGE_SEQUENCE,
    ]
    started, stopped, committed, added = events[0], events[1], events[2], events[3]
    item_id = started["item_id"]
    assert stopped["item_id"] == committed["item_id"] == added["item"]["id"] == item_id
    assert added["item"]["role"] == "user" and added["item"]["content"][0]["type"] == "input_audio"
    assert 0 < started["audio_start_ms"] < 400 < stopped["audio_end_ms"]

    committed_ms = stopped["audio_end_ms"] - started["audio_start_ms"]
    echo = np.frombuffer(audio_of(events), dtype=np.int16)
    assert abs(echo.size * 1000 // RATE - committed_ms) <= 40
    turn = speech[started["audio_start_ms"] * RATE // 1000 : stopped["audio_end_ms"] * RATE // 1000]
    n = min(turn.size, echo.size)
    assert np.corrcoef(turn[:n].astype(float), echo[:n].astype(float))[0, 1] > 0.99

    response = response_done(events)
    assert response["status"] == "completed"
    transcript = transcript_of(events)
    assert transcript == f"Echo of {committed_ms / 1000:.1f} s of your audio."
    assert response["output"][0]["content"] == [{"type": "output_audio", "transcript": transcript}]
    usage = response["usage"]
    assert usage["input_token_details"]["audio_tokens"] == math.ceil(committed_ms / 100)
    assert usage["output_token_details"]["audio_tokens"] == math.ceil(echo.size * 1000 // RATE / 50)
    assert usage["output_token_details"]["text_tokens"] == math.ceil(len(transcript) / 4)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_token_details"]["cached_tokens"] == 0


async def test_three_turn_recording_gives_three_turns(session: EventLog) -> None:
    await session.conn.session.update(
        session={
            "type": "realtime",
            "audio": {"input": {"turn_detection": {"type": "server_vad", "create_response": False}}},
        }
    )
    await session.until("session.updated")
    speech = np.concatenate([load_audio("conversation-3-turns-24k.wav"), silence(1000)])
    await send_audio(session.conn, speech.tobytes())
    events = await session.settle()

    assert without_deltas(events) == 3 * [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    starts = [e["audio_start_ms"] for e in events if e["type"] == "input_audio_buffer.speech_started"]
    ends = [e["audio_end_ms"] for e in events if e["type"] == "input_audio_buffer.speech_stopped"]
    assert list(zip(starts, ends, strict=True)) == detect_turns(speech, RATE, VadConfig())


async def test_manual_turn(session: EventLog) -> None:
    await session.conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
    updated = (await session.until("session.updated"))[-1]
    assert updated["session"]["audio"]["input"]["turn_detection"] is None
    speech = load_audio("hello-book-table-en-16k.wav")[: RATE * 3 // 2]  # 1.5 s, mid-sentence: no VAD would end it
    await send_audio(session.conn, speech.tobytes())
    await session.conn.input_audio_buffer.commit()
    committed = await session.until("conversation.item.done")
    assert types_of(committed) == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    await session.conn.response.create()
    events = await session.until("rate_limits.updated")
    assert without_deltas(events) == MESSAGE_SEQUENCE
    echo = np.frombuffer(audio_of(events), dtype=np.int16)
    assert np.array_equal(echo, speech)
    assert transcript_of(events) == "Echo of 1.5 s of your audio."


async def test_text_turn_is_spoken(session: EventLog) -> None:
    text = "Hello, emulator. 42!"
    await text_turn(session, text)
    await session.conn.response.create()
    events = await session.until("rate_limits.updated")
    assert without_deltas(events) == MESSAGE_SEQUENCE
    assert transcript_of(events) == text
    audio = audio_of(events)
    assert audio == synth.synthesize(text).tobytes()
    assert len(audio) // 48 == synth.duration_ms(text)
    deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
    assert all(len(base64.b64decode(d["delta"])) == 40 * 48 for d in deltas[:-1])
    # transcript and audio deltas are interleaved, a word before the audio in which it starts
    kinds = [t for t in types_of(events) if t in DELTAS]
    assert kinds[0] == "response.output_audio_transcript.delta"
    assert kinds.index("response.output_audio.delta") < len(kinds) - 1 - kinds[::-1].index(
        "response.output_audio_transcript.delta"
    )
    usage = response_done(events)["usage"]
    assert usage["input_token_details"] == {
        "text_tokens": math.ceil(len(text) / 4),
        "audio_tokens": 0,
        "image_tokens": 0,
        "cached_tokens": 0,
        "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
    }
    assert usage["output_token_details"]["audio_tokens"] == math.ceil(synth.duration_ms(text) / 50)


async def test_text_modality(session: EventLog) -> None:
    await session.conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
    await session.until("session.updated")
    await text_turn(session, "Only words, please.")
    await session.conn.response.create()
    events = await session.until("rate_limits.updated")
    assert without_deltas(events) == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
        "rate_limits.updated",
    ]
    assert transcript_of(events, "response.output_text.delta") == "Only words, please."
    response = response_done(events)
    assert response["output_modalities"] == ["text"]
    assert response["output"][0]["content"] == [{"type": "output_text", "text": "Only words, please."}]
    assert response["usage"]["output_token_details"]["audio_tokens"] == 0


async def test_out_of_band_response_with_options(session: EventLog) -> None:
    await text_turn(session, "Summarize this conversation in a few words, please.")
    await session.conn.response.create(
        response={
            "conversation": "none",
            "output_modalities": ["text"],
            "metadata": {"purpose": "summary"},
            "max_output_tokens": 3,
        }
    )
    events = await session.until("rate_limits.updated")
    assert "conversation.item.added" not in types_of(events)
    response = response_done(events)
    assert (response["conversation_id"], response["metadata"]) == (None, {"purpose": "summary"})
    assert response["status"] == "incomplete"
    assert response["status_details"] == {"type": "incomplete", "reason": "max_output_tokens"}
    assert response["max_output_tokens"] == 3
    assert 3 <= response["usage"]["output_tokens"] < 6
    assert response["output"][0]["status"] == "incomplete"


async def test_cancel_mid_response_then_truncate(
    paced_session: EventLog, paced_emulator: OpenAIRealtimeEmulator
) -> None:
    log = paced_session
    await text_turn(log, "This answer is long enough to be cancelled well before it has been spoken in full.")
    await log.conn.response.create()
    head = await log.until("response.output_audio.delta")
    response_id = head[-1]["response_id"]
    item_id = head[-1]["item_id"]
    await log.conn.response.cancel()
    events = head + await log.until("response.done")
    after = await log.settle()

    response = response_done(events)
    assert response["status"] == "cancelled"
    assert response["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert response["output"][0]["status"] == "incomplete"
    assert not [t for t in types_of(after) if t in DELTAS]
    assert types_of(after) == ["rate_limits.updated"]
    sent_ms = len(audio_of(events, response_id)) // 48
    assert 0 < sent_ms < 2000
    usage = response["usage"]
    assert usage["output_token_details"]["audio_tokens"] == math.ceil(sent_ms / 50)
    assert response["output"][0]["content"][0]["transcript"] == transcript_of(events)

    await log.conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=sent_ms // 2)
    truncated = (await log.until("conversation.item.truncated"))[-1]
    assert (truncated["item_id"], truncated["audio_end_ms"]) == (item_id, sent_ms // 2)
    received = await paced_emulator.wait_for_event("conversation.item.truncate")
    assert received["audio_end_ms"] == sent_ms // 2

    await log.conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=sent_ms + 500)
    assert (await log.until("error"))[-1]["error"]["code"] == "invalid_value"
    second = await paced_emulator.wait_for_event("conversation.item.truncate", count=2)
    assert second["audio_end_ms"] == sent_ms + 500
    await log.conn.response.cancel()
    assert (await log.until("error"))[-1]["error"]["code"] == "response_cancel_not_active"


async def test_speech_interrupts_response(paced_session: EventLog) -> None:
    log = paced_session
    await text_turn(log, "A long answer that the user will interrupt by starting to talk over it right away.")
    await log.conn.response.create()
    first = (await log.until("response.output_audio.delta"))[-1]
    speech = np.concatenate([load_audio("weather-paris-en-16k.wav"), silence(800)])
    await send_audio(log.conn, speech.tobytes())
    events = await log.until("input_audio_buffer.speech_started")
    events += await log.until("response.done")
    done = response_done(events)
    assert done["id"] == first["response_id"]
    assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    started = types_of(events).index("input_audio_buffer.speech_started")
    assert not [e for e in events[started:] if e["type"] in DELTAS]
    # the user's turn is then committed and answered
    rest = await log.until("input_audio_buffer.committed")
    rest += await log.until("response.done", wait_s=10)
    answer = response_done(rest)
    assert answer["id"] != done["id"] and answer["status"] == "completed"


async def test_commit_under_100_ms_is_refused(session: EventLog) -> None:
    await session.conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
    await session.until("session.updated")
    await session.conn.input_audio_buffer.commit()
    error = (await session.until("error"))[-1]["error"]
    assert error["code"] == "input_audio_buffer_commit_empty"
    await send_audio(session.conn, load_audio("privet-ru-16k.wav")[: RATE * 80 // 1000].tobytes())
    await session.conn.input_audio_buffer.commit(event_id="evt_short")
    error = (await session.until("error"))[-1]["error"]
    assert (error["code"], error["event_id"]) == ("input_audio_buffer_commit_empty", "evt_short")
    assert "80.00ms" in error["message"]


async def test_tool_call_round_trip(session: EventLog) -> None:
    tool: RealtimeFunctionToolParam = {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    await session.conn.session.update(session={"type": "realtime", "tools": [tool]})
    assert (await session.until("session.updated"))[-1]["session"]["tools"] == [tool]
    await text_turn(session, "What's the weather like? Please call get_weather for Paris.")
    await session.conn.response.create()
    events = await session.until("rate_limits.updated")
    assert [t for t in types_of(events) if t != "response.function_call_arguments.delta"] == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
        "rate_limits.updated",
    ]
    added = events[1]["item"]
    assert (added["type"], added["name"], added["arguments"]) == ("function_call", "get_weather", "")
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    args = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert done["arguments"] == args and orjson.loads(args) == {"city": "Paris"}
    assert done["call_id"] == added["call_id"] and done["call_id"].startswith("call_")
    assert response_done(events)["output"][0]["arguments"] == args

    output = "Sunny, 21 degrees."
    await session.conn.conversation.item.create(
        item={"type": "function_call_output", "call_id": done["call_id"], "output": output}
    )
    await session.until("conversation.item.done")
    await session.conn.response.create()
    answer = await session.until("rate_limits.updated")
    assert without_deltas(answer) == MESSAGE_SEQUENCE
    assert transcript_of(answer) == output
    assert audio_of(answer) == synth.synthesize(output).tobytes()


async def test_g711_session_echoes_in_ulaw(session: EventLog) -> None:
    await session.conn.session.update(
        session={
            "type": "realtime",
            "audio": {"input": {"format": {"type": "audio/pcmu"}}, "output": {"format": {"type": "audio/pcmu"}}},
        }
    )
    await session.until("session.updated")
    speech = np.concatenate([load_audio("wiersz-pl-16k.wav", 8000), silence(1000, 8000)])
    await send_audio(session.conn, ulaw_encode(speech), bytes_per_ms=8)
    events = await session.until("rate_limits.updated")
    started = next(e for e in events if e["type"] == "input_audio_buffer.speech_started")
    stopped = next(e for e in events if e["type"] == "input_audio_buffer.speech_stopped")
    response = response_done(events)
    assert response["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    echo = ulaw_decode(audio_of(events))
    turn = ulaw_decode(ulaw_encode(speech))[started["audio_start_ms"] * 8 : stopped["audio_end_ms"] * 8]
    assert np.array_equal(echo, turn)


async def test_input_transcription_event(session: EventLog) -> None:
    await session.conn.session.update(
        session={
            "type": "realtime",
            "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}, "turn_detection": None}},
        }
    )
    await session.until("session.updated")
    await send_audio(session.conn, silence(500).tobytes())
    await session.conn.input_audio_buffer.commit()
    event = (await session.until("conversation.item.input_audio_transcription.completed"))[-1]
    assert event["usage"] == {"type": "duration", "seconds": 0.5}


async def test_client_errors_keep_the_socket_open(session: EventLog) -> None:
    await session.conn.send_raw("this is not json")
    assert (await session.until("error"))[-1]["error"]["code"] == "invalid_json"
    await session.conn.send_raw(orjson.dumps({"type": "response.dance", "event_id": "evt_x"}))
    error = (await session.until("error"))[-1]["error"]
    assert (error["type"], error["code"], error["event_id"]) == ("invalid_request_error", "invalid_event", "evt_x")
    await session.conn.response.cancel()
    assert (await session.until("error"))[-1]["error"]["code"] == "response_cancel_not_active"
    await session.conn.conversation.item.truncate(item_id="item_nope", content_index=0, audio_end_ms=0)
    assert (await session.until("error"))[-1]["error"]["code"] == "item_not_found"

    await text_turn(session, "One response at a time, please, " * 4)
    await session.conn.response.create()
    await session.conn.response.create()
    events = await session.until("rate_limits.updated")
    errors = [e["error"]["code"] for e in events if e["type"] == "error"]
    assert errors == ["conversation_already_has_active_response"]
    assert response_done(events)["status"] == "completed"


async def test_items_delete_and_retrieve(session: EventLog) -> None:
    await session.conn.conversation.item.create(
        item={"id": "item_mine", "type": "message", "role": "system", "content": [{"type": "input_text", "text": "x"}]}
    )
    added = (await session.until("conversation.item.done"))[-1]
    assert added["item"]["id"] == "item_mine"
    await session.conn.conversation.item.retrieve(item_id="item_mine")
    retrieved = (await session.until("conversation.item.retrieved"))[-1]
    assert retrieved["item"]["content"] == [{"type": "input_text", "text": "x"}]
    await session.conn.conversation.item.delete(item_id="item_mine")
    assert (await session.until("conversation.item.deleted"))[-1]["item_id"] == "item_mine"
    await session.conn.conversation.item.delete(item_id="item_mine")
    assert (await session.until("error"))[-1]["error"]["code"] == "item_not_found"


@pytest.mark.parametrize("base", ["/v1", ""])
async def test_path_with_and_without_v1(emulator: OpenAIRealtimeEmulator, base: str) -> None:
    client = AsyncOpenAI(api_key="sk-test", base_url=f"http://127.0.0.1:{emulator.port}{base}")
    async for log in open_session(client):
        assert log.events[0]["session"]["model"] == "gpt-realtime"
    assert emulator.connections[-1].path == f"{base}/realtime"
