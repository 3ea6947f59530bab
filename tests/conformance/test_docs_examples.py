"""The JSON examples of docs/protocol.md are real: client examples are accepted by the relay, relay examples conform.

Examples are fenced blocks whose info string starts with ``json client`` (client → relay) or ``json relay``
(relay → client), optionally followed by ``title="…"``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conformance import audio as A
from tests.conformance.client import (
    CLIENT_TYPES,
    RELAY_TYPES,
    RelayClient,
    check_client_message,
    check_event,
    describe,
)
from tests.conformance.conftest import REPO, RelayServer

DOC = REPO / "docs" / "protocol.md"
_BLOCK = re.compile(r"^```json (client|relay)\b([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_TITLE = re.compile(r'title="([^"]*)"')
REJECTING_CODES = frozenset({"invalid_message", "unknown_type"})


@dataclass(frozen=True)
class Example:
    direction: str  # "client" or "relay"
    title: str
    line: int
    message: dict[str, Any]

    @property
    def id(self) -> str:
        return f"L{self.line}:{self.title}"


def load_examples() -> list[Example]:
    text = DOC.read_text(encoding="utf-8")
    examples = []
    for m in _BLOCK.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        title_match = _TITLE.search(m.group(2))
        title = title_match.group(1) if title_match else m.group(1)
        try:
            message = json.loads(m.group(3))
        except ValueError as exc:
            raise AssertionError(f"docs/protocol.md line {line}: example {title!r} is not valid JSON: {exc}") from exc
        examples.append(Example(m.group(1), title, line, message))
    return examples


EXAMPLES = load_examples()
CLIENT_EXAMPLES = [e for e in EXAMPLES if e.direction == "client"]
RELAY_EXAMPLES = [e for e in EXAMPLES if e.direction == "relay"]


def test_every_message_type_has_an_example() -> None:
    assert {e.message.get("type") for e in CLIENT_EXAMPLES} >= CLIENT_TYPES
    assert {e.message.get("type") for e in RELAY_EXAMPLES} >= RELAY_TYPES


@pytest.mark.parametrize("example", RELAY_EXAMPLES, ids=lambda e: e.id)
def test_relay_example_conforms(example: Example) -> None:
    check_event(example.message, wire="json")


@pytest.mark.parametrize("example", CLIENT_EXAMPLES, ids=lambda e: e.id)
async def test_client_example_is_accepted(relay: RelayServer, example: Example) -> None:
    message = example.message
    check_client_message(message)
    async with await RelayClient.connect(relay.ws_url) as c:
        if message["type"] == "session.start":
            await c.send(message)
            events = await c.collect_until(lambda e: e.type in ("session.started", "error"), what="session.started")
            assert events[-1].type == "session.started", f"{example.id}: refused:{describe(events)}"
        else:
            # A push-to-talk session with a little user audio in the buffer, so that commits and responses have
            # something to work on; then the example itself.
            await c.start(turn_detection="manual")
            talk = A.to_pcm16(A.load_wav(REPO / "tests" / "audio" / "weather-paris-en-16k.wav")[0][:8000])
            await c.stream_audio(A.frames(talk, 16000, "pcm16"))
            await c.send(message)
        if message["type"] == "session.end":
            events = await c.until_closed()
            assert c.close_code == 1000, f"{example.id}: closed with {c.close_code}:{describe(events)}"
        else:
            events = await c.ping()
        rejected = [e for e in c.received if e.type == "error" and e["code"] in REJECTING_CODES]
        assert not rejected, f"{example.id}: the relay rejected the documented example:{describe(c.received)}"
