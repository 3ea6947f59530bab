"""What the running app holds: settings, providers, the usage sink and the session registry."""

from __future__ import annotations

from dataclasses import dataclass

from relay.config import Settings
from relay.directory import ProviderDirectory
from relay.metering.sink import UsageSink
from relay.metrics import RelayMetrics
from relay.registry import SessionRegistry


@dataclass
class RelayState:
    settings: Settings
    directory: ProviderDirectory
    sink: UsageSink
    registry: SessionRegistry
    metrics: RelayMetrics
