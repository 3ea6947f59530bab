"""The two wire dialects a load session can speak: the relay's contract (protocol v1, JSON or
msgpack framing) and the OpenAI Realtime protocol straight to the emulator (the baseline).

A dialect is stateless and shared by all sessions of a worker. It pre-encodes the recording's
frames into wire messages once (`audio_message`), so the per-frame send is one ``ws.send`` of a
ready ``bytes`` object, and it turns each received message into calls on the session's
`Listener`. Both dialects measure the same things: audio bytes per response, its status and the
audio the server says it sent, and errors by code.
"""

from __future__ import annotations

import asyncio
import binascii
from typing import Any, Final, Protocol

import msgpack
import orjson
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from audiocodecs.format import AudioFormat
from loadtest.recording import provider_format
from providers.openai.translator import TRANSCRIPTION_MODEL, wire_format

HANDSHAKE_TIMEOUT_S: Final = 15.0
# OpenAI reports output audio as tokens, 20 per second, rounded up: ceil(ms / 50).
OPENAI_AUDIO_TOKEN_MS: Final = 50


class Refused(Exception):
    """The server refused the session after the WebSocket opened (an error event or a close)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class Listener(Protocol):
    def on_audio(self, ms: float, now: float) -> None: ...
    def on_response_started(self, response_id: str, now: float) -> None: ...
    def on_response_done(self, response_id: str, status: str, reported_ms: float, now: float) -> None: ...
    def on_error(self, code: str, fatal: bool) -> None: ...


class Dialect(Protocol):
    name: str
    url: str
    send_as_text: bool  # audio messages go in text frames (OpenAI JSON) rather than binary ones
    out_bytes_per_ms: float

    def connect_options(self) -> dict[str, Any]: ...
    def audio_message(self, frame: bytes) -> bytes: ...
    async def open(self, ws: ClientConnection) -> None: ...
    async def commit(self, ws: ClientConnection) -> None: ...
    async def end(self, ws: ClientConnection) -> bool: ...
    def feed(self, message: str | bytes, listener: Listener, now: float) -> None: ...


class RelayDialect:
    """Protocol v1: ``session.start``, audio in binary frames (or msgpack maps), ``audio.commit``."""

    name = "relay"
    send_as_text = False

    def __init__(
        self,
        url: str,
        *,
        provider: str,
        model: str | None,
        input_fmt: AudioFormat,
        output_fmt: AudioFormat,
        manual: bool,
        use_msgpack: bool,
    ) -> None:
        self.url = url
        self.msgpack = use_msgpack
        self.out_bytes_per_ms = output_fmt.bytes_per_ms
        start: dict[str, Any] = {
            "type": "session.start",
            "provider": provider,
            "input_audio": input_fmt.to_dict(),
            "output_audio": output_fmt.to_dict(),
            "turn_detection": "manual" if manual else "server_vad",
        }
        if model:
            start["model"] = model
        self._start = self._pack(start)
        self._commit = self._pack({"type": "audio.commit"})
        self._end = self._pack({"type": "session.end"})

    def _pack(self, event: dict[str, Any]) -> bytes:
        return msgpack.packb(event) if self.msgpack else orjson.dumps(event)

    async def _send_control(self, ws: ClientConnection, message: bytes) -> None:
        await ws.send(message, text=not self.msgpack)

    def connect_options(self) -> dict[str, Any]:
        proto = "relay.v1.msgpack" if self.msgpack else "relay.v1.json"
        return {"subprotocols": [Subprotocol(proto)]}

    def audio_message(self, frame: bytes) -> bytes:
        if self.msgpack:
            return msgpack.packb({"type": "audio", "audio": frame})  # type: ignore[no-any-return]
        return frame

    async def open(self, ws: ClientConnection) -> None:
        await self._send_control(ws, self._start)
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            while True:
                event = self._decode(await ws.recv())
                kind = event.get("type")
                if kind == "session.started":
                    return
                if kind == "error" and event.get("fatal"):
                    raise Refused(str(event.get("code")))

    def _decode(self, message: str | bytes) -> dict[str, Any]:
        obj = msgpack.unpackb(message) if self.msgpack else orjson.loads(message)
        return obj if isinstance(obj, dict) else {}

    async def commit(self, ws: ClientConnection) -> None:
        await self._send_control(ws, self._commit)

    async def end(self, ws: ClientConnection) -> bool:
        """Ask for a clean end; the relay answers ``session.ended`` and closes 1000."""
        await self._send_control(ws, self._end)
        return True

    def feed(self, message: str | bytes, listener: Listener, now: float) -> None:
        if self.msgpack:
            event = msgpack.unpackb(message)
            if event.get("type") == "audio":
                listener.on_audio(len(event["audio"]) / self.out_bytes_per_ms, now)
                return
        elif isinstance(message, bytes):  # JSON framing: every binary frame is output audio
            listener.on_audio(len(message) / self.out_bytes_per_ms, now)
            return
        else:
            event = orjson.loads(message)
        kind = event.get("type")
        if kind == "response.started":
            listener.on_response_started(str(event.get("response_id")), now)
        elif kind == "response.done":
            usage = event.get("usage") or {}
            reported = float(usage.get("audio_out_ms", 0))
            listener.on_response_done(str(event.get("response_id")), str(event.get("status")), reported, now)
        elif kind == "error":
            listener.on_error(str(event.get("code")), bool(event.get("fatal")))


class DirectDialect:
    """OpenAI Realtime GA straight to the emulator, configured exactly as the relay configures it
    (same formats, same transcription request, same turn detection), so the emulator does the same
    work in both phases and the difference is the relay."""

    name = "direct"
    send_as_text = True

    def __init__(self, url: str, *, input_fmt: AudioFormat, output_fmt: AudioFormat, manual: bool) -> None:
        self.url = url
        self.wire_in = provider_format(input_fmt)
        self.wire_out = provider_format(output_fmt)
        self.out_bytes_per_ms = self.wire_out.bytes_per_ms
        turn_detection = None if manual else {"type": "server_vad", "create_response": True, "interrupt_response": True}
        update = {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "output_modalities": ["audio"],
                "audio": {
                    "input": {
                        "format": wire_format(self.wire_in),
                        "transcription": {"model": TRANSCRIPTION_MODEL},
                        "turn_detection": turn_detection,
                    },
                    "output": {"format": wire_format(self.wire_out)},
                },
            },
        }
        self._update = orjson.dumps(update)
        self._commit = (b'{"type":"input_audio_buffer.commit"}', b'{"type":"response.create"}')

    def connect_options(self) -> dict[str, Any]:
        return {"additional_headers": {"Authorization": "Bearer loadtest"}}

    def audio_message(self, frame: bytes) -> bytes:
        return b'{"type":"input_audio_buffer.append","audio":"' + binascii.b2a_base64(frame, newline=False) + b'"}'

    async def open(self, ws: ClientConnection) -> None:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            sent = False
            while True:
                event = orjson.loads(await ws.recv(decode=False))
                kind = event.get("type")
                if kind == "session.created" and not sent:
                    await ws.send(self._update, text=True)
                    sent = True
                elif kind == "session.updated":
                    return
                elif kind == "error":
                    raise Refused(str((event.get("error") or {}).get("code")))

    async def commit(self, ws: ClientConnection) -> None:
        for message in self._commit:  # what the relay sends upstream for audio.commit
            await ws.send(message, text=True)

    async def end(self, ws: ClientConnection) -> bool:
        """OpenAI has no end event: the client closes (1000) itself."""
        await ws.close()
        return False

    def feed(self, message: str | bytes, listener: Listener, now: float) -> None:
        event = orjson.loads(message)
        kind = event.get("type")
        if kind == "response.output_audio.delta":
            delta: str = event["delta"]
            size = len(delta) * 3 // 4 - delta[-2:].count("=")  # decoded length, without decoding
            listener.on_audio(size / self.out_bytes_per_ms, now)
        elif kind == "response.created":
            listener.on_response_started(str(event["response"]["id"]), now)
        elif kind == "response.done":
            response = event["response"]
            tokens = ((response.get("usage") or {}).get("output_token_details") or {}).get("audio_tokens", 0)
            # tokens = ceil(ms / 50): the audio sent is more than (tokens - 1) * 50 ms.
            reported = max(0, (int(tokens) - 1) * OPENAI_AUDIO_TOKEN_MS)
            listener.on_response_done(str(response.get("id")), str(response.get("status")), reported, now)
        elif kind == "error":
            listener.on_error(str((event.get("error") or {}).get("code")), False)


__all__ = ["Dialect", "DirectDialect", "Listener", "Refused", "RelayDialect"]
