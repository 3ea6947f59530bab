"""The Cartesia emulator against the official SDK (cartesia 4.x, `AsyncCartesia(...).tts.websocket_connect()`).

The SDK builds the URL from ``websocket_base_url`` (it would force ``wss`` on ``base_url``), sends
``Authorization: Bearer`` and its default ``cartesia-version`` (2026-08-14). Every frame the
emulator sends is validated strictly against the SDK's own response types (conftest.strict_model).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson
import pytest
import pytest_asyncio
from cartesia import AsyncCartesia
from cartesia.lib._tts import AsyncTTSResourceConnection
from cartesia.types import websocket_response as wr
from cartesia.types.generation_request_param import GenerationRequestParam

from audiocodecs.g711 import alaw_encode, ulaw_encode
from audiocodecs.pcm import pcm16_to_f32
from providers.cartesia.emulator import CartesiaEmulator
from providers.cartesia.emulator_context import ContextState
from providers.emulation import synth
from tests.providers.cartesia.conftest import API_KEY, TIMEOUT_S, VOICE, strict_model, validate_server_event

TEXT = "Hello, world! I'm generating audio on Cartesia!"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def emulator() -> AsyncIterator[CartesiaEmulator]:
    async with CartesiaEmulator(speed=0.0, api_key=API_KEY, max_contexts=3) as emu:
        yield emu


@pytest_asyncio.fixture(loop_scope="session")
async def conn(emulator: CartesiaEmulator) -> AsyncIterator[AsyncTTSResourceConnection]:
    client = AsyncCartesia(api_key=API_KEY, websocket_base_url=emulator.ws_base_url)
    async with client.tts.websocket_connect() as connection:
        yield connection


def request(context_id: str, transcript: str, **overrides: Any) -> GenerationRequestParam:
    params: dict[str, Any] = {
        "context_id": context_id,
        "model_id": "sonic-3.5",
        "transcript": transcript,
        "voice": VOICE,  # the 2026-08-14 typed shape: a plain id
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000},
        "language": "en",
        "add_timestamps": True,
        **overrides,
    }
    return params  # type: ignore[return-value]


async def receive(conn: AsyncTTSResourceConnection, until: str = "done") -> list[dict[str, Any]]:
    """Raw frames, each validated strictly and by the SDK's own parser, up to one of type `until`."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            raw = await conn.recv_bytes()
            model = strict_model(raw)
            assert type(conn.parse_event(raw)) is type(model)
            events.append(validate_server_event(raw))
            if events[-1]["type"] == until:
                return events


def audio_of(events: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(e["data"]) for e in events if e["type"] == "chunk")


async def test_a_whole_utterance_with_word_timestamps(conn: AsyncTTSResourceConnection) -> None:
    await conn.send(request("sdk-1", TEXT))
    events = await receive(conn)
    assert {e["type"] for e in events} == {"chunk", "timestamps", "done"}
    assert all(e["context_id"] == "sdk-1" and e["status_code"] == 206 for e in events)
    audio = np.frombuffer(audio_of(events), dtype="<i2")
    assert np.array_equal(audio, synth.synthesize(TEXT, 24000))
    stamps = [e["word_timestamps"] for e in events if e["type"] == "timestamps"]
    words = [w for s in stamps for w in s["words"]]
    starts = [t for s in stamps for t in s["start"]]
    ends = [t for s in stamps for t in s["end"]]
    assert words == TEXT.split()
    position = 0
    for word, start, end in zip(words, starts, ends, strict=True):
        position = TEXT.index(word, position)
        assert start == pytest.approx(position * synth.CHAR_MS / 1000)
        assert end == pytest.approx((position + len(word)) * synth.CHAR_MS / 1000)
        position += len(word)
    # Timestamps trail the audio: every word was announced after the chunk in which it starts.
    heard = 0.0
    for event in events:
        if event["type"] == "chunk":
            heard += len(base64.b64decode(event["data"])) / 2 / 24000
        elif event["type"] == "timestamps":
            assert max(event["word_timestamps"]["start"]) < heard


async def test_the_sdk_context_helper_streams_pieces(
    emulator: CartesiaEmulator, conn: AsyncTTSResourceConnection
) -> None:
    # The helper reads through a background task; validate what it reads on the way.
    socket = conn._connection
    original = socket.recv

    async def validating_recv(*args: Any, **kwargs: Any) -> Any:
        raw = await original(*args, **kwargs)
        strict_model(raw)
        return raw

    socket.recv = validating_recv  # type: ignore[method-assign]
    ctx = conn.context(
        "sdk-ctx",
        model_id="sonic-3.5",
        voice=VOICE,
        output_format={"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        add_timestamps=True,
    )
    for piece in ("Streaming ", "from ", "an LLM."):
        await ctx.push(piece)
    await ctx.no_more_inputs()
    received = [event async for event in ctx.receive()]
    assert isinstance(received[-1], wr.Done)
    chunks = [e for e in received if isinstance(e, wr.Chunk)]
    audio = b"".join(c.audio or b"" for c in chunks)
    assert len(audio) == 2 * synth.samples_per_char(16000) * len("Streaming from an LLM.")
    words = [w for e in received if isinstance(e, wr.Timestamps) and e.word_timestamps for w in e.word_timestamps.words]
    assert words == ["Streaming", "from", "an", "LLM."]
    spoken = emulator.connections[-1].contexts["sdk-ctx"].spoken
    assert "".join(spoken) == "Streaming from an LLM." and all(s.endswith(" ") for s in spoken[:-1])


async def test_cancel_from_the_sdk(emulator: CartesiaEmulator, conn: AsyncTTSResourceConnection) -> None:
    emulator.connections[-1].speed = 0.5  # slow enough to cancel: this context starts paced
    await conn.send(request("sdk-cancel", "A sentence that is long enough to cancel halfway through it."))
    first = await receive(conn, until="chunk")
    assert first[-1]["context_id"] == "sdk-cancel"
    await conn.send({"context_id": "sdk-cancel", "cancel": True})
    await emulator.wait_for_event("cancel")
    emulator.connections[-1].speed = 0.0
    await conn.send(request("sdk-after", "Next."))
    later = await receive(conn)
    assert [e for e in later if e["type"] == "done"] == [
        {"type": "done", "done": True, "status_code": 206, "context_id": "sdk-after"}
    ]
    assert not [e for e in later if e["type"] == "done" and e["context_id"] == "sdk-cancel"]
    assert emulator.connections[-1].contexts["sdk-cancel"].state is ContextState.CANCELLED


@pytest.mark.parametrize(
    ("encoding", "rate"),
    [("pcm_s16le", 22050), ("pcm_f32le", 48000), ("pcm_mulaw", 8000), ("pcm_alaw", 8000), ("pcm_mulaw", 16000)],
)
async def test_every_raw_encoding(conn: AsyncTTSResourceConnection, encoding: str, rate: int) -> None:
    output = {"container": "raw", "encoding": encoding, "sample_rate": rate}
    await conn.send(request(f"fmt-{encoding}-{rate}", "Ab 1.", output_format=output))
    audio = audio_of(await receive(conn))
    samples = synth.synthesize("Ab 1.", rate)
    expected = {
        "pcm_s16le": lambda: samples.astype("<i2").tobytes(),
        "pcm_f32le": lambda: pcm16_to_f32(samples).astype("<f4").tobytes(),
        "pcm_mulaw": lambda: ulaw_encode(samples),
        "pcm_alaw": lambda: alaw_encode(samples),
    }[encoding]()
    assert audio == expected


async def test_flush_gives_flush_done_and_flush_ids(conn: AsyncTTSResourceConnection) -> None:
    await conn.send(request("sdk-flush", "First part", **{"continue": True}))
    await conn.send(request("sdk-flush", "", flush=True, **{"continue": True}))
    flushed = await receive(conn, until="flush_done")
    assert flushed[-1] == {
        "type": "flush_done",
        "done": False,
        "flush_done": True,
        "flush_id": 1,
        "status_code": 206,
        "context_id": "sdk-flush",
    }
    assert {e.get("flush_id") for e in flushed if e["type"] == "chunk"} == {1}
    await conn.send(request("sdk-flush", " and the second.", **{"continue": False}))
    rest = await receive(conn)
    assert {e.get("flush_id") for e in rest if e["type"] in ("chunk", "timestamps")} == {2}


async def test_errors_in_the_structured_shape(emulator: CartesiaEmulator, conn: AsyncTTSResourceConnection) -> None:
    await conn.send(request("bad-model", "Hi.", model_id="sonic-9000"))
    error = (await receive(conn, until="error"))[-1]
    assert (error["status_code"], error["error_code"], error["title"]) == (400, "model_not_found", "Invalid model")
    assert error["context_id"] == "bad-model" and error["done"] is True and error["request_id"]
    model = conn.parse_event(orjson.dumps(error))
    assert isinstance(model, wr.Error) and model.error.startswith("Invalid model: ")

    # Over the connection's concurrent contexts: 429 concurrency_limited for the next one.
    for n in range(3):
        await conn.send(request(f"open-{n}", "Waiting ", **{"continue": True}))
    await conn.send(request("one-too-many", "Hi."))
    error = (await receive(conn, until="error"))[-1]
    assert (error["status_code"], error["error_code"], error["context_id"]) == (
        429,
        "concurrency_limited",
        "one-too-many",
    )
    for n in range(3):
        await conn.send({"context_id": f"open-{n}", "cancel": True})
