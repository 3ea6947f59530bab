"""Usage events: what the session reports for every response and once per session."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from providers.events import Usage


@dataclass(frozen=True, slots=True)
class UsageEvent:
    # Made by the producer: the dedupe key of the metering pipeline (never a Redis entry id).
    event_id: str
    kind: Literal["response", "session"]
    tenant: str
    session_id: str
    response_id: str | None
    provider: str
    model: str
    usage: Usage
    ts_ms: int
    status: str = "completed"
    metadata: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "kind": self.kind,
            "tenant": self.tenant,
            "session_id": self.session_id,
            "response_id": self.response_id,
            "provider": self.provider,
            "model": self.model,
            "usage": self.usage.to_dict(),
            "ts_ms": self.ts_ms,
            "status": self.status,
            "metadata": dict(self.metadata),
        }
