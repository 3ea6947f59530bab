"""What the running app holds: settings, providers, the usage sink, the session registry, the store."""

from __future__ import annotations

from dataclasses import dataclass

from relay.auth import Authenticator
from relay.config import Settings
from relay.directory import ProviderDirectory
from relay.metering.pipeline import Metering
from relay.metering.sink import UsageSink
from relay.metrics import RelayMetrics
from relay.registry import SessionRegistry
from relay.store.db import Database


@dataclass
class RelayState:
    settings: Settings
    directory: ProviderDirectory
    sink: UsageSink
    registry: SessionRegistry
    metrics: RelayMetrics
    #: tenants, API keys (relay/store) and cost records (relay/metering), SQLite or PostgreSQL
    db: Database
    auth: Authenticator
    #: the metering pipeline (relay/metering/pipeline.py); None when a test passed its own sink
    metering: Metering | None = None
