"""Prometheus metrics. Nothing here runs per audio frame: sessions add their counts when they end,
and gauges are read from live state at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from relay.registry import SessionRegistry

CONTENT_TYPE = CONTENT_TYPE_LATEST


class RelayMetrics:
    def __init__(self, sessions: SessionRegistry) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions_active = Gauge("relay_sessions_active", "Sessions open now", registry=r)
        self.sessions_active.set_function(lambda: len(sessions))
        self.sessions_ended = Counter("relay_sessions_ended", "Sessions ended, by reason", ["reason"], registry=r)
        self.responses = Counter(
            "relay_responses", "Responses finished, by provider and status", ["provider", "status"], registry=r
        )
        self.audio_in_ms = Counter("relay_audio_in_ms", "User audio relayed upstream (ms)", registry=r)
        self.audio_out_ms = Counter("relay_audio_out_ms", "Assistant audio received from providers (ms)", registry=r)
        self.dropped_audio_ms = Counter(
            "relay_dropped_audio_ms", "Assistant audio dropped by the hard-limit policy (slow clients)", registry=r
        )
        self.invalid_audio_frames = Counter(
            "relay_invalid_audio_frames", "Client audio frames dropped as invalid", registry=r
        )
        self.refused = Counter("relay_refused", "Sessions refused at admission, by reason", ["reason"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
