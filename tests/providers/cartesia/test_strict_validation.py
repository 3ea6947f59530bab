"""The strict validator the emulator tests rely on does catch malformed server events."""

from __future__ import annotations

from typing import Any

import orjson
import pydantic
import pytest

from tests.providers.cartesia.conftest import strict_model, validate_server_event

GOOD: dict[str, Any] = {
    "type": "chunk",
    "data": "AAAA",
    "done": False,
    "status_code": 206,
    "step_time": 1.5,
    "context_id": "c1",
}


def test_a_good_event_passes() -> None:
    assert validate_server_event(orjson.dumps(GOOD)) == GOOD


@pytest.mark.parametrize(
    "bad",
    [
        {**GOOD, "status_code": "206"},  # lax pydantic would coerce this
        {**GOOD, "done": 0},
        {k: v for k, v in GOOD.items() if k != "context_id"},  # a required field missing
        {k: v for k, v in GOOD.items() if k != "step_time"},
        {**GOOD, "type": "audio"},  # not a Cartesia event
        {"type": "done", "done": False, "status_code": 206, "context_id": "c1"},  # done is always true
        {
            "type": "timestamps",
            "done": False,
            "status_code": 206,
            "context_id": "c",
            "word_timestamps": {"words": ["a"]},
        },
        {"type": "flush_done", "done": False, "flush_done": True, "status_code": 206, "context_id": "c"},  # no flush_id
    ],
)
def test_wrong_types_and_missing_fields_fail(bad: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        validate_server_event(orjson.dumps(bad))


def test_fields_the_sdk_does_not_know_fail() -> None:
    with pytest.raises(AssertionError, match="contextId"):
        validate_server_event(orjson.dumps({**GOOD, "contextId": "c1"}))
    nested = {
        "type": "timestamps",
        "done": False,
        "status_code": 206,
        "context_id": "c",
        "word_timestamps": {"words": ["a"], "start": [0.0], "end": [0.1], "durations": [0.1]},
    }
    with pytest.raises(AssertionError, match=r"word_timestamps\.durations"):
        validate_server_event(orjson.dumps(nested))
    legacy = {"type": "error", "done": True, "error": "Title: message", "status_code": 400}
    with pytest.raises(AssertionError, match="error"):
        strict_model(orjson.dumps(legacy))
    strict_model(orjson.dumps(legacy), allowed_extras={"error"})  # the pre-2026-03-01 shape, when asked for
