"""One emulated OpenAI Realtime response: the GA event sequence, paced, cancellable, with usage.

Message responses (reference §1.8)::

    response.created
    response.output_item.added            conversation.item.added
    response.content_part.added
    (response.output_audio_transcript.delta | response.output_audio.delta)*     or response.output_text.delta*
    response.output_audio.done  response.output_audio_transcript.done           or response.output_text.done
    response.content_part.done
    response.output_item.done             conversation.item.done
    response.done {usage}                 rate_limits.updated

Function calls replace the content part with ``response.function_call_arguments.delta*/.done``.
A failing response (fault ``error_on_response``) is ``response.created``, ``error``, ``response.done``
(status ``failed``).

Audio goes out in ``chunk_ms`` deltas; a `Pacer` releases chunk ``i`` at ``i * chunk_ms / speed``
(``speed`` 0: as fast as the socket takes it). Transcript deltas are words, each sent just before
the audio chunk in which that word starts. `ResponseRun.cancel` stops the stream before the next
delta: the done events follow with what was actually sent and ``response.done`` is ``cancelled``.

Usage (deterministic, from what was actually sent):

* input audio tokens  = ceil(turn_ms / 100)          (10 per second of the answered turn)
* output audio tokens = ceil(sent_ms / 50)           (20 per second of audio sent)
* text tokens         = ceil(characters / 4)         (input text / tool output; output transcript, text or arguments)
* cached tokens 0; total = input + output.
"""

from __future__ import annotations

import base64
import enum
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from audiocodecs.resample import StreamingResampler
from providers.emulation import synth
from providers.emulation.pacing import Pacer
from providers.emulation.server import new_id
from providers.openai.emulator_conversation import Conversation
from providers.openai.emulator_reply import Reply
from providers.openai.emulator_session import WireFormat

__all__ = ["RATE_LIMIT_REQUESTS", "RATE_LIMIT_TOKENS", "ResponseRun", "RunState", "usage"]

RATE_LIMIT_REQUESTS: Final = 5_000
RATE_LIMIT_TOKENS: Final = 400_000
#: characters per ``response.function_call_arguments.delta``
ARGUMENT_CHUNK_CHARS: Final = 16

Send = Callable[[dict[str, Any]], Awaitable[None]]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def usage(*, input_audio_ms: int, input_text: str, output_audio_ms: int, output_text: str) -> dict[str, Any]:
    in_audio = _ceil_div(input_audio_ms, 100)
    in_text = _ceil_div(len(input_text), 4)
    out_audio = _ceil_div(output_audio_ms, 50)
    out_text = _ceil_div(len(output_text), 4)
    return {
        "total_tokens": in_audio + in_text + out_audio + out_text,
        "input_tokens": in_audio + in_text,
        "output_tokens": out_audio + out_text,
        "input_token_details": {
            "text_tokens": in_text,
            "audio_tokens": in_audio,
            "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio},
    }


def _event(type: str, **fields: Any) -> dict[str, Any]:
    return {"type": type, "event_id": new_id("evt_"), **fields}


def _pieces(text: str) -> list[tuple[int, str]]:
    """Split into words (trailing whitespace kept) that concatenate back to ``text``: (start index, piece)."""
    pieces = [(m.start(), m.group()) for m in re.finditer(r"\S+\s*", text)]
    if not pieces:
        return [(0, text)] if text else []
    if pieces[0][0]:
        pieces[0] = (0, text[: pieces[0][0]] + pieces[0][1])
    return pieces


def _to_rate(audio: npt.NDArray[np.int16], in_rate: int, out_rate: int) -> npt.NDArray[np.int16]:
    if in_rate == out_rate:
        return audio
    resampler = StreamingResampler(in_rate, out_rate)
    return np.concatenate((resampler.process(audio), resampler.flush()))


class RunState(enum.Enum):
    STREAMING = "streaming"  # cancellable
    FINISHING = "finishing"  # done events going out; a cancel now changes nothing
    DONE = "done"  # response.done sent


class ResponseRun:
    def __init__(
        self,
        send: Send,
        reply: Reply,
        *,
        conversation: Conversation | None,
        output_modalities: list[str],
        output_format: WireFormat,
        voice: str,
        max_output_tokens: int | str = "inf",
        metadata: dict[str, Any] | None = None,
        speed: float = 0.0,
        chunk_ms: int = 40,
        failure: str | None = None,
    ) -> None:
        self.id = new_id("resp_")
        self.state = RunState.STREAMING
        self.cancel_reason: str | None = None
        self._send = send
        self._reply = reply
        self._conversation = conversation
        self._modalities = output_modalities
        self._format = output_format
        self._voice = voice
        self._max_tokens = max_output_tokens if isinstance(max_output_tokens, int) else None
        self._metadata = metadata
        self._pacer = Pacer(speed)
        self._chunk_ms = chunk_ms
        self._failure = failure
        self._incomplete = False
        self._output: list[dict[str, Any]] = []
        self.audio_ms_sent = 0
        self.text_sent = ""

    # -- control --------------------------------------------------------------------------------

    def cancel(self, reason: str) -> bool:
        """Stop before the next delta; False if the response is past that point already."""
        if self.state is not RunState.STREAMING:
            return False
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self._pacer.interrupt()
        return True

    @property
    def _stopped(self) -> bool:
        return self.cancel_reason is not None or self._incomplete

    def _over_budget(self) -> bool:
        if self._max_tokens is None:
            return False
        spent = _ceil_div(self.audio_ms_sent, 50) + _ceil_div(len(self.text_sent), 4)
        return spent >= self._max_tokens

    # -- the sequence -----------------------------------------------------------------------------

    def _response(self, status: str, **fields: Any) -> dict[str, Any]:
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": None,
            "output": [],
            "conversation_id": self._conversation.id if self._conversation is not None else None,
            "output_modalities": self._modalities,
            "max_output_tokens": self._max_tokens if self._max_tokens is not None else "inf",
            "audio": {"output": {"format": self._format.to_wire(), "voice": self._voice}},
            "usage": None,
            "metadata": self._metadata,
            **fields,
        }

    async def run(self) -> None:
        await self._send(_event("response.created", response=self._response("in_progress")))
        if self._failure is not None:
            await self._fail(self._failure)
            return
        if not self._stopped:
            if self._reply.call is not None:
                await self._function_call()
            else:
                await self._message()
        self.state = RunState.DONE
        if self.cancel_reason is not None:
            status, details = "cancelled", {"type": "cancelled", "reason": self.cancel_reason}
        elif self._incomplete:
            status, details = "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
        else:
            status, details = "completed", None
        spent = usage(
            input_audio_ms=self._reply.input_audio_ms,
            input_text=self._reply.input_text,
            output_audio_ms=self.audio_ms_sent,
            output_text=self.text_sent,
        )
        response = self._response(status, status_details=details, output=self._output, usage=spent)
        await self._send(_event("response.done", response=response))
        await self._send(
            _event(
                "rate_limits.updated",
                rate_limits=[
                    {"name": "requests", "limit": RATE_LIMIT_REQUESTS, "remaining": RATE_LIMIT_REQUESTS - 1,
                     "reset_seconds": 0.012},
                    {"name": "tokens", "limit": RATE_LIMIT_TOKENS,
                     "remaining": max(0, RATE_LIMIT_TOKENS - spent["total_tokens"]), "reset_seconds": 0.6},
                ],
            )
        )  # fmt: skip

    async def _fail(self, message: str) -> None:
        self.state = RunState.FINISHING
        error = {"type": "server_error", "code": "server_error", "message": message}
        await self._send(_event("error", error={**error, "param": None, "event_id": None}))
        self.state = RunState.DONE
        details = {"type": "failed", "error": error}
        spent = usage(input_audio_ms=0, input_text="", output_audio_ms=0, output_text="")
        await self._send(
            _event("response.done", response=self._response("failed", status_details=details, usage=spent))
        )

    async def _add_item(self, item: dict[str, Any]) -> str | None:
        await self._send(_event("response.output_item.added", response_id=self.id, output_index=0, item=item))
        if self._conversation is None:
            return None
        previous = self._conversation.add(item)
        await self._send(_event("conversation.item.added", previous_item_id=previous, item=item))
        return previous

    async def _finish_item(self, item: dict[str, Any], previous: str | None) -> None:
        await self._send(_event("response.output_item.done", response_id=self.id, output_index=0, item=item))
        if self._conversation is not None:
            self._conversation.put(item)
            await self._send(_event("conversation.item.done", previous_item_id=previous, item=item))
        self._output.append(item)

    async def _message(self) -> None:
        item_id = new_id("item_")
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        previous = await self._add_item(item)
        audio = "audio" in self._modalities
        where = {"response_id": self.id, "item_id": item_id, "output_index": 0, "content_index": 0}
        empty = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        await self._send(_event("response.content_part.added", **where, part=empty))
        if audio:
            await self._stream_audio(item_id, where)
        else:
            await self._stream_text(where)
        self.state = RunState.FINISHING
        text = self.text_sent
        if audio:
            await self._send(_event("response.output_audio.done", **where))
            await self._send(_event("response.output_audio_transcript.done", **where, transcript=text))
            await self._send(_event("response.content_part.done", **where, part={"type": "audio", "transcript": text}))
            content = {"type": "output_audio", "transcript": text}
        else:
            await self._send(_event("response.output_text.done", **where, text=text))
            await self._send(_event("response.content_part.done", **where, part={"type": "text", "text": text}))
            content = {"type": "output_text", "text": text}
        status = "incomplete" if self._stopped else "completed"
        await self._finish_item({**item, "status": status, "content": [content]}, previous)

    def _speech(self) -> tuple[npt.NDArray[np.int16], list[tuple[float, str]]]:
        """The samples to send (at the output rate) and the transcript's words with their start in ms."""
        reply, rate = self._reply, self._format.rate
        if reply.audio is not None:
            samples = _to_rate(reply.audio, reply.rate, rate)
            duration = samples.size * 1000 / rate
            length = max(1, len(reply.transcript))
            return samples, [(i * duration / length, piece) for i, piece in _pieces(reply.transcript)]
        samples = synth.synthesize(reply.transcript, rate)
        return samples, [(i * synth.CHAR_MS, piece) for i, piece in _pieces(reply.transcript)]

    async def _stream_audio(self, item_id: str, where: dict[str, Any]) -> None:
        samples, words = self._speech()
        data = self._format.encode(samples)
        step = self._chunk_ms * self._format.bytes_per_ms
        per_ms = self._format.bytes_per_ms
        conversation = self._conversation
        next_word, position, media_ms = 0, 0, 0
        while position < len(data):
            await self._pacer.wait(media_ms)
            if self._stopped:
                return
            media_ms += self._chunk_ms
            while next_word < len(words) and words[next_word][0] < media_ms:
                piece = words[next_word][1]
                next_word += 1
                await self._send(_event("response.output_audio_transcript.delta", **where, delta=piece))
                self.text_sent += piece
            chunk = data[position : position + step]
            await self._send(
                _event("response.output_audio.delta", **where, delta=base64.b64encode(chunk).decode("ascii"))
            )
            position += len(chunk)
            self.audio_ms_sent = position // per_ms
            if conversation is not None:
                conversation.set_audio_ms(item_id, self.audio_ms_sent)
            if self._over_budget():
                self._incomplete = True
                return
        for _, piece in words[next_word:]:
            await self._send(_event("response.output_audio_transcript.delta", **where, delta=piece))
            self.text_sent += piece

    async def _stream_text(self, where: dict[str, Any]) -> None:
        for start, piece in _pieces(self._reply.transcript):
            await self._pacer.wait(start * synth.CHAR_MS)
            if self._stopped:
                return
            await self._send(_event("response.output_text.delta", **where, delta=piece))
            self.text_sent += piece
            if self._over_budget():
                self._incomplete = True
                return

    async def _function_call(self) -> None:
        call = self._reply.call
        assert call is not None
        item_id = new_id("item_")
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "name": call.name,
            "call_id": call.call_id,
            "arguments": "",
        }
        previous = await self._add_item(item)
        where = {"response_id": self.id, "item_id": item_id, "output_index": 0, "call_id": call.call_id}
        args = call.arguments
        for start in range(0, len(args), ARGUMENT_CHUNK_CHARS):
            await self._pacer.wait(0)
            if self._stopped:
                break
            piece = args[start : start + ARGUMENT_CHUNK_CHARS]
            await self._send(_event("response.function_call_arguments.delta", **where, delta=piece))
            self.text_sent += piece
        self.state = RunState.FINISHING
        sent = self.text_sent
        await self._send(_event("response.function_call_arguments.done", **where, name=call.name, arguments=sent))
        status = "incomplete" if self._stopped else "completed"
        await self._finish_item({**item, "status": status, "arguments": sent}, previous)
