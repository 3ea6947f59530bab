"""The ElevenLabs emulator against the official SDK (elevenlabs 2.78.0) as its client.

The SDK's one client for the TTS WebSockets is ``client.text_to_speech.convert_realtime``: the
stream-input endpoint, the synchronous `websockets` client, the key in the ``xi-api-key`` header, and
the base URL's scheme forced to ``wss`` — so the emulator serves TLS here, and the SDK trusts its
certificate through ``SSL_CERT_FILE`` (it builds its own default SSL context). The SDK hands its
caller only the decoded audio, so the test wraps the SDK's socket to capture every frame the
emulator sent and validates each strictly against the SDK's ``AudioOutput`` / ``FinalOutput``.
The multi-context endpoint has SDK types but no SDK client; test_emulator.py validates it with a
plain client against those types.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from elevenlabs import realtime_tts
from elevenlabs.client import ElevenLabs
from elevenlabs.core.api_error import ApiError
from elevenlabs.types import VoiceSettings

from providers.elevenlabs.emulator import ElevenLabsEmulator
from providers.emulation import synth
from tests.providers.elevenlabs.conftest import strict_server_message

KEY = "sk_sdk_test_0123456789"
#: the SDK reads `ConnectionClosed.code` and `.reason`, which websockets deprecates; that is the SDK's business
pytestmark = pytest.mark.filterwarnings(r"ignore:ConnectionClosed\.\w+ is deprecated:DeprecationWarning")
VOICE = "21m00Tcm4TlvDq8ikWAM"
PIECES = ["Hello", " from the", " official SDK.", " It streams text", " in small pieces,", " as an LLM would."]


class _RecordingSocket:
    """The SDK's socket, keeping every frame it receives."""

    def __init__(self, socket: Any, frames: list[str | bytes]) -> None:
        self._socket = socket
        self._frames = frames

    def send(self, message: str) -> None:
        self._socket.send(message)

    def recv(self, timeout: float | None = None) -> str | bytes:
        frame: str | bytes = self._socket.recv(timeout)
        self._frames.append(frame)
        return frame


@pytest.fixture
def frames(monkeypatch: pytest.MonkeyPatch) -> list[str | bytes]:
    captured: list[str | bytes] = []
    real_connect = realtime_tts.connect

    @contextlib.contextmanager
    def recording_connect(*args: Any, **kwargs: Any) -> Iterator[_RecordingSocket]:
        with real_connect(*args, **kwargs) as socket:
            yield _RecordingSocket(socket, captured)

    monkeypatch.setattr(realtime_tts, "connect", recording_connect)
    return captured


@pytest_asyncio.fixture(loop_scope="session")
async def emulator(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ElevenLabsEmulator]:
    async with ElevenLabsEmulator(api_key=KEY, tls=True) as emu:
        assert emu.tls is not None
        monkeypatch.setenv("SSL_CERT_FILE", str(emu.ca_pem_path))
        yield emu


def convert(emulator: ElevenLabsEmulator, key: str = KEY, **kwargs: Any) -> bytes:
    client = ElevenLabs(api_key=key, base_url=emulator.base_url)
    return b"".join(client.text_to_speech.convert_realtime(VOICE, text=iter(PIECES), **kwargs))


@pytest.mark.parametrize(("output_format", "bytes_per_ms"), [("pcm_16000", 32), ("ulaw_8000", 8)])
async def test_convert_realtime_speaks_and_every_frame_fits_the_sdk_types(
    emulator: ElevenLabsEmulator, frames: list[str | bytes], output_format: str, bytes_per_ms: int
) -> None:
    settings = VoiceSettings(stability=0.5, similarity_boost=0.8)
    audio = await asyncio.to_thread(
        convert, emulator, model_id="eleven_flash_v2_5", output_format=output_format, voice_settings=settings
    )
    conn = emulator.connections[-1]
    assert (conn.output_format_name, conn.model_id, conn.voice_id) == (output_format, "eleven_flash_v2_5", VOICE)
    assert conn.close_code == 1000

    messages = [strict_server_message(frame, multi=False) for frame in frames]
    assert messages and messages[-1] == {"isFinal": True}
    assert all("audio" in m for m in messages[:-1])
    sent = "".join(m["text"] for m in conn.received if m["type"] == "text")
    assert sent.split() == "".join(PIECES).split()  # the SDK's text_chunker only adds spaces
    chars = "".join(c for m in messages[:-1] for c in m["alignment"]["chars"])
    assert chars == sent
    assert all(m["alignment"]["charStartTimesMs"][0] == 0 for m in messages[:-1])  # relative to each chunk
    assert audio == b"".join(base64.b64decode(m["audio"]) for m in messages[:-1])
    assert len(audio) == synth.duration_ms(sent) * bytes_per_ms
    init = conn.received[0]
    assert init["type"] == "init" and init["voice_settings"]["stability"] == 0.5
    assert init["generation_config"] == {"chunk_length_schedule": [50]}


async def test_convert_realtime_with_a_wrong_key_raises_the_close(
    emulator: ElevenLabsEmulator, frames: list[str | bytes]
) -> None:
    with pytest.raises(ApiError) as raised:
        await asyncio.to_thread(convert, emulator, key="sk_wrong_key_42", output_format="pcm_16000")
    assert raised.value.status_code == 1008 and raised.value.body == "Invalid API key"
    assert frames == []
