"""Client message parsing (relay/protocol.py), without sockets."""

from __future__ import annotations

import pytest

from relay import protocol as p
from relay.errors import InvalidMessage, UnknownType, Unsupported


def test_session_start_defaults_and_formats() -> None:
    msg = p.parse_message({"type": "session.start", "provider": "openai"})
    assert isinstance(msg, p.SessionStart)
    assert msg.input_audio.sample_rate == 16000 and msg.output_audio.sample_rate == 24000
    assert msg.modalities == ("audio",) and msg.turn_detection == "server_vad"


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"type": "session.start"}, InvalidMessage),
        ({"type": "session.start", "provider": 3}, InvalidMessage),
        ({"type": "session.start", "provider": "x", "modalities": ["video"]}, Unsupported),
        ({"type": "session.start", "provider": "x", "input_audio": {"sample_rate": 7}}, Unsupported),
        ({"type": "session.start", "provider": "x", "metadata": {"k": 1}}, InvalidMessage),
        ({"type": "session.start", "provider": "x", "metadata": {f"k{i}": "v" for i in range(17)}}, InvalidMessage),
        ({"type": "session.start", "provider": "x", "metadata": {"k": "v" * 257}}, InvalidMessage),
        ({"type": "text"}, InvalidMessage),
        ({"type": "playback", "response_id": "r", "played_ms": -1}, InvalidMessage),
        ({"type": "audio", "audio": "not base64!"}, InvalidMessage),
        ({"type": "nope"}, UnknownType),
        ({"no": "type"}, InvalidMessage),
    ],
)
def test_bad_messages_raise_the_contract_error(message: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        p.parse_message(message)


def test_metadata_within_limits_is_kept() -> None:
    metadata = {f"k{i}": "v" * 256 for i in range(16)}
    msg = p.parse_message({"type": "session.start", "provider": "x", "metadata": metadata})
    assert isinstance(msg, p.SessionStart) and dict(msg.metadata) == metadata


def test_tool_result_output_may_be_structured() -> None:
    msg = p.parse_message({"type": "tool.result", "call_id": "c", "output": {"temp_c": 21}})
    assert isinstance(msg, p.ToolResult) and msg.output == '{"temp_c":21}'
