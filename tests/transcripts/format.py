"""What every provider's transcript tests share: reading a JSON-lines transcript, and writing a
provider event the way transcripts spell it — {"type": <class name>, <field>: <value>, ...} with
bytes as base64, enums as their value, and `usage` listing only its non-zero counts."""

from __future__ import annotations

import base64
import dataclasses
from enum import Enum
from pathlib import Path
from typing import Any

import orjson

from providers.events import ProviderEvent, Usage


def load(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_text().splitlines() if line.strip()]


def render(event: ProviderEvent) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(event).__name__}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode()
        elif isinstance(value, Usage):
            value = {k: n for k, n in value.to_dict().items() if n}
        elif isinstance(value, Enum):
            value = value.value
        out[f.name] = value
    return out
