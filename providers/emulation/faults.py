"""Fault switches for emulators, settable on the object or per connection through the query string.

A test that holds the emulator sets ``emulator.faults = Faults(...)`` (it applies to connections
opened afterwards). A test that can only choose the upstream URL — a relay test, say — appends
``?emulator_faults=drop_after_events:12,delay_ms:5``; those values override the object's for that
one connection. `Faults.to_query` writes that string back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["FAULTS_QUERY_PARAM", "FaultSpecError", "Faults", "parse_count", "parse_non_negative"]

#: query parameter carrying per-connection faults
FAULTS_QUERY_PARAM: Final = "emulator_faults"


class FaultSpecError(ValueError):
    """An ``emulator_faults`` string names an unknown switch or carries a bad value."""


# Value parsers (raise ValueError), also for an emulator's own switches (`GeminiFaults`).


def parse_non_negative(raw: str) -> float:
    """A duration or other float >= 0."""
    value = float(raw)
    if not value >= 0.0:  # also rejects NaN
        raise ValueError("must be >= 0")
    return value


def parse_count(raw: str) -> int | None:
    """A count >= 0, or None for ``""``, ``none`` or ``off``."""
    if raw.lower() in ("", "none", "off"):
        return None
    value = int(raw)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def _status(raw: str) -> int | None:
    value = parse_count(raw)
    if value is not None and not 400 <= value <= 599:
        raise ValueError("must be an HTTP error status (400-599)")
    return value


def _text(raw: str) -> str | None:
    return None if raw.lower() in ("", "none", "off") else raw


@dataclass(slots=True)
class Faults:
    """What to break. Everything off by default."""

    #: sleep this long before every server event
    delay_ms: float = 0.0
    #: after this many server events on a connection, drop the TCP connection (no close frame)
    drop_after_events: int | None = None
    #: after this many server events, send one text frame that is not JSON
    malformed_after_events: int | None = None
    #: refuse the WebSocket handshake with this HTTP status
    reject_connect: int | None = None
    #: answer every response request with a failed response and an error event carrying this message
    error_on_response: str | None = None

    @property
    def active(self) -> bool:
        return self != Faults()

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """``"drop_after_events:12,delay_ms:5"`` → ``Faults(drop_after_events=12, delay_ms=5.0)``."""
        return cls().merged(spec)

    def merged(self, spec: str | None) -> Faults:
        """A copy with the switches named in ``spec`` overriding these."""
        changes: dict[str, Any] = {}
        for part in (spec or "").split(","):
            if not part.strip():
                continue
            name, sep, raw = part.partition(":")
            name = name.strip()
            parser = _PARSERS.get(name)
            if parser is None or not sep:
                known = ", ".join(sorted(_PARSERS))
                raise FaultSpecError(f"bad fault {part.strip()!r}: expected name:value with name one of {known}")
            try:
                changes[name] = parser(raw.strip())
            except ValueError as exc:
                raise FaultSpecError(f"bad value for fault {name!r}: {exc}") from None
        return dataclasses.replace(self, **changes)

    def merged_with_query(self, query: Mapping[str, Sequence[str]]) -> Faults:
        """Apply every ``emulator_faults`` value of a parsed query string (``urllib.parse.parse_qs``)."""
        faults = self
        for spec in query.get(FAULTS_QUERY_PARAM, ()):
            faults = faults.merged(spec)
        return faults

    def to_query(self) -> str:
        """The ``emulator_faults`` value that reproduces the switches that are on."""
        parts = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value != field.default:
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                parts.append(f"{field.name}:{value}")
        return ",".join(parts)


_PARSERS: Final[dict[str, Callable[[str], Any]]] = {
    "delay_ms": parse_non_negative,
    "drop_after_events": parse_count,
    "malformed_after_events": parse_count,
    "reject_connect": _status,
    "error_on_response": _text,
}
