"""Fixtures and helpers for the Gemini tests: audio, strict validation of server messages, the SDK client.

`validate_server_frame` checks one raw server message the way google-genai reads it, but strictly:
the top-level keys must be ones the SDK maps (it drops others silently), the converted message
(`_live_converters._LiveServerMessage_from_mldev`, camelCase → snake_case at the top) is validated
as `types.LiveServerMessage` in pydantic's strict JSON mode — wrong types fail — and without the
SDK's `_remove_extra_fields`, so its models' ``extra='forbid'`` reports every unknown nested field;
enum values the SDK does not know (it only warns) fail too.
"""

from __future__ import annotations

import warnings
import wave
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import orjson
import pytest_asyncio
from google import genai
from google.genai import _live_converters as live_converters
from google.genai import types

from providers.gemini.emulator import GeminiEmulator

AUDIO_DIR: Final = Path(__file__).resolve().parents[2] / "audio"
MODEL: Final = "gemini-live-2.5-flash-preview"
IN_RATE: Final = 16_000
OUT_RATE: Final = 24_000
TIMEOUT_S: Final = 5.0
#: the top-level keys `_LiveServerMessage_from_mldev` maps
SDK_TOP_LEVEL: Final = frozenset(
    {
        "setupComplete",
        "serverContent",
        "toolCall",
        "toolCallCancellation",
        "usageMetadata",
        "goAway",
        "sessionResumptionUpdate",
        "voiceActivityDetectionSignal",
        "voiceActivity",
    }
)


def validate_server_frame(raw: bytes | str) -> types.LiveServerMessage:
    """Strictly validate one raw server message against the SDK's types (see the module docstring)."""
    data = orjson.loads(raw)
    assert isinstance(data, dict) and data, "a server message is a non-empty JSON object"
    unknown = data.keys() - SDK_TOP_LEVEL
    assert not unknown, f"top-level keys the SDK does not map: {sorted(unknown)}"
    converted = live_converters._LiveServerMessage_from_mldev(data)
    with warnings.catch_warnings():
        # The SDK takes an enum value it does not know with a UserWarning (forward compatibility); here it fails.
        warnings.simplefilter("error", UserWarning)
        strict = types.LiveServerMessage.model_validate_json(orjson.dumps(converted), strict=True)
        lenient = types.LiveServerMessage._from_response(response=dict(converted), kwargs={})
    assert strict == lenient, "the SDK reads the message differently from the strict validation"
    return strict


def validate_all(frames: Iterable[bytes]) -> int:
    count = 0
    for frame in frames:
        validate_server_frame(frame)
        count += 1
    return count


def load_audio(name: str) -> npt.NDArray[np.int16]:
    """A 16 kHz mono test recording."""
    with wave.open(str(AUDIO_DIR / name), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, IN_RATE)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)


def silence(ms: int, rate: int = IN_RATE) -> npt.NDArray[np.int16]:
    return np.zeros(rate * ms // 1000, dtype=np.int16)


def chunks(samples: npt.NDArray[np.int16], ms: int = 40, rate: int = IN_RATE) -> list[bytes]:
    data = samples.astype("<i2").tobytes()
    step = rate * ms // 1000 * 2
    return [data[i : i + step] for i in range(0, len(data), step)]


def sdk_client(emulator: GeminiEmulator, api_key: str = "test-key", api_version: str = "v1beta") -> genai.Client:
    """google-genai pointed at ``emulator`` (TLS), trusting its certificate through ``async_client_args``."""
    options = types.HttpOptions(
        base_url=emulator.base_url,
        api_version=api_version,
        async_client_args={"ssl": emulator.client_ssl_context()},
    )
    return genai.Client(api_key=api_key, http_options=options)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tls_emulator() -> AsyncIterator[GeminiEmulator]:
    """Unpaced, over TLS (the SDK always speaks wss)."""
    async with GeminiEmulator(tls=True, speed=0.0) as emu:
        yield emu


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def paced_tls_emulator() -> AsyncIterator[GeminiEmulator]:
    """4x real time: a turn lasts long enough to interrupt it."""
    async with GeminiEmulator(tls=True, speed=4.0) as emu:
        yield emu
