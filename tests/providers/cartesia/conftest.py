"""Helpers for the Cartesia emulator tests: strict validation of server events against the SDK's types.

The official SDK parses leniently (``construct_type_unchecked``); `strict_model` validates a raw
frame *strictly* against the SDK's own pydantic models instead — wrong types, missing fields and
fields the SDK does not declare all fail — and `validate_server_event` also checks that the SDK's
parser picks the same class.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from typing import Annotated, Any, Final, Union, cast

import orjson
import pydantic
from cartesia.types import websocket_response

API_KEY: Final = "sk_car_emulator-test-0123456789"
TIMEOUT_S: Final = 5.0
VOICE: Final = "a0e99841-438c-4a64-b679-ae501e7d6091"

# The SDK marks its union with its own `PropertyInfo(discriminator="type")`, which pydantic does not
# see; re-annotate the members as a real discriminated union so errors name the one event class.
_MEMBERS: Final = typing.get_args(typing.get_args(websocket_response.WebsocketResponse)[0])
_STRICT: Final[pydantic.TypeAdapter[Any]] = pydantic.TypeAdapter(
    cast(Any, Annotated[Union[_MEMBERS], pydantic.Field(discriminator="type")])  # noqa: UP007 - a runtime tuple
)


def _unknown_fields(value: object, path: str) -> list[str]:
    if isinstance(value, pydantic.BaseModel):
        found = [f"{path}.{key}".lstrip(".") for key in (value.model_extra or {})]
        for name in type(value).model_fields:
            found += _unknown_fields(getattr(value, name), f"{path}.{name}")
        return found
    if isinstance(value, list):
        return [f for i, v in enumerate(value) for f in _unknown_fields(v, f"{path}[{i}]")]
    return []


def strict_model(raw: bytes | str, *, allowed_extras: Iterable[str] = ()) -> pydantic.BaseModel:
    """Strictly validate one raw server frame against the SDK's types (wrong types, missing fields, unknown fields)."""
    model: pydantic.BaseModel = _STRICT.validate_json(raw, strict=True)
    unknown = [f for f in _unknown_fields(model, "") if f not in set(allowed_extras)]
    assert not unknown, f"fields the SDK does not know in {type(model).__name__}: {unknown}"
    return model


def validate_server_event(raw: bytes | str) -> dict[str, Any]:
    """`strict_model`, the SDK's own parser agreeing on the class, then the frame as a dict."""
    model = strict_model(raw)
    parsed = _sdk_parse(raw)
    assert type(parsed) is type(model), f"SDK parsed {type(parsed).__name__}, expected {type(model).__name__}"
    data: dict[str, Any] = orjson.loads(raw)
    return data


def _sdk_parse(raw: bytes | str) -> object:
    # What `AsyncTTSResourceConnection.parse_event` does, without needing a connection.
    from cartesia._models import construct_type_unchecked

    return construct_type_unchecked(value=orjson.loads(raw), type_=cast(Any, websocket_response.WebsocketResponse))


def generation(context_id: str, transcript: str, *, more: bool = False, **overrides: Any) -> dict[str, Any]:
    """A generation request as a client would send it (2026-03-01 shapes)."""
    request: dict[str, Any] = {
        "context_id": context_id,
        "model_id": "sonic-3.5",
        "transcript": transcript,
        "voice": {"mode": "id", "id": VOICE},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000},
        "continue": more,
        "add_timestamps": True,
        **overrides,
    }
    return request
