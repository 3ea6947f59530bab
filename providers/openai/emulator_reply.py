"""What the emulated model says: a deterministic answer to the latest user input.

* an **audio** turn is echoed: the reply audio is that turn's audio, the transcript says so
  ("Echo of 2.4 s of your audio.");
* a **text** message is read aloud: the transcript is the text itself, spoken by `synth`;
* a **tool output** is read aloud the same way;
* a text message that names a configured function tool (``"… call get_weather for Paris"``, or the
  tool's name anywhere, underscores optional) gets a **function call** instead, unless
  ``tool_choice`` is ``"none"``; ``"required"`` or a named tool choice forces one. Arguments are
  built from the tool's JSON schema: the first string property gets the words after the tool's name
  (filler words like "for"/"in" dropped), integers/numbers the first number in the text, enums their
  first value, booleans ``true``;
* with nothing to answer, a fixed greeting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from providers.emulation.server import new_id
from providers.openai.emulator_conversation import UserInput

__all__ = ["GREETING", "FunctionCall", "Reply", "echo_transcript", "plan_reply"]

GREETING: Final = "Hello from the OpenAI Realtime emulator."
_FILLER: Final = frozenset({"for", "in", "on", "at", "about", "with", "of", "to", "the", "please", "and"})
_NUMBER: Final = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True, slots=True)
class FunctionCall:
    name: str
    call_id: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Reply:
    transcript: str
    #: the audio to echo (at ``rate``); ``None`` means: synthesize the transcript
    audio: npt.NDArray[np.int16] | None = None
    rate: int = 0
    call: FunctionCall | None = None
    #: what the input cost, for usage
    input_audio_ms: int = 0
    input_text: str = ""


def echo_transcript(audio_ms: int) -> str:
    return f"Echo of {audio_ms / 1000:.1f} s of your audio."


def plan_reply(user: UserInput | None, tools: list[dict[str, Any]], tool_choice: object) -> Reply:
    if user is None:
        return Reply(GREETING)
    if user.kind == "audio":
        return Reply(echo_transcript(user.audio_ms), user.audio, user.rate, input_audio_ms=user.audio_ms)
    if user.kind == "text":
        tool = _choose_tool(user.text, tools, tool_choice)
        if tool is not None:
            call = FunctionCall(str(tool["name"]), new_id("call_"), _arguments(tool, user.text))
            return Reply("", call=call, input_text=user.text)
    return Reply(user.text, input_text=user.text)


def _functions(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in tools if t.get("type", "function") == "function" and isinstance(t.get("name"), str)]


def _mention(text: str, name: str) -> re.Match[str] | None:
    spoken = r"[\s_]+".join(re.escape(part) for part in name.split("_") if part)
    return re.search(rf"(?<![\w]){spoken}(?![\w])", text, flags=re.IGNORECASE)


def _choose_tool(text: str, tools: list[dict[str, Any]], tool_choice: object) -> dict[str, Any] | None:
    functions = _functions(tools)
    if not functions or tool_choice == "none":
        return None
    if isinstance(tool_choice, Mapping) and tool_choice.get("type") == "function":
        return next((t for t in functions if t["name"] == tool_choice.get("name")), None)
    for tool in functions:
        if _mention(text, tool["name"]):
            return tool
    return functions[0] if tool_choice == "required" else None


def _subject(text: str, name: str) -> str:
    match = _mention(text, name)
    rest = text[match.end() :] if match else text
    words = [w.strip(".,;:!?\"'()") for w in rest.split()]
    while words and (not words[0] or words[0].lower() in _FILLER):
        words.pop(0)
    return " ".join(w for w in words if w)


def _arguments(tool: Mapping[str, Any], text: str) -> str:
    schema = tool.get("parameters")
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    args: dict[str, Any] = {}
    if isinstance(properties, Mapping):
        subject_used = False
        number = _NUMBER.search(text)
        for prop, spec in properties.items():
            spec = spec if isinstance(spec, Mapping) else {}
            kind = spec.get("type")
            if isinstance(spec.get("enum"), list) and spec["enum"]:
                args[prop] = spec["enum"][0]
            elif kind == "string":
                args[prop] = "" if subject_used else _subject(text, str(tool["name"]))
                subject_used = True
            elif kind == "integer":
                args[prop] = int(float(number.group())) if number else 0
            elif kind == "number":
                args[prop] = float(number.group()) if number else 0.0
            elif kind == "boolean":
                args[prop] = True
            elif kind == "array":
                args[prop] = []
            elif kind == "object":
                args[prop] = {}
            else:
                args[prop] = None
    return orjson.dumps(args).decode()
