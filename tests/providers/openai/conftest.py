"""Fixtures and helpers for the OpenAI Realtime emulator tests, with the official SDK as the client.

Every server event a test receives goes through `validate_server_event`: the raw JSON is validated
*strictly* against the SDK's own pydantic models (the SDK itself parses leniently, with
``construct_type_unchecked``), fields the SDK does not know are reported, and the SDK's parser must
pick the same class.
"""

from __future__ import annotations

import asyncio
import base64
import typing
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Final, Union, cast

import numpy as np
import numpy.typing as npt
import orjson
import pydantic
import pytest_asyncio
import soundfile as sf
import soxr
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from openai.types.realtime import RealtimeServerEvent

from providers.openai.emulator import OpenAIRealtimeEmulator

AUDIO_DIR: Final = Path(__file__).resolve().parents[2] / "audio"
RATE: Final = 24_000
MODEL: Final = "gpt-realtime"
TIMEOUT_S: Final = 5.0

# The SDK marks its unions with its own `PropertyInfo(discriminator="type")`, which pydantic does not
# see; re-annotate the members as a real discriminated union so errors name the one event class.
_MEMBERS = typing.get_args(typing.get_args(RealtimeServerEvent)[0])
_STRICT: Final[pydantic.TypeAdapter[Any]] = pydantic.TypeAdapter(
    cast(Any, Annotated[Union[_MEMBERS], pydantic.Field(discriminator="type")])  # noqa: UP007 - a runtime tuple
)
#: fields the real service sends that the SDK's models do not declare (session.created example, §1.5)
ALLOWED_EXTRAS: Final = frozenset({"session.object", "session.id", "session.expires_at"})


def _unknown_fields(value: object, path: str) -> list[str]:
    if isinstance(value, pydantic.BaseModel):
        found = [f"{path}.{key}".lstrip(".") for key in (value.model_extra or {})]
        for name in type(value).model_fields:
            found += _unknown_fields(getattr(value, name), f"{path}.{name}")
        return found
    if isinstance(value, list):
        return [f for i, v in enumerate(value) for f in _unknown_fields(v, f"{path}[{i}]")]
    return []


def strict_model(raw: bytes | str) -> pydantic.BaseModel:
    """Strictly validate one raw server frame against the SDK's types (wrong types, missing fields, unknown fields)."""
    model: pydantic.BaseModel = _STRICT.validate_json(raw, strict=True)
    unknown = [f for f in _unknown_fields(model, "") if f not in ALLOWED_EXTRAS]
    assert not unknown, f"fields the SDK does not know in {type(model).__name__}: {unknown}"
    return model


def validate_server_event(raw: bytes | str) -> dict[str, Any]:
    """`strict_model`, then the frame as a dict."""
    strict_model(raw)
    data: dict[str, Any] = orjson.loads(raw)
    return data


class EventLog:
    """Receives from an SDK connection; every event is validated and kept in ``events``."""

    def __init__(self, conn: AsyncRealtimeConnection) -> None:
        self.conn = conn
        self.events: list[dict[str, Any]] = []

    async def next(self, wait_s: float = TIMEOUT_S) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.recv_bytes(), wait_s)
        model = strict_model(raw)
        parsed = self.conn.parse_event(raw)  # what the SDK's own recv() hands an application
        assert type(parsed) is type(model), f"SDK parsed {type(parsed).__name__}, expected {type(model).__name__}"
        event: dict[str, Any] = orjson.loads(raw)
        self.events.append(event)
        return event

    async def until(self, *types: str, wait_s: float = TIMEOUT_S) -> list[dict[str, Any]]:
        """Receive up to and including the first event whose type is one of ``types``; return those events."""
        got: list[dict[str, Any]] = []
        async with asyncio.timeout(wait_s):
            while True:
                event = await self.next(wait_s)
                got.append(event)
                if event["type"] in types:
                    return got

    async def settle(self) -> list[dict[str, Any]]:
        """Everything the server still had to say: a clear/cleared round trip flushes the socket."""
        await self.conn.input_audio_buffer.clear()
        return (await self.until("input_audio_buffer.cleared"))[:-1]


def types_of(events: Iterable[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def audio_of(events: Iterable[dict[str, Any]], response_id: str | None = None) -> bytes:
    return b"".join(
        base64.b64decode(e["delta"])
        for e in events
        if e["type"] == "response.output_audio.delta" and (response_id is None or e["response_id"] == response_id)
    )


def transcript_of(events: Iterable[dict[str, Any]], kind: str = "response.output_audio_transcript.delta") -> str:
    return "".join(e["delta"] for e in events if e["type"] == kind)


def load_audio(name: str, rate: int = RATE) -> npt.NDArray[np.int16]:
    """A test recording as mono int16 at ``rate`` (resampled with soxr when needed)."""
    samples, file_rate = sf.read(AUDIO_DIR / name, dtype="int16")
    if file_rate != rate:
        samples = soxr.resample(samples, file_rate, rate)
    return np.asarray(samples, dtype=np.int16)


def silence(ms: int, rate: int = RATE) -> npt.NDArray[np.int16]:
    return np.zeros(rate * ms // 1000, dtype=np.int16)


async def send_audio(
    conn: AsyncRealtimeConnection, data: bytes, bytes_per_ms: int = 48, pattern_ms: Sequence[int] = (20, 60, 100, 40)
) -> None:
    """Append ``data`` in chunks cycling through ``pattern_ms``, as fast as the socket takes them."""
    position, i = 0, 0
    while position < len(data):
        size = pattern_ms[i % len(pattern_ms)] * bytes_per_ms
        await conn.input_audio_buffer.append(audio=base64.b64encode(data[position : position + size]).decode())
        position += size
        i += 1


async def open_session(client: AsyncOpenAI, **kwargs: Any) -> AsyncIterator[EventLog]:
    async with client.realtime.connect(model=MODEL, **kwargs) as conn:
        log = EventLog(conn)
        created = await log.next()
        assert created["type"] == "session.created"
        yield log


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def emulator() -> AsyncIterator[OpenAIRealtimeEmulator]:
    """Unpaced (speed 0): responses stream as fast as the socket takes them."""
    async with OpenAIRealtimeEmulator(speed=0.0) as emu:
        yield emu


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def paced_emulator() -> AsyncIterator[OpenAIRealtimeEmulator]:
    """4x real time: a response lasts long enough to cancel or interrupt it."""
    async with OpenAIRealtimeEmulator(speed=4.0) as emu:
        yield emu


@pytest_asyncio.fixture(loop_scope="session")
async def session(emulator: OpenAIRealtimeEmulator) -> AsyncIterator[EventLog]:
    client = AsyncOpenAI(api_key="sk-test", base_url=emulator.base_url)
    async for log in open_session(client):
        yield log


@pytest_asyncio.fixture(loop_scope="session")
async def paced_session(paced_emulator: OpenAIRealtimeEmulator) -> AsyncIterator[EventLog]:
    client = AsyncOpenAI(api_key="sk-test", base_url=paced_emulator.base_url)
    async for log in open_session(client):
        yield log
