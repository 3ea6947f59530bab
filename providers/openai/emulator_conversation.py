"""The OpenAI Realtime emulator's conversation: items in order, and the latest user input to answer.

Items are stored as their wire dicts without audio (the emulator never returns audio in
``conversation.item.retrieved``), at most ``MAX_ITEMS`` of them (oldest dropped), so an hour-long
load-test session stays small. Assistant audio items also remember how many milliseconds of audio
were sent, which bounds ``conversation.item.truncate``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from providers.emulation.server import new_id
from providers.openai.emulator_session import ClientEventError

__all__ = ["MAX_ITEMS", "Conversation", "UserInput"]

MAX_ITEMS: Final = 1000


@dataclass(slots=True)
class UserInput:
    """What the next response answers: a committed audio turn, a typed message or a tool's output."""

    kind: Literal["audio", "text", "tool_output"]
    text: str = ""
    audio: npt.NDArray[np.int16] = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    rate: int = 0
    #: the function call this output answers
    call_name: str = ""

    @property
    def audio_ms(self) -> int:
        return self.audio.size * 1000 // self.rate if self.rate else 0


class Conversation:
    def __init__(self) -> None:
        self.id = new_id("conv_")
        self._items: dict[str, dict[str, Any]] = {}
        self._audio_ms: dict[str, int] = {}
        self._call_names: dict[str, str] = {}
        self.last_input: UserInput | None = None

    @property
    def last_item_id(self) -> str | None:
        return next(reversed(self._items), None)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: dict[str, Any]) -> str | None:
        """Append ``item`` (it must carry an ``id``); returns the previous item's id."""
        previous = self.last_item_id
        self.put(item)
        if len(self._items) > MAX_ITEMS:
            oldest = next(iter(self._items))
            self.delete(oldest)
        if item.get("type") == "function_call":
            self._call_names[str(item.get("call_id"))] = str(item.get("name"))
        return previous

    def put(self, item: dict[str, Any]) -> None:
        """Store (or replace) ``item`` in place, without its audio."""
        stored = copy.copy(item)
        content = stored.get("content")
        if isinstance(content, list) and any(isinstance(p, dict) and "audio" in p for p in content):
            stored["content"] = [{k: v for k, v in p.items() if k != "audio"} for p in content]
        self._items[str(item["id"])] = stored

    def get(self, item_id: str) -> dict[str, Any]:
        try:
            return self._items[item_id]
        except KeyError:
            raise self._not_found(item_id) from None

    def delete(self, item_id: str) -> None:
        if self._items.pop(item_id, None) is None:
            raise self._not_found(item_id)
        self._audio_ms.pop(item_id, None)

    def call_name(self, call_id: str) -> str:
        return self._call_names.get(call_id, "")

    def set_audio_ms(self, item_id: str, ms: int) -> None:
        self._audio_ms[item_id] = ms

    def truncate(self, item_id: str, content_index: int, audio_end_ms: int) -> None:
        item = self.get(item_id)
        if item.get("role") != "assistant" or item_id not in self._audio_ms:
            raise ClientEventError(
                "invalid_value", f"Item '{item_id}' is not an assistant message with audio.", param="item_id"
            )
        if content_index != 0:
            raise ClientEventError("invalid_value", "Only content_index 0 can be truncated.", param="content_index")
        audio_ms = self._audio_ms[item_id]
        if audio_end_ms > audio_ms:
            raise ClientEventError(
                "invalid_value",
                f"Audio content of {audio_ms}ms is shorter than {audio_end_ms}ms.",
                param="audio_end_ms",
            )
        self._audio_ms[item_id] = audio_end_ms
        # The unheard part of the transcript leaves the context, in proportion to the audio.
        for part in item.get("content", []):
            transcript = part.get("transcript")
            if isinstance(transcript, str) and audio_ms:
                part["transcript"] = transcript[: len(transcript) * audio_end_ms // audio_ms]

    @staticmethod
    def _not_found(item_id: str) -> ClientEventError:
        return ClientEventError("item_not_found", f"Item with item_id not found: {item_id}", param="item_id")

    @staticmethod
    def user_audio_item(item_id: str) -> dict[str, Any]:
        return {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
