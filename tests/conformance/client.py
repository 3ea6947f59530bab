"""A small asyncio client for relay protocol v1, written from the client contract alone (protocol-v1.md).

It speaks `WS /v1/session` in both subprotocols:

- ``relay.v1.json``: control messages are JSON objects in text frames, audio is raw bytes in binary frames
  (and, optionally, ``{"type": "audio", "audio": "<base64>"}`` text messages);
- ``relay.v1.msgpack``: every message is a msgpack map in a binary frame, audio is ``{"type": "audio",
  "audio": <bin>}``.

Every message the relay sends is checked against the contract's field table (`check_event`): an unknown
event type or a missing / wrong-typed field raises `ContractViolation`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal

import msgpack
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

JSON_SUBPROTOCOL: Final = "relay.v1.json"
MSGPACK_SUBPROTOCOL: Final = "relay.v1.msgpack"
Subprotocol = Literal["relay.v1.json", "relay.v1.msgpack"]

Message = dict[str, Any]

# --- the contract's field tables -------------------------------------------------------------------------------------

ENCODINGS: Final = frozenset({"pcm16", "f32", "ulaw", "alaw", "opus"})
USAGE_KEYS: Final = (
    "input_text_tokens",
    "input_audio_tokens",
    "cached_input_tokens",
    "output_text_tokens",
    "output_audio_tokens",
    "characters",
    "audio_in_ms",
    "audio_out_ms",
)
RESPONSE_STATUSES: Final = frozenset({"completed", "cancelled", "failed"})
ROLES: Final = frozenset({"user", "assistant"})

#: Client → relay message types (§4), used to check examples and to refuse typos in our own messages.
CLIENT_TYPES: Final = frozenset(
    {
        "session.start",
        "audio",
        "audio.commit",
        "text",
        "response.create",
        "response.cancel",
        "playback",
        "tool.result",
        "session.update",
        "ping",
        "session.end",
    }
)

#: Relay → client message types (§5).
RELAY_TYPES: Final = frozenset(
    {
        "session.started",
        "audio",
        "speech.started",
        "speech.stopped",
        "response.started",
        "transcript.delta",
        "transcript.done",
        "text.delta",
        "text.done",
        "alignment",
        "tool.call",
        "response.done",
        "error",
        "session.ended",
        "pong",
    }
)

_SECRET = re.compile(r"\bsk-[A-Za-z0-9_-]{12,}")


class ContractViolation(AssertionError):
    """A relay message that does not follow protocol v1."""


class SessionClosed(Exception):
    """The relay closed the WebSocket."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed with code {code} {reason!r}")
        self.code = code
        self.reason = reason


Check = Callable[[Any], str | None]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, int | float)) and not isinstance(v, bool)


def _str(v: Any) -> str | None:
    return None if isinstance(v, str) else f"expected a string, got {v!r}"


def _nonempty_str(v: Any) -> str | None:
    return None if isinstance(v, str) and v else f"expected a non-empty string, got {v!r}"


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"expected a bool, got {v!r}"


def _one_of(values: frozenset[str]) -> Check:
    def check(v: Any) -> str | None:
        return None if isinstance(v, str) and v in values else f"expected one of {sorted(values)}, got {v!r}"

    return check


def _audio_format(v: Any) -> str | None:
    if not isinstance(v, Mapping):
        return f"expected an audio format object, got {v!r}"
    if v.get("encoding") not in ENCODINGS:
        return f"encoding must be one of {sorted(ENCODINGS)}, got {v.get('encoding')!r}"
    if not _is_int(v.get("sample_rate")) or v["sample_rate"] <= 0:
        return f"sample_rate must be a positive integer, got {v.get('sample_rate')!r}"
    if v.get("channels") != 1 or not _is_int(v.get("channels")):
        return f"channels must be the integer 1, got {v.get('channels')!r}"
    return None


def _limits(v: Any) -> str | None:
    if not isinstance(v, Mapping):
        return f"expected a limits object, got {v!r}"
    if not _is_int(v.get("max_message_bytes")) or v["max_message_bytes"] <= 0:
        return f"limits.max_message_bytes must be a positive integer, got {v.get('max_message_bytes')!r}"
    if not _is_number(v.get("max_session_s")) or v["max_session_s"] <= 0:
        return f"limits.max_session_s must be a positive number, got {v.get('max_session_s')!r}"
    return None


def _usage(v: Any) -> str | None:
    if not isinstance(v, Mapping):
        return f"expected a usage object, got {v!r}"
    for key, count in v.items():
        if not isinstance(key, str):
            return f"usage key {key!r} is not a string"
        if key in USAGE_KEYS and (not _is_int(count) or count < 0):
            return f"usage.{key} must be a non-negative integer, got {count!r}"
    return None


def _pong_id(v: Any) -> str | None:
    return None if isinstance(v, str) or _is_int(v) else f"expected the ping's id, got {v!r}"


def _json_string(v: Any) -> str | None:
    if not isinstance(v, str):
        return f"expected a JSON string, got {v!r}"
    try:
        json.loads(v)
    except ValueError:
        return f"not valid JSON: {v!r}"
    return None


def _error_message(v: Any) -> str | None:
    if not isinstance(v, str):
        return f"expected a string, got {v!r}"
    if "Traceback (most recent call last)" in v:
        return "error.message carries a stack trace"
    if _SECRET.search(v):
        return "error.message carries what looks like a provider key"
    return None


# Required fields per relay → client type (§5). Extra fields are allowed: the contract may grow optional ones.
_RELAY_FIELDS: Final[Mapping[str, Mapping[str, Check]]] = {
    "session.started": {
        "session_id": _nonempty_str,
        "provider": _nonempty_str,
        "model": _str,
        "input_audio": _audio_format,
        "output_audio": _audio_format,
        "limits": _limits,
    },
    "speech.started": {},
    "speech.stopped": {},
    "response.started": {"response_id": _nonempty_str},
    "transcript.delta": {"role": _one_of(ROLES), "text": _str},
    "transcript.done": {"role": _one_of(ROLES), "text": _str},
    "text.delta": {"text": _str, "response_id": _nonempty_str},
    "text.done": {"text": _str, "response_id": _nonempty_str},
    "alignment": {"response_id": _nonempty_str},
    "tool.call": {"call_id": _nonempty_str, "name": _nonempty_str, "arguments": _json_string},
    "response.done": {"response_id": _nonempty_str, "status": _one_of(RESPONSE_STATUSES), "usage": _usage},
    "error": {"code": _nonempty_str, "message": _error_message, "fatal": _bool},
    "session.ended": {"reason": _nonempty_str, "usage": _usage},
    "pong": {"id": _pong_id},
}
assert set(_RELAY_FIELDS) | {"audio"} == RELAY_TYPES


def _check_alignment(msg: Mapping[str, Any]) -> list[str]:
    """`alignment`: `chars` or `words`, with `start_ms` and `duration_ms`, either one value or one per item."""
    units = [k for k in ("chars", "words") if k in msg]
    if len(units) != 1:
        return ["alignment needs exactly one of 'chars' or 'words'"]
    items = msg[units[0]]
    problems: list[str] = []
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        problems.append(f"alignment.{units[0]} must be a list of strings, got {items!r}")
        return problems
    for key in ("start_ms", "duration_ms"):
        if key not in msg:
            problems.append(f"alignment.{key} is missing")
            continue
        value = msg[key]
        if isinstance(value, list):
            if len(value) != len(items) or not all(_is_number(t) and t >= 0 for t in value):
                problems.append(f"alignment.{key} must be one non-negative number per item, got {value!r}")
        elif not (_is_number(value) and value >= 0):
            problems.append(f"alignment.{key} must be a non-negative number or a list of them, got {value!r}")
    return problems


Wire = Literal["json", "msgpack"]


def check_event(msg: Any, *, wire: Wire = "json", extra_types: Iterable[str] = ()) -> None:
    """Raise `ContractViolation` unless `msg` is a well-formed relay → client message (not a binary frame).

    `wire` is how it arrived: a JSON text frame (audio then is base64 text) or a msgpack map (audio is bytes).
    """
    if not isinstance(msg, Mapping):
        raise ContractViolation(f"a relay message must be an object/map, got {msg!r:.200}")
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise ContractViolation(f"message without a string 'type': {msg!r:.200}")
    if kind not in RELAY_TYPES and kind not in set(extra_types):
        raise ContractViolation(f"unknown relay event type {kind!r}: {msg!r:.200}")
    problems: list[str] = []
    if kind == "audio":
        audio = msg.get("audio")
        if wire == "msgpack":
            if not isinstance(audio, bytes):
                problems.append(f"msgpack audio must be bin, got {type(audio).__name__}")
        elif not isinstance(audio, str):
            problems.append(f"JSON audio must be a base64 string, got {type(audio).__name__}")
        else:
            try:
                base64.b64decode(audio, validate=True)
            except (binascii.Error, ValueError):
                problems.append("JSON audio is not valid base64")
        if _nonempty_str(msg.get("response_id")) is not None:
            problems.append(f"audio messages (msgpack / base64 forms) must carry response_id, got {msg!r:.200}")
    elif kind in _RELAY_FIELDS:
        for name, check in _RELAY_FIELDS[kind].items():
            if name not in msg:
                problems.append(f"missing field {name!r}")
                continue
            problem = check(msg[name])
            if problem:
                problems.append(f"{name}: {problem}")
        if kind in ("transcript.delta", "transcript.done"):
            # The assistant's transcript belongs to a response; the user's may precede any response.
            rid = msg.get("response_id")
            if msg.get("role") == "assistant" and _nonempty_str(rid) is not None:
                problems.append(f"an assistant transcript needs response_id, got {rid!r}")
            elif rid is not None and not isinstance(rid, str):
                problems.append(f"response_id must be a string, got {rid!r}")
        if kind == "alignment":
            problems.extend(_check_alignment(msg))
    if problems:
        raise ContractViolation(f"{kind}: " + "; ".join(problems) + f" — in {dict(msg)!r:.300}")


def check_client_message(msg: Any) -> None:
    """Light check of a client → relay message (used on doc examples and on what this client sends)."""
    if not isinstance(msg, Mapping) or not isinstance(msg.get("type"), str):
        raise ContractViolation(f"a client message must be an object with a string 'type': {msg!r:.200}")
    if msg["type"] not in CLIENT_TYPES:
        raise ContractViolation(f"unknown client message type {msg['type']!r}")
    if msg["type"] == "session.start" and not isinstance(msg.get("provider"), str):
        raise ContractViolation("session.start needs a provider")


# --- received events -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One message from the relay. Audio is always decoded to bytes (`audio`), whatever its framing."""

    type: str
    fields: Mapping[str, Any]
    at: float  # time.monotonic() at arrival
    binary_frame: bool = False  # raw audio in a binary frame (JSON subprotocol)

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    @property
    def audio(self) -> bytes:
        data = self.fields.get("audio", b"")
        assert isinstance(data, bytes)
        return data

    @property
    def response_id(self) -> str | None:
        rid = self.fields.get("response_id")
        return rid if isinstance(rid, str) else None

    def brief(self) -> str:
        """A short description for assertion messages."""
        if self.type == "audio":
            return f"audio({len(self.audio)} B, response_id={self.response_id})"
        shown = {k: v for k, v in self.fields.items() if k != "type"}
        return f"{self.type} {json.dumps(shown, default=str)[:160]}"


def describe(events: Iterable[Event]) -> str:
    """Collapse runs of audio events: for failure messages."""
    out: list[str] = []
    run = 0
    run_bytes = 0
    for ev in events:
        if ev.type == "audio":
            run += 1
            run_bytes += len(ev.audio)
            continue
        if run:
            out.append(f"[{run} audio frames, {run_bytes} B]")
            run = run_bytes = 0
        out.append(ev.brief())
    if run:
        out.append(f"[{run} audio frames, {run_bytes} B]")
    return "\n  ".join(["", *out])


@dataclass
class Response:
    """What one response delivered, collected by `RelayClient.collect_response`."""

    response_id: str
    started: Event
    events: list[Event] = field(default_factory=list)
    done: Event | None = None
    audio: bytearray = field(default_factory=bytearray)
    first_audio_at: float | None = None

    @property
    def status(self) -> str | None:
        return None if self.done is None else str(self.done["status"])

    def of_type(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.type == kind]


# --- the client ------------------------------------------------------------------------------------------------------


class RelayClient:
    """One relay session over one WebSocket connection.

    Every received message is checked against the contract and kept in `received` (for evidence on failure);
    every control message sent is kept in `sent`.
    """

    def __init__(self, ws: ClientConnection, subprotocol: Subprotocol) -> None:
        self.ws = ws
        self.subprotocol: Subprotocol = subprotocol
        self.received: list[Event] = []
        self.sent: list[Message] = []
        self.session: Event | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self._ping_seq = 0

    @classmethod
    async def connect(
        cls,
        url: str,
        subprotocol: Subprotocol | None = JSON_SUBPROTOCOL,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> RelayClient:
        ws = await connect(
            url,
            subprotocols=None if subprotocol is None else [subprotocol],  # type: ignore[list-item]
            additional_headers=dict(headers or {}),
            proxy=None,
            max_size=None,  # what we accept: the relay may send what it likes
            max_queue=None,
            ping_interval=None,
            open_timeout=5,
            close_timeout=2,
            compression=None,
        )
        chosen = ws.subprotocol or JSON_SUBPROTOCOL  # JSON is the default when none is asked
        if subprotocol is not None and chosen != subprotocol:
            await ws.close()
            raise ContractViolation(f"asked for subprotocol {subprotocol}, the relay chose {ws.subprotocol}")
        if chosen not in (JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL):
            await ws.close()
            raise ContractViolation(f"unknown subprotocol {chosen!r}")
        return cls(ws, chosen)  # type: ignore[arg-type]

    async def __aenter__(self) -> RelayClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.ws.close()

    # --- sending ---

    def encode(self, msg: Mapping[str, Any]) -> str | bytes:
        if self.subprotocol == MSGPACK_SUBPROTOCOL:
            data: bytes = msgpack.packb(dict(msg), use_bin_type=True)
            return data
        return orjson.dumps(dict(msg)).decode()

    async def send(self, msg: Mapping[str, Any]) -> float:
        """Send one control message; returns time.monotonic() just after handing it to the socket."""
        self.sent.append(dict(msg))
        await self.ws.send(self.encode(msg))
        return time.monotonic()

    async def send_raw(self, frame: str | bytes) -> None:
        """Send a frame exactly as given (for malformed-input tests)."""
        self.sent.append({"raw": frame if len(frame) <= 80 else f"<{len(frame)} {type(frame).__name__}>"})
        await self.ws.send(frame)

    async def send_audio(self, chunk: bytes, *, as_base64: bool = False) -> None:
        """User audio, in the session's input format: a binary frame (JSON), a msgpack audio map, or base64 JSON."""
        if self.subprotocol == MSGPACK_SUBPROTOCOL:
            await self.ws.send(msgpack.packb({"type": "audio", "audio": chunk}, use_bin_type=True))
        elif as_base64:
            await self.ws.send(orjson.dumps({"type": "audio", "audio": base64.b64encode(chunk).decode()}).decode())
        else:
            await self.ws.send(chunk)

    async def stream_audio(self, frames: Sequence[bytes], *, as_base64: bool = False) -> None:
        """Send frames back to back, faster than real time."""
        for chunk in frames:
            await self.send_audio(chunk, as_base64=as_base64)

    # --- receiving ---

    def _parse(self, frame: str | bytes) -> Event:
        now = time.monotonic()
        if self.subprotocol == MSGPACK_SUBPROTOCOL:
            if isinstance(frame, str):
                raise ContractViolation(f"text frame on the msgpack subprotocol: {frame!r:.200}")
            try:
                msg = msgpack.unpackb(frame, raw=False)
            except Exception as exc:  # msgpack raises several unrelated types
                raise ContractViolation(f"undecodable msgpack frame ({exc}): {frame!r:.100}") from exc
            check_event(msg, wire="msgpack")
            return Event(str(msg["type"]), msg, now)
        if isinstance(frame, bytes):
            return Event("audio", {"type": "audio", "audio": frame}, now, binary_frame=True)
        try:
            msg = json.loads(frame)
        except ValueError as exc:
            raise ContractViolation(f"malformed JSON from the relay: {frame!r:.200}") from exc
        check_event(msg, wire="json")
        if msg["type"] == "audio":
            msg = {**msg, "audio": base64.b64decode(msg["audio"])}
        return Event(str(msg["type"]), msg, now)

    async def recv(self, wait_s: float = 10.0) -> Event:
        """The next message; `SessionClosed` once the relay closes, `TimeoutError` after `wait_s` seconds."""
        try:
            async with asyncio.timeout(wait_s):
                frame = await self.ws.recv()
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd is not None else None
            self.close_reason = exc.rcvd.reason if exc.rcvd is not None else ""
            raise SessionClosed(self.close_code, self.close_reason) from exc
        event = self._parse(frame)
        self.received.append(event)
        return event

    async def collect_until(
        self, stop: Callable[[Event], bool], wait_s: float = 10.0, *, what: str = "the expected event"
    ) -> list[Event]:
        """Receive until `stop(event)` (that event included); fails with the evidence on timeout or close."""
        out: list[Event] = []
        deadline = time.monotonic() + wait_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                event = await self.recv(wait_s=max(remaining, 0.001))
            except TimeoutError:
                raise AssertionError(f"no {what} within {wait_s} s; received:{describe(out)}") from None
            except SessionClosed as exc:
                raise AssertionError(
                    f"connection closed ({exc.code}) before {what}; received:{describe(out)}"
                ) from None
            out.append(event)
            if stop(event):
                return out

    async def until_closed(self, wait_s: float = 10.0) -> list[Event]:
        """Receive everything until the relay closes; the close code is then in `close_code`."""
        out: list[Event] = []
        deadline = time.monotonic() + wait_s
        while True:
            try:
                out.append(await self.recv(wait_s=max(deadline - time.monotonic(), 0.001)))
            except SessionClosed:
                return out
            except TimeoutError:
                raise AssertionError(f"the relay did not close within {wait_s} s; received:{describe(out)}") from None

    async def ping(self, wait_s: float = 10.0) -> list[Event]:
        """Barrier: send `ping` and receive until its `pong`. Returns what came before the pong."""
        self._ping_seq += 1
        ping_id = f"barrier-{self._ping_seq}"
        await self.send({"type": "ping", "id": ping_id})
        events = await self.collect_until(
            lambda e: e.type == "pong" and e.get("id") == ping_id, wait_s, what=f"pong {ping_id}"
        )
        return events[:-1]

    # --- session-level helpers ---

    async def start(self, provider: str = "openai", wait_s: float = 10.0, **fields: Any) -> Event:
        """`session.start` and wait for `session.started` (which must be the first thing the relay says)."""
        await self.send({"type": "session.start", "provider": provider, **fields})
        event = await self.recv(wait_s)
        if event.type != "session.started":
            raise AssertionError(f"expected session.started, got {event.brief()}")
        self.session = event
        return event

    async def collect_response(
        self,
        wait_s: float = 15.0,
        *,
        on_audio: Callable[[Response, Event], Awaitable[None]] | None = None,
        allow: Iterable[str] = ("speech.started", "speech.stopped", "transcript.delta", "transcript.done"),
    ) -> tuple[Response, list[Event]]:
        """Receive one response from `response.started` to `response.done`.

        Before `response.started` only the `allow`ed event types may arrive (returned as the second value).
        Checks the ordering the contract implies: every event carrying a response_id belongs to this
        response, nothing of it arrives after its `response.done`; an `error` fails the collection.
        """
        before: list[Event] = []
        deadline = time.monotonic() + wait_s
        allowed = set(allow)
        response: Response | None = None
        while True:
            remaining = deadline - time.monotonic()
            try:
                event = await self.recv(wait_s=max(remaining, 0.001))
            except TimeoutError:
                got = before + (response.events if response else [])
                raise AssertionError(f"response incomplete after {wait_s} s; received:{describe(got)}") from None
            except SessionClosed as exc:
                got = before + (response.events if response else [])
                raise AssertionError(f"closed ({exc.code}) during a response; received:{describe(got)}") from None
            if event.type == "error":
                got = before + (response.events if response else []) + [event]
                raise AssertionError(f"error during a response:{describe(got)}")
            if response is None:
                if event.type == "response.started":
                    response = Response(str(event["response_id"]), event)
                    response.events.append(event)
                    continue
                if event.type not in allowed:
                    raise AssertionError(f"{event.brief()} before response.started; before it:{describe(before)}")
                before.append(event)
                continue
            response.events.append(event)
            rid = event.response_id
            if rid is not None and rid != response.response_id and event.get("role") != "user":
                raise AssertionError(f"{event.brief()} inside response {response.response_id}")
            if event.type == "audio":
                if response.first_audio_at is None:
                    response.first_audio_at = event.at
                response.audio.extend(event.audio)
                if on_audio is not None:
                    await on_audio(response, event)
            elif event.type == "response.done":
                if rid != response.response_id:
                    raise AssertionError(f"{event.brief()} does not close response {response.response_id}")
                response.done = event
                return response, before

    async def end(self, wait_s: float = 10.0) -> tuple[Event, list[Event]]:
        """`session.end`: returns `session.ended` and what came before it; the socket is then closed."""
        await self.send({"type": "session.end"})
        events = await self.until_closed(wait_s)
        ended = [e for e in events if e.type == "session.ended"]
        if len(ended) != 1:
            raise AssertionError(f"expected one session.ended before the close, got:{describe(events)}")
        return ended[0], events
