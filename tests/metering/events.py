"""Usage events for tests."""

from __future__ import annotations

import time
import uuid
from typing import Any

from providers.events import Usage
from relay.metering.events import UsageEvent


def usage_event(**overrides: Any) -> UsageEvent:
    usage = overrides.pop("usage", None)
    if usage is None:
        usage = Usage(input_text_tokens=100, output_audio_tokens=200, audio_out_ms=1500)
    elif isinstance(usage, dict):
        usage = Usage(**usage)
    values: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "kind": "response",
        "tenant": "acme",
        "session_id": "sess_" + uuid.uuid4().hex[:8],
        "response_id": "resp_" + uuid.uuid4().hex[:8],
        "provider": "openai",
        "model": "gpt-realtime",
        "usage": usage,
        "ts_ms": int(time.time() * 1000),
        "status": "completed",
        "metadata": {"customer": "c-1"},
    }
    values.update(overrides)
    return UsageEvent(**values)
