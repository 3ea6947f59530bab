"""One typed settings object, read from the environment once at start.

Every limit is a named setting with a safe default; the README's settings table is generated
from ``SETTINGS_DOC`` so the two cannot drift apart. Secrets are wrapped in ``Secret`` so that
neither ``repr`` nor logging can leak them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

RESAMPLE_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")


class ConfigError(ValueError):
    """A setting in the environment has a value we cannot use."""


@dataclass(frozen=True, slots=True)
class Secret:
    """A string that never shows itself in reprs, logs or tracebacks."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')" if self.value else "Secret('')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self.value)


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    # Session limits.
    max_message_bytes: int = 1 << 20
    max_session_s: int = 3600
    max_sessions: int = 500
    tenant_max_sessions: int = 100
    invalid_messages_per_minute: int = 10
    # Outbound (relay -> client) audio queue, in milliseconds of audio.
    outbound_high_water_ms: int = 2000
    outbound_hard_limit_ms: int = 4000
    # How long the upstream pump pauses at the high-water mark before it resumes and lets the
    # hard-limit policy drop the oldest audio (a stuck client must not stall the provider forever).
    backpressure_max_wait_ms: int = 3000
    drain_timeout_s: float = 10.0
    # soxr quality of the client->provider resampler. HQ holds back ~16.5 ms of audio at 16->24 kHz
    # (its filter's delay), which a server VAD sees as a later end of turn; QQ holds ~0.1 ms at
    # ~32 dB SNR. Quality by default; latency-critical deployments may choose QQ.
    input_resample_quality: str = "HQ"
    output_resample_quality: str = "HQ"
    # Providers. A missing key means the provider is served by its local emulator.
    openai_api_key: Secret = Secret("")
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = "gpt-realtime"
    gemini_api_key: Secret = Secret("")
    gemini_base_url: str = "https://generativelanguage.googleapis.com"
    gemini_model: str = ""
    cartesia_api_key: Secret = Secret("")
    cartesia_base_url: str = "https://api.cartesia.ai"
    cartesia_model: str = ""
    cartesia_voice: str = ""
    elevenlabs_api_key: Secret = Secret("")
    elevenlabs_base_url: str = "https://api.elevenlabs.io"
    elevenlabs_model: str = ""
    elevenlabs_voice: str = ""
    # Emulator knobs (used when a provider is emulated).
    # Real providers stream faster than real time; 3x is a fair imitation. 0 = as fast as possible.
    emulator_speed: float = 3.0
    # Tenants, API keys and cost records live here (relay/store). SQLite file or PostgreSQL.
    database_url: str = "sqlite:///./relay.db"
    database_pool_size: int = 4
    # Signs browser tokens (POST /v1/tokens). Unset: a random per-process secret (see docs/tenants.md).
    token_secret: Secret = Secret("")
    token_default_ttl_s: int = 300
    # Metering (relay/metering, docs/metering.md). REDIS_URL unset: the embedded default, usage
    # recorded in-process into DATABASE_URL. Set: usage goes to a Redis stream for `realtime-relay meter`.
    redis_url: Secret = Secret("")
    meter_in_process: bool = False
    meter_stream: str = "relay:usage"
    meter_group: str = "relay-meter"
    meter_dead_letter_stream: str = "relay:usage:dead"
    meter_consumer_name: str = ""
    meter_queue_size: int = 10_000
    meter_batch_size: int = 200
    # Empty: next to a SQLite DATABASE_URL (<file>.usage-journal), else ./relay-usage.journal.
    meter_journal_path: str = ""
    meter_journal_fsync_ms: int = 100
    meter_spill_after_s: float = 5.0
    meter_flush_timeout_s: float = 5.0
    meter_stream_maxlen: int = 0
    meter_claim_idle_ms: int = 30_000
    meter_max_deliveries: int = 5

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = ENV_PREFIXLESS.get(f.name, f"RELAY_{f.name.upper()}")
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, name, raw, type(getattr(_DEFAULTS, f.name)))
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"RELAY_PORT must be 1..65535, got {self.port}")
        if self.outbound_hard_limit_ms < self.outbound_high_water_ms:
            raise ConfigError("RELAY_OUTBOUND_HARD_LIMIT_MS must be >= RELAY_OUTBOUND_HIGH_WATER_MS")
        if self.max_message_bytes < 1024:
            raise ConfigError("RELAY_MAX_MESSAGE_BYTES must be at least 1024")
        for name in ("input_resample_quality", "output_resample_quality"):
            if getattr(self, name) not in RESAMPLE_QUALITIES:
                raise ConfigError(f"{env_name(name)} must be one of {', '.join(RESAMPLE_QUALITIES)}")
        if self.emulator_speed < 0:
            raise ConfigError("RELAY_EMULATOR_SPEED must be >= 0 (0 = as fast as possible)")
        if self.database_pool_size < 1:
            raise ConfigError("RELAY_DATABASE_POOL_SIZE must be at least 1")
        if not 1 <= self.token_default_ttl_s <= 600:
            raise ConfigError("RELAY_TOKEN_DEFAULT_TTL_S must be 1..600")
        if self.token_secret and len(self.token_secret.value) < 32:
            raise ConfigError("RELAY_TOKEN_SECRET must be at least 32 characters")
        if self.meter_queue_size < 1 or self.meter_batch_size < 1:
            raise ConfigError("RELAY_METER_QUEUE_SIZE and RELAY_METER_BATCH_SIZE must be at least 1")
        if self.meter_max_deliveries < 1:
            raise ConfigError("RELAY_METER_MAX_DELIVERIES must be at least 1")
        if self.meter_journal_fsync_ms < 1 or self.meter_claim_idle_ms < 0 or self.meter_stream_maxlen < 0:
            raise ConfigError(
                "RELAY_METER_JOURNAL_FSYNC_MS must be >= 1; RELAY_METER_CLAIM_IDLE_MS, RELAY_METER_STREAM_MAXLEN >= 0"
            )
        if self.meter_spill_after_s < 0 or self.meter_flush_timeout_s < 0:
            raise ConfigError("RELAY_METER_SPILL_AFTER_S and RELAY_METER_FLUSH_TIMEOUT_S must be >= 0")

    @property
    def openai_emulated(self) -> bool:
        return not self.openai_api_key

    def api_key(self, provider: str) -> Secret:
        key: Secret = getattr(self, f"{provider}_api_key")
        return key


# Settings that follow a provider's own well-known variable name rather than RELAY_*.
ENV_PREFIXLESS: dict[str, str] = {
    "openai_api_key": "OPENAI_API_KEY",
    "openai_base_url": "OPENAI_BASE_URL",
    "gemini_api_key": "GEMINI_API_KEY",
    "cartesia_api_key": "CARTESIA_API_KEY",
    "elevenlabs_api_key": "ELEVENLABS_API_KEY",
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
}

SETTINGS_DOC: dict[str, str] = {
    "host": "Address `serve` binds to.",
    "port": "Port `serve` listens on.",
    "log_level": "Log level (debug, info, warning, error).",
    "max_message_bytes": "Largest client message accepted; larger closes the session with 1009.",
    "max_session_s": "Longest a session may last, in seconds.",
    "max_sessions": "Sessions this relay process accepts at once; past it new ones close with 1013.",
    "tenant_max_sessions": "Concurrent sessions per tenant; past it the handshake is refused with 429.",
    "invalid_messages_per_minute": "Malformed messages tolerated per minute before close 1008.",
    "outbound_high_water_ms": "Queued output audio (ms) at which the relay stops reading upstream.",
    "outbound_hard_limit_ms": "Queued output audio (ms) past which the oldest audio is dropped and counted.",
    "backpressure_max_wait_ms": "How long reading upstream pauses at the high-water mark before drop-oldest applies.",
    "input_resample_quality": "Resampler quality to the provider (QQ LQ MQ HQ VHQ); HQ holds ~16 ms at 16->24 kHz.",
    "output_resample_quality": "Resampler quality towards the client (QQ, LQ, MQ, HQ, VHQ).",
    "drain_timeout_s": "On SIGTERM, how long sessions may finish before they are closed with 1012.",
    "openai_api_key": "OpenAI key. Unset: `openai` is served by the in-process emulator.",
    "openai_base_url": "OpenAI API base URL (the WebSocket URL is derived from it).",
    "openai_model": "Default OpenAI Realtime model when `session.start` names none.",
    "gemini_api_key": "Gemini API key. Unset: `gemini` is served by the in-process emulator.",
    "gemini_base_url": "Gemini API base URL (the Live WebSocket URL is derived from it).",
    "gemini_model": "Default Gemini Live model (empty: the adapter's current default).",
    "cartesia_api_key": "Cartesia key. Unset: `cartesia` is served by the in-process emulator.",
    "cartesia_base_url": "Cartesia API base URL.",
    "cartesia_model": "Default Cartesia model (empty: the adapter's current default).",
    "cartesia_voice": "Default Cartesia voice id when `session.start` names none.",
    "elevenlabs_api_key": "ElevenLabs key. Unset: `elevenlabs` is served by the in-process emulator.",
    "elevenlabs_base_url": "ElevenLabs API base URL.",
    "elevenlabs_model": "Default ElevenLabs model (empty: the adapter's current default).",
    "elevenlabs_voice": "Default ElevenLabs voice id when `session.start` names none.",
    "emulator_speed": "Emulated providers' output pace as a multiple of real time; 0 = as fast as possible.",
    "database_url": "Tenant/API-key/cost-record store: `sqlite:///PATH`, `sqlite:///:memory:` or `postgresql://...`.",
    "database_pool_size": "PostgreSQL connections the relay keeps at most (SQLite uses one).",
    "token_secret": "HMAC key for browser tokens (>= 32 chars). Unset: random per process, tokens die with it.",
    "token_default_ttl_s": "Lifetime of a browser token when `POST /v1/tokens` names no `ttl_s` (max 600).",
    "redis_url": "Metering Redis (`redis://...`). Unset: usage is recorded in-process into `DATABASE_URL`.",
    "meter_in_process": "With `REDIS_URL`: also run a metering consumer in this relay (else: `realtime-relay meter`).",
    "meter_stream": "Redis stream the usage events go to.",
    "meter_group": "Consumer group of the metering consumers.",
    "meter_dead_letter_stream": "Stream that entries failing `RELAY_METER_MAX_DELIVERIES` times are moved to.",
    "meter_consumer_name": "This consumer's name in the group (empty: host-pid-random).",
    "meter_queue_size": "Usage events held in memory while Redis is slow or down; past it they spill to the journal.",
    "meter_batch_size": "Usage events per XADD pipeline / XREADGROUP / ledger transaction.",
    "meter_journal_path": "Local spill journal (empty: `<sqlite file>.usage-journal`, or `./relay-usage.journal`).",
    "meter_journal_fsync_ms": "fsync interval of the journal while it holds events (power loss loses at most this).",
    "meter_spill_after_s": "How long the transport may fail before queued events are moved to the journal.",
    "meter_flush_timeout_s": "At shutdown, how long queued usage may take to reach Redis before it is journaled.",
    "meter_stream_maxlen": "`XADD MAXLEN ~` guard (0: off). Trims un-acked entries too; the consumer trims safely.",
    "meter_claim_idle_ms": "Pending entries idle this long are claimed from their (dead or stuck) consumer.",
    "meter_max_deliveries": "Deliveries after which a failing entry goes to the dead-letter stream.",
}


def env_name(field_name: str) -> str:
    return ENV_PREFIXLESS.get(field_name, f"RELAY_{field_name.upper()}")


def _parse(field_name: str, env: str, raw: str, kind: type) -> Any:
    try:
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is Secret:
            return Secret(raw)
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{env} must be a {kind.__name__}") from None


_DEFAULTS = Settings()


def settings_table() -> str:
    """The README's settings table, from the one place settings are defined."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for f in fields(Settings):
        default = getattr(_DEFAULTS, f.name)
        shown = "(unset)" if isinstance(default, Secret) or default == "" else f"`{default}`"
        rows.append(f"| `{env_name(f.name)}` | {shown} | {SETTINGS_DOC[f.name]} |")
    return "\n".join(rows)
