"""Protocol v1 conformance: the real relay (child process, OpenAI emulator) against a client written from the contract.

The emulator answers an audio turn by echoing that turn's audio (in the session's output format) and a text turn
with synthesized audio and a transcript, so an audio turn can be checked end to end: what comes back must be as
long as, and sound like, what was sent.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed

from tests.conformance import audio as A
from tests.conformance.client import (
    MSGPACK_SUBPROTOCOL,
    USAGE_KEYS,
    Event,
    RelayClient,
    Response,
    Subprotocol,
    describe,
)
from tests.conformance.conftest import REPO, RelayServer

AUDIO_DIR = REPO / "tests" / "audio"
FRAME_MS = 20
VAD_TAIL_SILENCE_S = 1.0

# Duration tolerance of an echoed turn. 60 ms is three 20 ms frames: the relay and the emulator may each cut a
# turn on a frame boundary (up to one frame each), and the two resamplers on the way (client rate → provider
# rate → client rate) plus our 10 ms envelope resolution account for the rest.
DURATION_TOLERANCE_S = 0.060
MIN_ENVELOPE_CORRELATION = 0.9

COMMIT_TO_FIRST_AUDIO_MS: list[tuple[str, float]] = []


def fmt(encoding: str, rate: int) -> dict[str, Any]:
    return {"encoding": encoding, "sample_rate": rate, "channels": 1}


def speech(name: str, rate: int) -> A.Float:
    x, file_rate = A.load_wav(AUDIO_DIR / f"{name}.wav")
    return A.resample(x, file_rate, rate)


def assert_format(started: Event, key: str, encoding: str, rate: int) -> None:
    got = started[key]
    assert (got["encoding"], got["sample_rate"], got["channels"]) == (encoding, rate, 1), (
        f"session.started.{key} = {got}, asked for {encoding} at {rate} Hz"
    )


async def assert_quiet_after(client: RelayClient, response: Response) -> list[Event]:
    """Barrier (ping → pong): nothing of `response`, and no audio at all, may follow its response.done."""
    after = await client.ping()
    late = [e for e in after if e.type == "audio" or e.response_id == response.response_id]
    assert not late, f"after response.done of {response.response_id} came:{describe(late)}"
    return after


def assert_usage_counts(usage: dict[str, Any]) -> None:
    for key in USAGE_KEYS:
        value = usage.get(key, 0)
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 0, f"usage.{key} = {value!r}"


@dataclass(frozen=True)
class EchoCheck:
    """Where, in what we sent (seconds on the session's input timeline), the echo of one turn must lie."""

    window: tuple[float, float]  # the echo may not reach outside this (it would hold audio of another turn)
    speech: tuple[float, float]  # ...and must cover all of this (else it cut the user's words)


def check_echo(
    sent: A.Float, sent_rate: int, echo: A.Float, echo_rate: int, expect: EchoCheck, label: str
) -> A.EchoMatch:
    w0, w1 = expect.window
    s0, s1 = expect.speech
    reference = sent[round(w0 * sent_rate) : round(w1 * sent_rate)]
    m = A.match_echo(reference, sent_rate, echo, echo_rate)
    start = w0 + m.lag_s
    end = start + m.echo_s
    where = f"{label}: echo of {m.echo_s:.3f} s aligned at {start:.3f}-{end:.3f} s, turn window {w0:.3f}-{w1:.3f} s, "
    where += f"speech {s0:.3f}-{s1:.3f} s, envelope correlation {m.envelope_correlation:.3f}"
    print(where)
    tol = DURATION_TOLERANCE_S
    assert m.envelope_correlation >= MIN_ENVELOPE_CORRELATION, f"echo does not match the turn: {where}"
    assert start >= w0 - tol and end <= w1 + tol, f"echo reaches outside the turn: {where}"
    assert start <= s0 + tol and end >= s1 - tol, f"echo misses part of the speech: {where}"
    return m


# --- 1. audio turns: manual and server VAD, every input and output rate ---------------------------------------------

MANUAL_CASES = [
    ("hello-book-table-en-16k", 16000, 24000),
    ("hello-book-table-en-16k", 24000, 48000),
    ("weather-paris-en-16k", 48000, 16000),
]


@pytest.mark.parametrize(("name", "in_rate", "out_rate"), MANUAL_CASES, ids=lambda v: str(v))
async def test_manual_turn_echo(relay: RelayServer, name: str, in_rate: int, out_rate: int) -> None:
    x = speech(name, in_rate)
    async with await RelayClient.connect(relay.ws_url) as c:
        started = await c.start(
            turn_detection="manual", input_audio=fmt("pcm16", in_rate), output_audio=fmt("pcm16", out_rate)
        )
        assert_format(started, "input_audio", "pcm16", in_rate)
        assert_format(started, "output_audio", "pcm16", out_rate)
        await c.stream_audio(A.frames(A.to_pcm16(x), in_rate, "pcm16", FRAME_MS))
        committed_at = await c.send({"type": "audio.commit"})
        response, before = await c.collect_response()
        assert not [e for e in before if e.type.startswith("speech.")], f"VAD events in manual mode:{describe(before)}"
        assert response.status == "completed", describe(response.events)
        assert response.first_audio_at is not None
        latency_ms = (response.first_audio_at - committed_at) * 1000
        label = f"manual pcm16 {in_rate}->{out_rate} ({name})"
        COMMIT_TO_FIRST_AUDIO_MS.append((label, latency_ms))
        print(f"\n{label}: commit -> first audio byte {latency_ms:.1f} ms")

        echo = A.from_pcm16(bytes(response.audio))
        sent_s = len(x) / in_rate
        echo_s = len(echo) / out_rate
        assert abs(echo_s - sent_s) <= DURATION_TOLERANCE_S, f"{label}: echo lasts {echo_s:.3f} s, turn {sent_s:.3f} s"
        # A manual turn is exactly what was sent between session start and the commit.
        check_echo(x, in_rate, echo, out_rate, EchoCheck((0.0, sent_s), (0.0, sent_s)), label)
        await assert_quiet_after(c, response)


VAD_CASES = [
    ("weather-paris-en-16k", 16000, 48000),
    ("conversation-3-turns-24k", 24000, 16000),  # three turns, one after the other
    ("hello-book-table-en-16k", 48000, 24000),
]


@pytest.mark.parametrize(("name", "in_rate", "out_rate"), VAD_CASES, ids=lambda v: str(v))
async def test_server_vad_turn_echo(relay: RelayServer, name: str, in_rate: int, out_rate: int) -> None:
    """Server VAD: each turn is sent with ~1 s of silence after it, and the next only after the response is done.

    Where exactly the VAD puts a turn's edges is the provider's business (prefix padding, the silence it waits
    for). What the contract's promise of "the turn" pins down is: the echo holds ALL of the turn's speech and
    NOTHING of another turn's speech. So the echo, aligned by cross-correlation on what we sent, must lie between
    the end of the previous turn's speech and the end of what we sent, and cover the speech of this turn — each
    edge with the same ±60 ms as a manual turn (frame boundaries, resampling, 10 ms envelope resolution).
    """
    recording = speech(name, in_rate)
    segments = A.split_turns(recording, in_rate)
    sent = np.zeros(0, dtype=np.float32)
    previous_speech_end = 0.0
    async with await RelayClient.connect(relay.ws_url) as c:
        started = await c.start(
            turn_detection="server_vad", input_audio=fmt("pcm16", in_rate), output_audio=fmt("pcm16", out_rate)
        )
        assert_format(started, "input_audio", "pcm16", in_rate)
        assert_format(started, "output_audio", "pcm16", out_rate)
        for i, (a, b) in enumerate(segments):
            turn = np.concatenate([recording[a:b], A.silence(VAD_TAIL_SILENCE_S, in_rate)])
            offset = len(sent) / in_rate
            s0, s1 = A.speech_span(turn, in_rate)
            sent = np.concatenate([sent, turn])
            await c.stream_audio(A.frames(A.to_pcm16(turn), in_rate, "pcm16", FRAME_MS))
            response, before = await c.collect_response()
            kinds = [e.type for e in before]
            assert "speech.started" in kinds and "speech.stopped" in kinds, (
                f"turn {i}: no VAD events:{describe(before)}"
            )
            assert kinds.index("speech.started") < kinds.index("speech.stopped"), describe(before)
            assert response.status == "completed", describe(response.events)
            echo = A.from_pcm16(bytes(response.audio))
            label = f"server_vad pcm16 {in_rate}->{out_rate} ({name}) turn {i + 1}/{len(segments)}"
            expect = EchoCheck((previous_speech_end, len(sent) / in_rate), (offset + s0, offset + s1))
            check_echo(sent, in_rate, echo, out_rate, expect, label)
            previous_speech_end = offset + s1
            await assert_quiet_after(c, response)


# --- 2. μ-law 8 kHz in and out -------------------------------------------------------------------------------------


async def test_ulaw_8k_in_and_out(relay: RelayServer) -> None:
    x = speech("weather-paris-en-16k", 8000)
    async with await RelayClient.connect(relay.ws_url) as c:
        started = await c.start(turn_detection="manual", input_audio=fmt("ulaw", 8000), output_audio=fmt("ulaw", 8000))
        assert_format(started, "input_audio", "ulaw", 8000)
        assert_format(started, "output_audio", "ulaw", 8000)
        await c.stream_audio(A.frames(A.to_ulaw(x), 8000, "ulaw", FRAME_MS))
        await c.send({"type": "audio.commit"})
        response, _ = await c.collect_response()
        assert response.status == "completed", describe(response.events)
        echo = A.from_ulaw(bytes(response.audio))  # one byte per sample
        sent_s, echo_s = len(x) / 8000, len(echo) / 8000
        assert abs(echo_s - sent_s) <= DURATION_TOLERANCE_S, f"μ-law echo lasts {echo_s:.3f} s, turn {sent_s:.3f} s"
        check_echo(x, 8000, echo, 8000, EchoCheck((0.0, sent_s), (0.0, sent_s)), "manual ulaw 8000->8000")
        await assert_quiet_after(c, response)


# --- 3. barge-in ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("subprotocol", ["relay.v1.json", "relay.v1.msgpack"])
async def test_barge_in_cancels_response(realtime_relay: RelayServer, subprotocol: Subprotocol) -> None:
    """A 17.7 s echo paced in real time; after its first audio: `playback`, then `response.cancel`."""
    x = speech("conversation-3-turns-16k", 16000)
    cancel_sent_at: float | None = None
    audio_before_cancel = 0

    async def barge_in(response: Response, _: Event) -> None:
        nonlocal cancel_sent_at, audio_before_cancel
        if cancel_sent_at is None and len(response.audio) >= 3 * 960:  # three 20 ms frames at 24 kHz pcm16
            audio_before_cancel = len(response.audio)
            played_ms = len(response.audio) // 48 // 2  # say we have played about half of it
            await c.send({"type": "playback", "response_id": response.response_id, "played_ms": played_ms})
            cancel_sent_at = await c.send({"type": "response.cancel"})

    async with await RelayClient.connect(realtime_relay.ws_url, subprotocol) as c:
        await c.start(turn_detection="manual", output_audio=fmt("pcm16", 24000))
        await c.stream_audio(A.frames(A.to_pcm16(x), 16000, "pcm16", FRAME_MS))
        await c.send({"type": "audio.commit"})
        response, _ = await c.collect_response(wait_s=10, on_audio=barge_in)
        assert cancel_sent_at is not None, (
            f"the response finished before it could be cancelled:{describe(response.events)}"
        )
        assert response.done is not None
        assert response.status == "cancelled", f"response.done after response.cancel:{describe(response.events)}"
        after_cancel = len(response.audio) - audio_before_cancel
        print(
            f"\nbarge-in ({subprotocol}): response.done {(response.done.at - cancel_sent_at) * 1000:.1f} ms after "
            f"response.cancel; {after_cancel / 48:.0f} ms of audio arrived in between (in flight); "
            f"{len(response.audio) / 48:.0f} ms of the {len(x) / 16:.0f} ms echo in all"
        )
        assert len(response.audio) / 48 < len(x) / 16 / 2, "most of the response arrived despite the cancel"
        if subprotocol == MSGPACK_SUBPROTOCOL:
            ids = {e.response_id for e in response.of_type("audio")}
            assert ids == {response.response_id}, f"audio response_ids {ids}"
        await assert_quiet_after(c, response)


@pytest.mark.parametrize("subprotocol", ["relay.v1.json", "relay.v1.msgpack"])
async def test_speech_started_interrupts_response(realtime_relay: RelayServer, subprotocol: Subprotocol) -> None:
    """Server-VAD barge-in: the user talks over a response. After `speech.started` no audio of that response."""
    conversation = speech("conversation-3-turns-16k", 16000)
    a, b = A.split_turns(conversation, 16000)[0]
    first_turn = np.concatenate([conversation[a:b], A.silence(VAD_TAIL_SILENCE_S, 16000)])
    talk_over = np.concatenate([speech("weather-paris-en-16k", 16000), A.silence(VAD_TAIL_SILENCE_S, 16000)])
    async with await RelayClient.connect(realtime_relay.ws_url, subprotocol) as c:
        await c.start(turn_detection="server_vad", output_audio=fmt("pcm16", 24000))
        await c.stream_audio(A.frames(A.to_pcm16(first_turn), 16000, "pcm16", FRAME_MS))
        events = await c.collect_until(lambda e: e.type == "audio", what="the first audio of the response")
        started = [e for e in events if e.type == "response.started"]
        assert started, describe(events)
        rid = started[-1]["response_id"]
        await c.stream_audio(A.frames(A.to_pcm16(talk_over), 16000, "pcm16", FRAME_MS))
        events = await c.collect_until(
            lambda e: e.type == "response.done" and e.get("response_id") == rid, what=f"response.done of {rid}"
        )
        kinds = [e.type for e in events]
        assert "speech.started" in kinds, f"no speech.started while talking over {rid}:{describe(events)}"
        assert events[-1]["status"] == "cancelled", describe(events)
        after_speech = events[kinds.index("speech.started") + 1 :]
        late = [e for e in after_speech if e.type == "audio" and e.response_id in (None, rid)]
        assert not late, f"audio of {rid} after speech.started:{describe(events)}"
        # The interruption is a turn of its own and gets its own response.
        events = await c.collect_until(lambda e: e.type == "response.started", what="the next response")
        assert not [e for e in events if e.type == "audio"], f"audio between two responses:{describe(events)}"
        assert events[-1]["response_id"] != rid


# --- 4. msgpack subprotocol ------------------------------------------------------------------------------------------


async def test_msgpack_full_turn(relay: RelayServer) -> None:
    x = speech("weather-paris-en-16k", 16000)
    async with await RelayClient.connect(relay.ws_url, MSGPACK_SUBPROTOCOL) as c:
        assert c.ws.subprotocol == MSGPACK_SUBPROTOCOL
        started = await c.start(turn_detection="manual", output_audio=fmt("pcm16", 24000))
        assert_format(started, "input_audio", "pcm16", 16000)  # the contract's default input
        await c.stream_audio(A.frames(A.to_pcm16(x), 16000, "pcm16", FRAME_MS))  # as {"type": "audio", ...} maps
        await c.send({"type": "audio.commit"})
        response, _ = await c.collect_response()
        assert response.status == "completed", describe(response.events)
        audio = response.of_type("audio")
        assert audio, "no audio"
        # Every message was a msgpack map in a binary frame (the client refuses anything else).
        assert all(not e.binary_frame for e in c.received)
        assert {e.response_id for e in audio} == {response.response_id}
        echo = A.from_pcm16(bytes(response.audio))
        sent_s = len(x) / 16000
        check_echo(x, 16000, echo, 24000, EchoCheck((0.0, sent_s), (0.0, sent_s)), "msgpack manual 16000->24000")
        await assert_quiet_after(c, response)


async def test_base64_audio_both_ways(relay: RelayServer) -> None:
    """Text-only clients: base64 `audio` messages in, and (project extension) `output_audio_framing: "base64"` out."""
    x = speech("weather-paris-en-16k", 16000)
    async with await RelayClient.connect(relay.ws_url) as c:
        await c.start(turn_detection="manual", output_audio=fmt("pcm16", 16000), output_audio_framing="base64")
        await c.stream_audio(A.frames(A.to_pcm16(x), 16000, "pcm16", FRAME_MS), as_base64=True)
        await c.send({"type": "audio.commit"})
        response, _ = await c.collect_response()
        assert response.status == "completed", describe(response.events)
        audio = response.of_type("audio")
        assert audio and all(not e.binary_frame for e in audio), "assistant audio came in binary frames"
        assert {e.response_id for e in audio} == {response.response_id}
        sent_s = len(x) / 16000
        echo = A.from_pcm16(bytes(response.audio))
        check_echo(x, 16000, echo, 16000, EchoCheck((0.0, sent_s), (0.0, sent_s)), "base64 manual 16000->16000")


async def test_default_subprotocol_is_json(relay: RelayServer) -> None:
    async with await RelayClient.connect(relay.ws_url, None) as c:
        assert c.ws.subprotocol in (None, "relay.v1.json")
        await c.start()
        assert [e.type for e in await c.ping()] == []


# --- 5. text turn ----------------------------------------------------------------------------------------------------


async def test_text_turn(relay: RelayServer) -> None:
    async with await RelayClient.connect(relay.ws_url) as c:
        await c.start(modalities=["audio", "text"])
        # Pieces accumulate until `final: true`: one turn, one response.
        await c.send({"type": "text", "text": "Could you book a table ", "final": False})
        await c.send({"type": "text", "text": "for two tonight?", "final": True})
        response, before = await c.collect_response()
        assert not [e for e in before if e.type.startswith("speech.")], describe(before)
        assert response.status == "completed", describe(response.events)
        kinds = [e.type for e in response.events]
        assert kinds[0] == "response.started" and kinds[-1] == "response.done"
        deltas = [e for e in response.events if e.type in ("transcript.delta", "text.delta")]
        assert deltas, f"no transcript/text deltas:{describe(response.events)}"
        assert all(e.get("role", "assistant") == "assistant" for e in deltas), describe(deltas)
        assert response.audio, f"no audio:{describe(response.events)}"
        assert len(response.audio) % 2 == 0, "pcm16 output of odd length"
        for kind in ("transcript", "text"):
            done = [
                e for e in response.events if e.type == f"{kind}.done" and e.get("role", "assistant") == "assistant"
            ]
            if done:
                whole = "".join(e["text"] for e in response.events if e.type == f"{kind}.delta")
                assert done[-1]["text"] == whole, f"{kind}.done {done[-1]['text']!r} != deltas {whole!r}"
        assert response.done is not None
        usage = response.done["usage"]
        assert_usage_counts(usage)
        assert any(usage.get(k, 0) > 0 for k in USAGE_KEYS), f"a completed response with no usage at all: {usage}"
        after = await assert_quiet_after(c, response)
        assert not [e for e in after if e.type == "response.started"], "two pieces of one turn got two responses"


# --- 6. errors -------------------------------------------------------------------------------------------------------


async def expect_error(c: RelayClient, code: str, *, fatal: bool = False) -> Event:
    # In an idle session the error is the very next thing the relay says.
    events = await c.collect_until(lambda e: True, what=f"error {code}")
    error = events[-1]
    assert error.type == "error", f"expected error {code}, got:{describe(events)}"
    assert (error["code"], error["fatal"]) == (code, fatal), f"expected {code} (fatal {fatal}):{describe(events)}"
    return error


async def expect_close(c: RelayClient, code: int, *, allowed: tuple[str, ...] = ("session.ended",)) -> list[Event]:
    events = await c.until_closed()
    assert c.close_code == code, f"closed with {c.close_code} {c.close_reason!r}, expected {code}:{describe(events)}"
    unexpected = [e for e in events if e.type not in allowed]
    assert not unexpected, f"before the close {code}:{describe(events)}"
    return events


async def test_malformed_json_is_not_fatal(relay: RelayServer) -> None:
    async with await RelayClient.connect(relay.ws_url) as c:
        await c.start()
        await c.send_raw('{"type": "ping", "id": ')
        await expect_error(c, "invalid_message")
        await c.ping()  # the session goes on


@pytest.mark.parametrize(
    "message",
    [
        {"type": "playback", "response_id": "resp_x", "played_ms": "a lot"},
        {"type": "text", "text": 42},
        {"type": "audio.commit", "respond": "yes"},
        {"no_type": True},
    ],
    ids=["playback.played_ms-str", "text.text-int", "audio.commit.respond-str", "no-type"],
)
async def test_wrong_typed_field_is_invalid_message(relay: RelayServer, message: dict[str, Any]) -> None:
    async with await RelayClient.connect(relay.ws_url) as c:
        await c.start(turn_detection="manual")
        await c.send_raw(c.encode(message))
        await expect_error(c, "invalid_message")
        await c.ping()


async def test_unknown_type(relay: RelayServer) -> None:
    async with await RelayClient.connect(relay.ws_url) as c:
        await c.start()
        await c.send({"type": "session.teleport"})
        await expect_error(c, "unknown_type")
        await c.ping()


@pytest.mark.parametrize(
    "message",
    [{"type": "text", "text": "too early"}, {"type": "response.create"}, b"\x00\x00" * 320],
    ids=["text", "response.create", "binary-audio"],
)
async def test_message_before_session_start(relay: RelayServer, message: dict[str, Any] | bytes) -> None:
    async with await RelayClient.connect(relay.ws_url) as c:
        if isinstance(message, bytes):
            await c.send_audio(message)
        else:
            await c.send(message)
        await expect_error(c, "invalid_state")
        await c.start()  # not fatal: the session can still start
        await c.ping()


async def test_second_session_start(relay: RelayServer) -> None:
    async with await RelayClient.connect(relay.ws_url) as c:
        await c.start()
        await c.send({"type": "session.start", "provider": "openai"})
        await expect_error(c, "invalid_state")
        await c.ping()


async def test_odd_byte_pcm16_frame(relay: RelayServer) -> None:
    async with await RelayClient.connect(relay.ws_url) as c:
        await c.start(turn_detection="manual")
        await c.send_audio(b"\x00\x01\x02")
        await expect_error(c, "invalid_audio")
        await c.ping()
        # The frame was dropped, the session still works: a good turn is still answered.
        x = speech("weather-paris-en-16k", 16000)
        await c.stream_audio(A.frames(A.to_pcm16(x), 16000, "pcm16", FRAME_MS))
        await c.send({"type": "audio.commit"})
        response, _ = await c.collect_response()
        assert response.status == "completed"


@pytest.mark.parametrize("packet", [b"\xff\xff\xff", b""], ids=["garbage", "empty"])
async def test_undecodable_opus_frame(relay: RelayServer, packet: bytes) -> None:
    async with await RelayClient.connect(relay.ws_url) as c:
        await c.start(turn_detection="manual", input_audio=fmt("opus", 48000))
        await c.send_audio(packet)
        await expect_error(c, "invalid_audio")
        await c.ping()


async def test_unknown_provider_is_fatal_1008(relay: RelayServer) -> None:
    async with await RelayClient.connect(relay.ws_url) as c:
        await c.send({"type": "session.start", "provider": "no-such-provider"})
        await expect_error(c, "unsupported", fatal=True)
        await expect_close(c, 1008)


async def test_unknown_model_is_fatal_1008(relay: RelayServer) -> None:
    async with await RelayClient.connect(relay.ws_url) as c:
        await c.send({"type": "session.start", "provider": "openai", "model": "no-such-model-v0"})
        await expect_error(c, "unsupported", fatal=True)
        await expect_close(c, 1008)


async def test_unknown_modality_is_fatal_1008(relay: RelayServer) -> None:
    async with await RelayClient.connect(relay.ws_url) as c:
        await c.send({"type": "session.start", "provider": "openai", "modalities": ["video"]})
        await expect_error(c, "unsupported", fatal=True)
        await expect_close(c, 1008)


async def test_ten_malformed_messages_close_1008(relay: RelayServer) -> None:
    async with await RelayClient.connect(relay.ws_url) as c:
        await c.start()
        for i in range(9):
            await c.send_raw(f"not json {i}")
        events = await c.ping()
        errors = [e for e in events if e.type == "error"]
        assert [(e["code"], e["fatal"]) for e in errors] == [("invalid_message", False)] * 9, describe(events)
        await c.send_raw("not json 10")
        events = await c.until_closed()
        assert c.close_code == 1008, f"closed with {c.close_code}, expected 1008 after the 10th:{describe(events)}"
        assert events and events[0].type == "error" and events[0]["code"] == "invalid_message", describe(events)
        # Between the 10th error and the close, only what a fatal end may bring: a fatal `error` saying why,
        # and `session.ended`.
        for e in events[1:]:
            assert e.type == "session.ended" or (e.type == "error" and e["fatal"] is True), describe(events)


async def test_message_too_big_closes_1009(relay: RelayServer) -> None:
    async with await RelayClient.connect(relay.ws_url) as c:
        started = await c.start(turn_detection="manual")
        limit = started["limits"]["max_message_bytes"]
        assert limit == 1 << 20, f"default limit {limit}, the contract says 1 MiB"
        with contextlib.suppress(ConnectionClosed):  # the relay may close while we still send
            await c.send_audio(bytes(limit + 2))  # even: valid pcm16, only too big
        await expect_close(c, 1009, allowed=("session.ended", "error"))


# --- 7. session.end --------------------------------------------------------------------------------------------------


async def test_session_end(relay: RelayServer) -> None:
    x = speech("weather-paris-en-16k", 16000)
    async with await RelayClient.connect(relay.ws_url) as c:
        await c.start(turn_detection="manual")
        await c.stream_audio(A.frames(A.to_pcm16(x), 16000, "pcm16", FRAME_MS))
        await c.send({"type": "audio.commit"})
        response, _ = await c.collect_response()
        assert response.done is not None
        ended, events = await c.end()
        assert events[-1] is ended, f"session.ended must be the last message:{describe(events)}"
        assert c.close_code == 1000, f"closed with {c.close_code} {c.close_reason!r}"
        assert ended["reason"] == "client_end"  # the value docs/protocol.md documents
        totals = ended["usage"]
        assert_usage_counts(totals)
        per_response = response.done["usage"]
        for key in USAGE_KEYS:  # session totals include the one response's counts
            assert totals.get(key, 0) >= per_response.get(key, 0), f"{key}: session {totals}, response {per_response}"
        assert any(totals.get(k, 0) > 0 for k in USAGE_KEYS), f"empty session totals after a turn: {totals}"


# --- 8. ping / pong --------------------------------------------------------------------------------------------------


async def test_ping_pong(relay: RelayServer) -> None:
    async with await RelayClient.connect(relay.ws_url) as c:
        await c.start()
        ids = ["a", "ping-2", "三"]
        for ping_id in ids:
            await c.send({"type": "ping", "id": ping_id})
        pongs = await c.collect_until(lambda e: e.type == "pong" and e.get("id") == ids[-1], what="pongs")
        assert [e["id"] for e in pongs if e.type == "pong"] == ids, describe(pongs)


def test_print_latencies() -> None:
    """Summary for `pytest -s`: commit → first audio byte of the manual turns above."""
    for label, ms in COMMIT_TO_FIRST_AUDIO_MS:
        print(f"\ncommit -> first audio byte: {ms:7.1f} ms  {label}")
