"""The wire form: round trips exactly, and anything else is a poison entry (DecodeError), never a guess."""

from __future__ import annotations

from dataclasses import replace

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.events import Usage
from relay.metering.codec import MAX_COUNT, VERSION, DecodeError, decode, encode
from tests.metering.events import usage_event

counts = st.integers(min_value=0, max_value=MAX_COUNT)
texts = st.text(max_size=30)


@given(
    usage=st.builds(
        Usage,
        input_text_tokens=counts,
        input_audio_tokens=counts,
        cached_input_tokens=counts,
        output_text_tokens=counts,
        output_audio_tokens=counts,
        characters=counts,
        audio_in_ms=counts,
        audio_out_ms=counts,
    ),
    kind=st.sampled_from(["response", "session"]),
    response_id=st.none() | texts,
    metadata=st.dictionaries(texts, texts, max_size=5),
    model=texts,
)
def test_round_trip_is_exact(
    usage: Usage, kind: str, response_id: str | None, metadata: dict[str, str], model: str
) -> None:
    event = usage_event(usage=usage, kind=kind, response_id=response_id, metadata=metadata, model=model)
    assert decode(encode(event)) == event


def test_carries_a_version_and_leaves_zero_counts_out() -> None:
    record = msgpack.unpackb(encode(usage_event(usage={"characters": 12})))
    assert record["v"] == VERSION
    assert record["usage"] == {"characters": 12}


def _record(**changes: object) -> bytes:
    record = msgpack.unpackb(encode(usage_event()))
    record.update(changes)
    return msgpack.packb({k: v for k, v in record.items() if v is not _DROP})


_DROP = object()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used in msgpack
        b"not msgpack at all",
        msgpack.packb([1, 2, 3]),
        _record(v=VERSION + 1),
        _record(v=_DROP),
        _record(kind="refund"),
        _record(event_id=""),
        _record(event_id=7),
        _record(tenant=None),
        _record(usage={"input_text_tokens": -1}),
        _record(usage={"input_text_tokens": 1.5}),
        _record(usage={"input_text_tokens": True}),
        _record(usage={"input_text_tokens": MAX_COUNT + 1}),
        _record(usage={"teleport_ms": 1}),  # a unit this consumer cannot price: never ignored
        _record(ts_ms="yesterday"),
        _record(metadata={"k": 1}),
        _record(metadata=["x"]),
    ],
)
def test_anything_else_is_poison(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(data)


def test_long_metadata_still_decodes() -> None:
    # Whatever a session can emit must decode, or a client could make its own usage unrecordable.
    event = replace(usage_event(), metadata={f"k{i}": "v" * 10_000 for i in range(200)})
    assert decode(encode(event)) == event
