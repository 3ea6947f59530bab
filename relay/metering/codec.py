"""The wire form of a usage event: one msgpack map, the same bytes on the Redis stream and in the journal.

Decoding is strict. A usage event is money, so anything the consumer cannot read exactly — not a
map, an unknown ``v``ersion, a missing or wrong-typed field, an unknown usage key, a count that is
negative or does not fit a BIGINT — raises ``DecodeError``, and the consumer treats the entry as
poison (it is never acked as if it had been charged; after N deliveries it goes to the dead-letter
stream). Unknown usage keys are refused rather than ignored: ignoring them would silently
under-charge; a producer that adds a unit must bump ``VERSION``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, Final

import msgpack

from providers.events import Usage
from relay.metering.events import UsageEvent

VERSION: Final = 1
KINDS: Final = frozenset({"response", "session"})
USAGE_KEYS: Final = tuple(f.name for f in fields(Usage))
# Quantities land in BIGINT columns; refusing larger ones here keeps them from failing a DB batch.
MAX_COUNT: Final = (1 << 63) - 1
# Only for error messages: never echo a long (client-supplied) value into a log line.
SHOWN: Final = 40


class DecodeError(ValueError):
    """The bytes are not a usage event this consumer can charge (a poison entry)."""


def encode(event: UsageEvent) -> bytes:
    record = {
        "v": VERSION,
        "event_id": event.event_id,
        "kind": event.kind,
        "tenant": event.tenant,
        "session_id": event.session_id,
        "response_id": event.response_id,
        "provider": event.provider,
        "model": event.model,
        # Zero counts are left out: absent means zero, as in the client protocol.
        "usage": {k: v for k, v in event.usage.to_dict().items() if v},
        "ts_ms": event.ts_ms,
        "status": event.status,
        "metadata": dict(event.metadata),
    }
    packed: bytes = msgpack.packb(record, use_bin_type=True)
    return packed


def decode(data: bytes) -> UsageEvent:
    try:
        record = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad input; all mean poison.
        raise DecodeError(f"not msgpack: {type(exc).__name__}") from None
    if not isinstance(record, dict):
        raise DecodeError("not a map")
    version = record.get("v")
    if version != VERSION:
        raise DecodeError(f"unsupported version {version!r}")
    kind = _text(record, "kind")
    if kind not in KINDS:
        raise DecodeError(f"unknown kind {kind[:SHOWN]!r}")
    response_id = record.get("response_id")
    if response_id is not None:
        response_id = _text(record, "response_id")
    ts_ms = record.get("ts_ms")
    if not isinstance(ts_ms, int) or not _is_count(ts_ms):
        raise DecodeError("ts_ms is not a non-negative integer")
    event_id = _text(record, "event_id")
    if not event_id:
        raise DecodeError("empty event_id")
    return UsageEvent(
        event_id=event_id,
        kind="response" if kind == "response" else "session",
        tenant=_text(record, "tenant"),
        session_id=_text(record, "session_id"),
        response_id=response_id,
        provider=_text(record, "provider"),
        model=_text(record, "model"),
        usage=_usage(record.get("usage")),
        ts_ms=ts_ms,
        status=_text(record, "status"),
        metadata=_metadata(record.get("metadata")),
    )


def _text(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise DecodeError(f"{key} is not a string")
    return value


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT


def _usage(raw: object) -> Usage:
    if not isinstance(raw, dict):
        raise DecodeError("usage is not a map")
    unknown = set(raw) - set(USAGE_KEYS)
    if unknown:
        raise DecodeError(f"unknown usage keys {sorted(str(k)[:SHOWN] for k in unknown)}")
    for key, value in raw.items():
        if not _is_count(value):
            raise DecodeError(f"usage {key} is not a non-negative 64-bit integer")
    return Usage(**raw)


def _metadata(raw: object) -> dict[str, str]:
    # No size limits here: whatever a session could emit must decode, or a client could turn its
    # own usage into poison by sending long metadata.
    if not isinstance(raw, dict):
        raise DecodeError("metadata is not a map")
    for key, value in raw.items():
        if not (isinstance(key, str) and isinstance(value, str)):
            raise DecodeError("metadata is not a string map")
    return dict(raw)
