"""One emulated Gemini model turn: what the model says, the message sequence, pacing, usage.

Answers are deterministic (like the OpenAI emulator's):

* an **audio** turn is echoed: that turn's audio (16 kHz, resampled to 24 kHz), with the output
  transcription "Echo of 2.4 s of your audio." and the input transcription "[2.4 s of speech]";
* a request to answer with nothing new said (``clientContent {turnComplete: true}``) gets `GREETING`;
* a **text** turn is spoken by `providers.emulation.synth` at 24 kHz (output transcription = the text),
  or written in text parts when ``responseModalities`` is TEXT;
* a text that says "call <tool name>" (underscores may be spaces) for a declared function gets a
  ``toolCall``; the turn waits for the ``toolResponse`` and then speaks its output.

The sequence (reference §2.10)::

    serverContent.inputTranscription                          (audio turns, when enabled)
    [toolCall … (toolResponse from the client)]
    serverContent.modelTurn.parts[].inlineData (audio/pcm;rate=24000, chunk_ms each)   or parts[].text
      + serverContent.outputTranscription (word by word, before the chunk the word starts in)
    serverContent.generationComplete          + usageMetadata
    serverContent.turnComplete                + usageMetadata   (the same snapshot again, §4)

An interrupted turn ends ``interrupted`` → ``turnComplete`` + usageMetadata (no generationComplete),
preceded by ``toolCallCancellation`` if it was waiting for a tool result.

Usage per turn (deterministic; audio at 32 tokens per second as Gemini's docs count it, text at
one token per 4 characters): ``promptTokenCount`` is the whole context — the system instruction,
every earlier turn's input and output, this turn's input — split by modality in
``promptTokensDetails``; ``responseTokenCount`` is what this turn actually said.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from audiocodecs.resample import StreamingResampler
from providers.emulation import synth
from providers.emulation.pacing import Pacer
from providers.emulation.server import new_id

__all__ = [
    "AUDIO_TOKENS_PER_S",
    "GREETING",
    "OUTPUT_RATE",
    "Conversation",
    "ModelTurn",
    "TurnInput",
    "audio_tokens",
    "text_tokens",
]

INPUT_RATE: Final = 16_000
OUTPUT_RATE: Final = 24_000
OUTPUT_MIME: Final = "audio/pcm;rate=24000"
#: Gemini counts audio at 32 tokens per second, in and out
AUDIO_TOKENS_PER_S: Final = 32
#: the answer to a request for a turn with nothing new to answer (``clientContent {turnComplete: true}``)
GREETING: Final = "Hello from the Gemini Live emulator."
_FILLER: Final = frozenset({"for", "in", "on", "at", "about", "with", "of", "to", "the", "please", "and"})
_NUMBER: Final = re.compile(r"-?\d+(?:\.\d+)?")

Send = Callable[[dict[str, Any]], Awaitable[None]]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def audio_tokens(ms: int) -> int:
    return _ceil_div(ms * AUDIO_TOKENS_PER_S, 1000)


def text_tokens(text: str) -> int:
    return _ceil_div(len(text), 4)


@dataclass(slots=True)
class Conversation:
    """What the model remembers: context tokens by modality and a log of the turns (restored on resumption)."""

    text_tokens: int = 0
    audio_tokens: int = 0
    log: list[str] = field(default_factory=list)

    def copy(self) -> Conversation:
        return Conversation(self.text_tokens, self.audio_tokens, list(self.log))


@dataclass(frozen=True, slots=True)
class TurnInput:
    kind: str  # "audio" | "text"
    text: str = ""
    audio: npt.NDArray[np.int16] | None = None

    @property
    def audio_ms(self) -> int:
        return 0 if self.audio is None else self.audio.size * 1000 // INPUT_RATE


def _pieces(text: str) -> list[tuple[int, str]]:
    """Words (trailing whitespace kept) that concatenate back to ``text``: (start index, piece)."""
    pieces = [(m.start(), m.group()) for m in re.finditer(r"\S+\s*", text)]
    if pieces and pieces[0][0]:
        pieces[0] = (0, text[: pieces[0][0]] + pieces[0][1])
    return pieces or ([(0, text)] if text else [])


def _mention(text: str, name: str) -> re.Match[str] | None:
    spoken = r"[\s_]+".join(re.escape(part) for part in name.split("_") if part)
    return re.search(rf"\bcall\s+(?:the\s+)?{spoken}(?![\w])", text, flags=re.IGNORECASE)


def find_tool_call(text: str, tools: tuple[dict[str, Any], ...]) -> tuple[str, dict[str, Any]] | None:
    """(name, args) when ``text`` says "call <tool name>" for a declared function."""
    for tool in tools:
        name = str(tool["name"])
        match = _mention(text, name)
        if match is not None:
            return name, _arguments(tool, text[match.end() :], text)
    return None


def _arguments(tool: Mapping[str, Any], rest: str, text: str) -> dict[str, Any]:
    """Arguments from the declared schema: the first string property gets the words after the tool's
    name (fillers dropped), numbers the first number in the text, enums their first value."""
    schema = tool.get("parameters") or tool.get("parametersJsonSchema") or {}
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    args: dict[str, Any] = {}
    if not isinstance(properties, Mapping):
        return args
    words = [w.strip(".,;:!?\"'()") for w in rest.split()]
    while words and (not words[0] or words[0].lower() in _FILLER):
        words.pop(0)
    subject = " ".join(w for w in words if w)
    number = _NUMBER.search(text)
    for prop, spec in properties.items():
        spec = spec if isinstance(spec, Mapping) else {}
        kind = str(spec.get("type", "")).upper()
        if isinstance(spec.get("enum"), list) and spec["enum"]:
            args[prop] = spec["enum"][0]
        elif kind == "STRING":
            args[prop], subject = subject, ""
        elif kind in ("INTEGER", "NUMBER"):
            value = float(number.group()) if number else 0.0
            args[prop] = int(value) if kind == "INTEGER" else value
        elif kind == "BOOLEAN":
            args[prop] = True
    return args


def _to_output_rate(audio: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    resampler = StreamingResampler(INPUT_RATE, OUTPUT_RATE)
    return np.concatenate((resampler.process(audio), resampler.flush()))


class TurnState(enum.Enum):
    STREAMING = "streaming"
    WAITING_TOOL = "waiting_tool"
    DONE = "done"


class ModelTurn:
    """Play one model turn; `interrupt` stops it before the next message; `tool_response` resumes it."""

    def __init__(
        self,
        send: Send,
        user: TurnInput,
        *,
        conversation: Conversation,
        audio_out: bool,
        tools: tuple[dict[str, Any], ...] = (),
        input_transcription: bool = False,
        output_transcription: bool = False,
        speed: float = 0.0,
        chunk_ms: int = 40,
    ) -> None:
        self.state = TurnState.STREAMING
        self.interrupted = False
        self._send = send
        self._user = user
        self._conversation = conversation
        self._audio_out = audio_out
        self._tools = tools
        self._input_transcription = input_transcription
        self._output_transcription = output_transcription
        self._pacer = Pacer(speed)
        self._chunk_ms = chunk_ms
        self._call_ids: list[str] = []
        self._tool_output: str | None = None
        self._tool_waiter: asyncio.Future[None] | None = None
        # what this turn cost, in tokens, as it goes
        self._in_text = text_tokens(user.text)
        self._in_audio = audio_tokens(user.audio_ms)
        self._out_text = 0
        self._out_audio_ms = 0
        self._spoken = ""

    # -- control --------------------------------------------------------------------------------

    def interrupt(self) -> bool:
        """Stop before the next message (False if the turn is over already)."""
        if self.state is TurnState.DONE or self.interrupted:
            return False
        self.interrupted = True
        self._pacer.interrupt()
        self._wake_tool()
        return True

    def tool_response(self, responses: list[Mapping[str, Any]]) -> bool:
        """Results for this turn's calls (False if it is not waiting for them)."""
        if self.state is not TurnState.WAITING_TOOL:
            return False
        outputs = []
        for response in responses:
            if response.get("id") in self._call_ids:
                payload = response.get("response")
                value = payload.get("output", payload) if isinstance(payload, Mapping) else payload
                outputs.append(value if isinstance(value, str) else orjson.dumps(value).decode())
        if not outputs:
            return False
        self._tool_output = " ".join(outputs)
        self._wake_tool()
        return True

    def _wake_tool(self) -> None:
        if self._tool_waiter is not None and not self._tool_waiter.done():
            self._tool_waiter.set_result(None)

    # -- the sequence ---------------------------------------------------------------------------

    async def run(self) -> None:
        user = self._user
        if user.kind == "audio" and self._input_transcription:
            await self._content(inputTranscription={"text": f"[{user.audio_ms / 1000:.1f} s of speech]"})
        reply = f"Echo of {user.audio_ms / 1000:.1f} s of your audio." if user.kind == "audio" else user.text
        reply = reply or GREETING
        call = find_tool_call(user.text, self._tools) if user.kind == "text" else None
        if call is not None:
            reply = await self._call_tool(*call)
        if not self.interrupted:
            if self._audio_out:
                audio = _to_output_rate(user.audio) if user.audio is not None else synth.synthesize(reply, OUTPUT_RATE)
                await self._stream_audio(audio, reply)
            else:
                await self._stream_text(reply)
        self.state = TurnState.DONE
        usage = self._usage()
        if self.interrupted:
            if self._call_ids and self._tool_output is None:
                await self._send({"toolCallCancellation": {"ids": list(self._call_ids)}})
            await self._content(interrupted=True)
        else:
            await self._send({"serverContent": {"generationComplete": True}, "usageMetadata": usage})
        await self._send({"serverContent": {"turnComplete": True}, "usageMetadata": usage})
        self._remember()

    async def _content(self, **fields: Any) -> None:
        await self._send({"serverContent": fields})

    async def _call_tool(self, name: str, args: dict[str, Any]) -> str:
        call_id = new_id("function-call-", 8)
        self._call_ids.append(call_id)
        self._out_text += text_tokens(orjson.dumps(args).decode()) + text_tokens(name)
        await self._send({"toolCall": {"functionCalls": [{"id": call_id, "name": name, "args": args}]}})
        self.state = TurnState.WAITING_TOOL
        self._tool_waiter = asyncio.get_running_loop().create_future()
        if not self.interrupted:
            await self._tool_waiter
        self.state = TurnState.STREAMING
        output = self._tool_output or ""
        self._in_text += text_tokens(output)
        return output

    async def _stream_audio(self, samples: npt.NDArray[np.int16], transcript: str) -> None:
        data = samples.astype("<i2").tobytes()
        duration_ms = samples.size * 1000 / OUTPUT_RATE
        scale = duration_ms / max(1, len(transcript))
        words = [(i * scale, piece) for i, piece in _pieces(transcript)] if self._output_transcription else []
        step = self._chunk_ms * OUTPUT_RATE // 1000 * 2
        next_word, position, media_ms = 0, 0, 0
        while position < len(data):
            await self._pacer.wait(media_ms)
            if self.interrupted:
                return
            media_ms += self._chunk_ms
            while next_word < len(words) and words[next_word][0] < media_ms:
                await self._spoken_piece(words[next_word][1])
                next_word += 1
            chunk = data[position : position + step]
            part = {"inlineData": {"mimeType": OUTPUT_MIME, "data": base64.b64encode(chunk).decode("ascii")}}
            await self._content(modelTurn={"role": "model", "parts": [part]})
            position += len(chunk)
            self._out_audio_ms = position * 1000 // (OUTPUT_RATE * 2)
        for _, piece in words[next_word:]:
            await self._spoken_piece(piece)

    async def _spoken_piece(self, piece: str) -> None:
        await self._content(outputTranscription={"text": piece})
        self._spoken += piece

    async def _stream_text(self, text: str) -> None:
        for start, piece in _pieces(text):
            await self._pacer.wait(start * synth.CHAR_MS)
            if self.interrupted:
                return
            await self._content(modelTurn={"role": "model", "parts": [{"text": piece}]})
            self._spoken += piece
            self._out_text += text_tokens(piece)

    # -- usage and memory -------------------------------------------------------------------------

    def _usage(self) -> dict[str, Any]:
        conversation = self._conversation
        prompt_text = conversation.text_tokens + self._in_text
        prompt_audio = conversation.audio_tokens + self._in_audio
        out_audio = audio_tokens(self._out_audio_ms) if self._out_audio_ms else 0
        out_text = self._out_text
        prompt, response = prompt_text + prompt_audio, out_text + out_audio
        details = [{"modality": "TEXT", "tokenCount": prompt_text}]
        if prompt_audio:
            details.append({"modality": "AUDIO", "tokenCount": prompt_audio})
        response_details = []
        if out_text:
            response_details.append({"modality": "TEXT", "tokenCount": out_text})
        if out_audio:
            response_details.append({"modality": "AUDIO", "tokenCount": out_audio})
        usage: dict[str, Any] = {
            "promptTokenCount": prompt,
            "responseTokenCount": response,
            "totalTokenCount": prompt + response,
            "promptTokensDetails": details,
        }
        if response_details:
            usage["responseTokensDetails"] = response_details
        return usage

    def _remember(self) -> None:
        conversation = self._conversation
        conversation.text_tokens += self._in_text + self._out_text
        conversation.audio_tokens += self._in_audio + (audio_tokens(self._out_audio_ms) if self._out_audio_ms else 0)
        said = f"[{self._user.audio_ms / 1000:.1f} s of speech]" if self._user.kind == "audio" else self._user.text
        conversation.log.append(f"user: {said}")
        conversation.log.append(f"model: {self._spoken}" + (" [interrupted]" if self.interrupted else ""))
