"""The strict validator the emulator tests rely on does catch malformed server events."""

from __future__ import annotations

from typing import Any

import orjson
import pydantic
import pytest

from tests.providers.openai.conftest import validate_server_event

GOOD: dict[str, Any] = {
    "type": "response.output_audio.delta",
    "event_id": "evt_1",
    "response_id": "resp_1",
    "item_id": "item_1",
    "output_index": 0,
    "content_index": 0,
    "delta": "AAAA",
}


def test_a_good_event_passes() -> None:
    assert validate_server_event(orjson.dumps(GOOD)) == GOOD


@pytest.mark.parametrize(
    "bad",
    [
        {**GOOD, "output_index": "0"},  # lax pydantic would coerce this
        {k: v for k, v in GOOD.items() if k != "item_id"},  # a required field missing
        {**GOOD, "type": "response.audio.delta"},  # the beta name
        {"type": "response.done", "event_id": "e", "response": {"status": "finished"}},
        {"type": "response.done", "event_id": "e", "response": {"usage": {"total_tokens": 1.5}}},
    ],
)
def test_wrong_types_and_missing_fields_fail(bad: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        validate_server_event(orjson.dumps(bad))


def test_fields_the_sdk_does_not_know_fail() -> None:
    with pytest.raises(AssertionError, match="item_idd"):
        validate_server_event(orjson.dumps({**GOOD, "item_idd": "x"}))
    nested = {"type": "response.done", "event_id": "e", "response": {"usage": {"total_tokens": 1, "tokens": 1}}}
    with pytest.raises(AssertionError, match=r"response\.usage\.tokens"):
        validate_server_event(orjson.dumps(nested))
