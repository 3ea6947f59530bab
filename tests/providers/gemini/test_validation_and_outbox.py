"""The strict validator the emulator tests rely on does catch bad messages; the event outbox's contract."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pydantic
import pytest

from providers.base import UpstreamError
from providers.events import ResponseStarted, SpeechStarted
from providers.gemini.outbox import Outbox
from tests.providers.gemini.conftest import validate_server_frame

AUDIO = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": "AAA="}}
GOOD: dict[str, Any] = {
    "serverContent": {"modelTurn": {"role": "model", "parts": [AUDIO]}},
    "usageMetadata": {"promptTokenCount": 3, "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 3}]},
}


def test_a_good_message_passes() -> None:
    message = validate_server_frame(orjson.dumps(GOOD))
    assert message.usage_metadata is not None and message.usage_metadata.prompt_token_count == 3


@pytest.mark.parametrize(
    "bad",
    [
        {"serverContent": {"turnComplete": "true"}},  # lax pydantic would coerce this
        {"usageMetadata": {"promptTokenCount": "3"}},
        {"usageMetadata": {"promptTokensDetails": [{"modality": "SMELL", "tokenCount": 1}]}},  # the SDK only warns
        {"goAway": {"timeLeft": 50}},
        {"serverContent": {"turnCompleted": True}},  # a field the SDK does not know
        {"serverContent": {"outputTranscription": {"text": "hi", "confidence": 0.9}}},
    ],
)
def test_wrong_types_and_unknown_fields_fail(bad: dict[str, Any]) -> None:
    with pytest.raises((pydantic.ValidationError, UserWarning)):
        validate_server_frame(orjson.dumps(bad))


def test_top_level_keys_the_sdk_drops_fail() -> None:
    with pytest.raises(AssertionError, match="server_content"):
        validate_server_frame(orjson.dumps({"server_content": {"turnComplete": True}}))  # snake_case at the top
    with pytest.raises(AssertionError, match="error"):
        validate_server_frame(orjson.dumps({"error": {"code": 400}}))


async def test_outbox_keeps_order_then_ends_with_the_error() -> None:
    box = Outbox()
    box.extend([ResponseStarted("r1"), SpeechStarted()])
    box.finish(UpstreamError("gone"))
    box.extend([ResponseStarted("late")])  # after the end: ignored
    assert await box.get() == ResponseStarted("r1")
    assert await box.get() == SpeechStarted()
    with pytest.raises(UpstreamError, match="gone"):
        await box.get()


async def test_outbox_wakes_a_waiting_consumer_and_ends_cleanly() -> None:
    box = Outbox()
    getter = asyncio.create_task(box.get())
    await asyncio.sleep(0)  # let it start waiting
    box.extend([SpeechStarted()])
    assert await asyncio.wait_for(getter, 1) == SpeechStarted()
    box.finish()
    assert await box.get() is None


async def test_outbox_pushes_back_above_high_water_until_low_water() -> None:
    box = Outbox(high_water=4, low_water=1)
    box.extend([SpeechStarted()] * 4)
    assert box.full
    waiter = asyncio.create_task(box.wait_for_room())
    await asyncio.sleep(0)  # it starts waiting while the box is full
    for _ in range(2):
        await box.get()
        await asyncio.sleep(0)
        assert not waiter.done()  # 3, then 2 left: still above low water
    await box.get()
    await asyncio.wait_for(waiter, 1)  # 1 left: room again
    assert len(box) == 1
