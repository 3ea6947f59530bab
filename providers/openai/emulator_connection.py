"""One client socket on the OpenAI Realtime emulator: authentication, the client events, turns.

Two tasks per connection: `run` receives and answers client events (the handlers below), and a
response task plays `ResponseRun`s one after the other (a response the VAD creates while another is
still finishing waits its turn). Client mistakes become ``error`` events (`ClientEventError`) and
the socket stays open, as on the real service.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import numpy as np
import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from providers.emulation.faults import Faults
from providers.emulation.server import ConnectionDropped, EmulatedConnection, new_id
from providers.emulation.turns import InputAudioBuffer, SpeechStarted, SpeechStopped, TurnEvent
from providers.openai.emulator_conversation import Conversation, UserInput
from providers.openai.emulator_reply import plan_reply
from providers.openai.emulator_response import ResponseRun, RunState
from providers.openai.emulator_session import (
    PCM,
    ClientEventError,
    SessionState,
    parse_format,
    parse_max_output_tokens,
    parse_output_modalities,
    parse_tool_choice,
    parse_tools,
    parse_voice,
    voice_name,
)

__all__ = ["API_KEY_SUBPROTOCOL_PREFIX", "CLOSE_UNAUTHORIZED", "MIN_COMMIT_MS", "OpenAIEmulatedConnection"]

log = logging.getLogger(__name__)

#: close code and reason the real service uses after refusing a key
CLOSE_UNAUTHORIZED: Final = 3000
API_KEY_SUBPROTOCOL_PREFIX: Final = "openai-insecure-api-key."
#: ``input_audio_buffer.commit`` needs this much audio
MIN_COMMIT_MS: Final = 100
_RESPONSE_KEYS: Final = frozenset(
    {
        "conversation",
        "output_modalities",
        "instructions",
        "metadata",
        "input",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "audio",
        "prompt",
        "reasoning",
        "parallel_tool_calls",
    }
)
_USER_PARTS: Final = frozenset({"input_text", "input_audio", "input_image"})
_ASSISTANT_PARTS: Final = frozenset({"output_text", "output_audio"})

Handler = Callable[["OpenAIEmulatedConnection", dict[str, Any]], Awaitable[None]]


def _b64_len(data: str) -> int:
    """Decoded length of a base64 string (for the recording; the audio itself is not kept)."""
    return len(data) * 3 // 4 - data[-2:].count("=")


def _redact(event: dict[str, Any]) -> dict[str, Any]:
    """The event as recorded: base64 audio replaced by its decoded byte length."""
    if event.get("type") == "input_audio_buffer.append" and isinstance(event.get("audio"), str):
        return {**event, "audio": _b64_len(event["audio"])}
    item = event.get("item")
    if isinstance(item, dict) and isinstance(item.get("content"), list):
        content = [
            {**p, "audio": _b64_len(p["audio"])} if isinstance(p, dict) and isinstance(p.get("audio"), str) else p
            for p in item["content"]
        ]
        return {**event, "item": {**item, "content": content}}
    return event


def _event(type: str, **fields: Any) -> dict[str, Any]:
    return {"type": type, "event_id": new_id("evt_"), **fields}


def _required_str(event: Mapping[str, Any], key: str) -> str:
    value = event.get(key)
    if not isinstance(value, str):
        raise ClientEventError("missing_required_parameter", f"Missing required parameter: '{key}'.", param=key)
    return value


def _required_int(event: Mapping[str, Any], key: str) -> int:
    value = event.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ClientEventError(
            "invalid_value", f"Invalid value for '{key}': expected a non-negative integer.", param=key
        )
    return value


class OpenAIEmulatedConnection(EmulatedConnection):
    def __init__(
        self,
        ws: ServerConnection,
        faults: Faults,
        *,
        record: bool = True,
        speed: float = 0.0,
        chunk_ms: int = 40,
        api_key: str | None = None,
    ) -> None:
        super().__init__(ws, faults, record=record)
        self.model = (self.query.get("model") or [""])[0]
        self.speed = speed
        self.chunk_ms = chunk_ms
        self._api_key = api_key
        self.session = SessionState(self.model)
        self.conversation = Conversation()
        self.input = InputAudioBuffer(PCM.rate, self.session.vad_config)
        self.active: ResponseRun | None = None
        self._queued: ResponseRun | None = None
        self._task: asyncio.Task[None] | None = None
        self._speech_item_id: str | None = None
        self._odd_byte = b""
        #: ids of every response started on this connection
        self.response_ids: list[str] = []

    # -- lifecycle ------------------------------------------------------------------------------

    def _presented_key(self) -> str | None:
        request = self.ws.request
        if request is None:
            return None
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        for header in request.headers.get_all("Sec-WebSocket-Protocol"):
            for offered in header.split(","):
                offered = offered.strip()
                if offered.startswith(API_KEY_SUBPROTOCOL_PREFIX):
                    return offered[len(API_KEY_SUBPROTOCOL_PREFIX) :]
        return None

    async def _refuse(self, code: str, message: str) -> None:
        error = ClientEventError(code, message)
        await self.send_event(_event("error", error=error.to_error(None)))
        await self.ws.close(CLOSE_UNAUTHORIZED, f"invalid_request_error.{code}")

    async def run(self) -> None:
        if self._api_key is not None:
            key = self._presented_key()
            if key is None:
                await self._refuse(
                    "invalid_api_key",
                    "Missing bearer or basic authentication in header or 'openai-insecure-api-key' subprotocol.",
                )
                return
            if not hmac.compare_digest(key.encode(), self._api_key.encode()):
                await self._refuse("invalid_api_key", "Incorrect API key provided.")
                return
        if not self.model:
            await self._refuse("missing_model", "Missing required parameter: 'model'. Add ?model=… to the URL.")
            return
        await self.send_event(_event("session.created", session=self.session.wire))
        try:
            async for message in self.ws:
                await self._on_message(message)
        finally:
            await self._stop_responses()

    async def _stop_responses(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- dispatch -------------------------------------------------------------------------------

    async def _on_message(self, message: str | bytes) -> None:
        try:
            event = orjson.loads(message)
        except orjson.JSONDecodeError:
            await self._error(ClientEventError("invalid_json", "The server could not parse the event as JSON."), None)
            return
        if not isinstance(event, dict):
            await self._error(ClientEventError("invalid_event", "An event must be a JSON object."), None)
            return
        if self.record:
            self.record_received(_redact(event))
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        kind = event.get("type")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        try:
            if handler is None:
                if not isinstance(kind, str):
                    raise ClientEventError("invalid_event", "The 'type' field is missing.", param="type")
                supported = ", ".join(f"'{k}'" for k in _HANDLERS)
                raise ClientEventError(
                    "invalid_event", f"Invalid value: '{kind}'. Supported values are: {supported}.", param="type"
                )
            await handler(self, event)
        except ClientEventError as exc:
            await self._error(exc, event_id)

    async def _error(self, exc: ClientEventError, event_id: str | None) -> None:
        await self.send_event(_event("error", error=exc.to_error(event_id)))

    # -- session and input audio ----------------------------------------------------------------

    async def _session_update(self, event: dict[str, Any]) -> None:
        if self.session.update(event.get("session")):
            self.input.reconfigure(self.session.input_format.rate, self.session.vad_config)
            self._speech_item_id = None
            self._odd_byte = b""
        await self.send_event(_event("session.updated", session=self.session.wire))

    async def _append(self, event: dict[str, Any]) -> None:
        audio = _required_str(event, "audio")
        try:
            data = binascii.a2b_base64(audio)
        except binascii.Error:
            raise ClientEventError("invalid_value", "Invalid 'audio': not base64.", param="audio") from None
        fmt = self.session.input_format
        if fmt.sample_bytes == 2:
            if self._odd_byte:
                data = self._odd_byte + data
            self._odd_byte = data[-1:] if len(data) % 2 else b""
            if self._odd_byte:
                data = data[:-1]
        for turn_event in self.input.append(fmt.decode(data)):
            await self._on_turn(turn_event)

    async def _on_turn(self, turn: TurnEvent) -> None:
        td = self.session.turn_detection or {}
        if isinstance(turn, SpeechStarted):
            self._speech_item_id = new_id("item_")
            if self.active is not None and td.get("interrupt_response", True):
                self.active.cancel("turn_detected")  # before speech_started: no delta after it
                self._queued = None
            await self.send_event(
                _event("input_audio_buffer.speech_started", audio_start_ms=turn.start_ms, item_id=self._speech_item_id)
            )
        elif isinstance(turn, SpeechStopped):
            item_id = self._speech_item_id or new_id("item_")
            self._speech_item_id = None
            await self.send_event(
                _event("input_audio_buffer.speech_stopped", audio_end_ms=turn.end_ms, item_id=item_id)
            )
            await self._commit_turn(item_id, turn.audio)
            if td.get("create_response", True):
                self._start(self._new_run(None))

    async def _commit(self, event: dict[str, Any]) -> None:
        buffered = self.input.buffered_ms
        if buffered < MIN_COMMIT_MS:
            raise ClientEventError(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {buffered:.2f}ms of audio.",
            )
        _, _, audio = self.input.commit()
        item_id = self._speech_item_id or new_id("item_")
        self._speech_item_id = None
        await self._commit_turn(item_id, audio)

    async def _commit_turn(self, item_id: str, audio: np.ndarray[Any, np.dtype[np.int16]]) -> None:
        item = Conversation.user_audio_item(item_id)
        previous = self.conversation.add(item)
        rate = self.session.input_format.rate
        self.conversation.last_input = UserInput("audio", audio=audio, rate=rate)
        await self.send_event(_event("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id))
        await self.send_event(_event("conversation.item.added", previous_item_id=previous, item=item))
        await self.send_event(_event("conversation.item.done", previous_item_id=previous, item=item))
        if self.session.transcription is not None:
            seconds = audio.size / rate
            await self.send_event(
                _event(
                    "conversation.item.input_audio_transcription.completed",
                    item_id=item_id,
                    content_index=0,
                    transcript=f"[{seconds:.1f} s of audio]",
                    usage={"type": "duration", "seconds": round(seconds, 3)},
                )
            )

    async def _clear(self, event: dict[str, Any]) -> None:
        self.input.clear()
        self._speech_item_id = None
        self._odd_byte = b""
        await self.send_event(_event("input_audio_buffer.cleared"))

    # -- conversation items ---------------------------------------------------------------------

    async def _item_create(self, event: dict[str, Any]) -> None:
        raw = event.get("item")
        if not isinstance(raw, dict):
            raise ClientEventError("missing_required_parameter", "Missing required parameter: 'item'.", param="item")
        previous_item_id = event.get("previous_item_id")
        if previous_item_id not in (None, "root") and previous_item_id not in self.conversation:
            raise ClientEventError(
                "item_not_found", f"Item with item_id not found: {previous_item_id}", param="previous_item_id"
            )
        item_id = raw.get("id") or new_id("item_")
        if not isinstance(item_id, str) or item_id in self.conversation:
            raise ClientEventError("invalid_value", f"Invalid item id: {item_id!r} (already used?).", param="item.id")
        item: dict[str, Any] = {**raw, "id": item_id, "object": "realtime.item", "status": "completed"}
        user_input = self._user_input(item)
        if isinstance(item.get("content"), list):  # audio never goes back out
            item["content"] = [{k: v for k, v in part.items() if k != "audio"} for part in item["content"]]
        previous = self.conversation.add(item)
        if user_input is not None:
            self.conversation.last_input = user_input
        await self.send_event(_event("conversation.item.added", previous_item_id=previous, item=item))
        await self.send_event(_event("conversation.item.done", previous_item_id=previous, item=item))

    def _user_input(self, item: dict[str, Any]) -> UserInput | None:
        """Validate a created item; what it gives the next response to answer, if anything."""
        kind = item.get("type")
        if kind == "function_call_output":
            call_id = _required_str(item, "call_id")
            output = _required_str(item, "output")
            return UserInput("tool_output", text=output, call_name=self.conversation.call_name(call_id))
        if kind == "function_call":
            _required_str(item, "name")
            _required_str(item, "call_id")
            item.setdefault("arguments", "")
            return None
        if kind != "message":
            raise ClientEventError("invalid_value", f"Invalid value: {kind!r} for 'item.type'.", param="item.type")
        role = item.get("role")
        content = item.get("content")
        allowed = {"user": _USER_PARTS, "system": frozenset({"input_text"}), "assistant": _ASSISTANT_PARTS}.get(
            role if isinstance(role, str) else ""
        )
        if allowed is None:
            raise ClientEventError("invalid_value", f"Invalid value: {role!r} for 'item.role'.", param="item.role")
        if not isinstance(content, list):
            raise ClientEventError("invalid_value", "'item.content' must be an array.", param="item.content")
        texts: list[str] = []
        audio: list[np.ndarray[Any, np.dtype[np.int16]]] = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in allowed:
                raise ClientEventError(
                    "invalid_value", f"Invalid content part for a {role} message.", param=f"item.content[{i}].type"
                )
            if part["type"] == "input_text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif part["type"] == "input_audio" and isinstance(part.get("audio"), str):
                try:
                    audio.append(self.session.input_format.decode(binascii.a2b_base64(part["audio"])))
                except binascii.Error:
                    raise ClientEventError(
                        "invalid_value", "Invalid 'audio': not base64.", param=f"item.content[{i}].audio"
                    ) from None
        if role != "user":
            return None
        if texts:
            return UserInput("text", text=" ".join(texts))
        if audio:
            return UserInput("audio", audio=np.concatenate(audio), rate=self.session.input_format.rate)
        return None

    async def _item_truncate(self, event: dict[str, Any]) -> None:
        item_id = _required_str(event, "item_id")
        content_index = _required_int(event, "content_index")
        audio_end_ms = _required_int(event, "audio_end_ms")
        self.conversation.truncate(item_id, content_index, audio_end_ms)
        await self.send_event(
            _event(
                "conversation.item.truncated", item_id=item_id, content_index=content_index, audio_end_ms=audio_end_ms
            )
        )

    async def _item_delete(self, event: dict[str, Any]) -> None:
        item_id = _required_str(event, "item_id")
        self.conversation.delete(item_id)
        await self.send_event(_event("conversation.item.deleted", item_id=item_id))

    async def _item_retrieve(self, event: dict[str, Any]) -> None:
        item = self.conversation.get(_required_str(event, "item_id"))
        await self.send_event(_event("conversation.item.retrieved", item=item))

    # -- responses --------------------------------------------------------------------------------

    @property
    def response_active(self) -> bool:
        return (self.active is not None and self.active.state is not RunState.DONE) or self._queued is not None

    def _new_run(self, params: Mapping[str, Any] | None) -> ResponseRun:
        p = params or {}
        session = self.session
        modalities = session.output_modalities
        if "output_modalities" in p:
            modalities = parse_output_modalities(p["output_modalities"], "response.output_modalities")
        tools = parse_tools(p["tools"], "response.tools") if "tools" in p else session.tools
        tool_choice = parse_tool_choice(p["tool_choice"], "response.tool_choice") if "tool_choice" in p else None
        max_tokens = session.max_output_tokens
        if "max_output_tokens" in p:
            max_tokens = parse_max_output_tokens(p["max_output_tokens"], "response.max_output_tokens")
        output_format, voice = session.output_format, session.voice
        audio = p.get("audio")
        if isinstance(audio, Mapping) and isinstance(audio.get("output"), Mapping):
            out = audio["output"]
            if "format" in out:
                output_format = parse_format(out["format"], "response.audio.output.format")
            if "voice" in out:
                voice = parse_voice(out["voice"], "response.audio.output.voice")
        conversation_mode = p.get("conversation", "auto")
        if conversation_mode not in ("auto", "none"):
            raise ClientEventError(
                "invalid_value", f"Invalid value: {conversation_mode!r}.", param="response.conversation"
            )
        metadata = p.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise ClientEventError("invalid_value", "'response.metadata' must be an object.", param="response.metadata")
        user = self._input_from(p.get("input"))
        reply = plan_reply(user, tools, tool_choice if tool_choice is not None else session.tool_choice)
        return ResponseRun(
            self.send_event,
            reply,
            conversation=self.conversation if conversation_mode == "auto" else None,
            output_modalities=modalities,
            output_format=output_format,
            voice=voice_name(voice),
            max_output_tokens=max_tokens,
            metadata=metadata,
            speed=self.speed,
            chunk_ms=self.chunk_ms,
            failure=self.faults.error_on_response,
        )

    def _input_from(self, items: object) -> UserInput | None:
        """The input a response answers: its own ``input`` items if given, else the latest user input."""
        if not isinstance(items, list):
            return self.conversation.last_input
        for raw in reversed(items):
            if not isinstance(raw, dict):
                continue
            item = raw
            if raw.get("type") == "item_reference" and isinstance(raw.get("id"), str):
                item = self.conversation.get(raw["id"])
            if item.get("type") == "message" and item.get("role") == "user":
                texts = [p.get("text") for p in item.get("content", []) if isinstance(p, dict)]
                text = " ".join(t for t in texts if isinstance(t, str))
                if text:
                    return UserInput("text", text=text)
            if item.get("type") == "function_call_output" and isinstance(item.get("output"), str):
                return UserInput("tool_output", text=item["output"])
        return self.conversation.last_input

    async def _response_create(self, event: dict[str, Any]) -> None:
        if self.response_active:
            current = self._queued or self.active
            assert current is not None
            raise ClientEventError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {current.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        params = event.get("response")
        if params is not None:
            if not isinstance(params, dict):
                raise ClientEventError("invalid_value", "'response' must be an object.", param="response")
            for key in params:
                if key not in _RESPONSE_KEYS:
                    raise ClientEventError("unknown_parameter", f"Unknown parameter: 'response.{key}'.",
                                           param=f"response.{key}")  # fmt: skip
        self._start(self._new_run(params))

    async def _response_cancel(self, event: dict[str, Any]) -> None:
        run = self.active
        wanted = event.get("response_id")
        if run is None or run.state is RunState.DONE or (isinstance(wanted, str) and wanted != run.id):
            raise ClientEventError(
                "response_cancel_not_active", "Cancellation failed: no active response found.", param=None
            )
        run.cancel("client_cancelled")

    async def _output_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        raise ClientEventError(
            "invalid_event", "'output_audio_buffer.clear' is only supported for WebRTC and SIP sessions.", param="type"
        )

    def _start(self, run: ResponseRun) -> None:
        self.response_ids.append(run.id)
        if self._task is None or self._task.done():
            self.active = run
            self._task = asyncio.create_task(self._play_responses(), name=f"emulator-response-{run.id}")
        else:
            self._queued = run

    async def _play_responses(self) -> None:
        try:
            while self.active is not None:
                await self.active.run()
                self.active, self._queued = self._queued, None
        except (ConnectionDropped, ConnectionClosed):
            pass
        except Exception:  # an emulator bug: show it in the log and close 1011, as a server would
            log.exception("emulated response failed")
            await self.ws.close(1011, "emulator error")
        finally:
            self.active = self._queued = None


_HANDLERS: Final[dict[str, Handler]] = {
    "session.update": OpenAIEmulatedConnection._session_update,
    "input_audio_buffer.append": OpenAIEmulatedConnection._append,
    "input_audio_buffer.commit": OpenAIEmulatedConnection._commit,
    "input_audio_buffer.clear": OpenAIEmulatedConnection._clear,
    "conversation.item.create": OpenAIEmulatedConnection._item_create,
    "conversation.item.truncate": OpenAIEmulatedConnection._item_truncate,
    "conversation.item.delete": OpenAIEmulatedConnection._item_delete,
    "conversation.item.retrieve": OpenAIEmulatedConnection._item_retrieve,
    "response.create": OpenAIEmulatedConnection._response_create,
    "response.cancel": OpenAIEmulatedConnection._response_cancel,
    "output_audio_buffer.clear": OpenAIEmulatedConnection._output_audio_buffer_clear,
}
