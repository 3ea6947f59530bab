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
        if self.emulator_speed < 0:
            raise ConfigError("RELAY_EMULATOR_SPEED must be >= 0 (0 = as fast as possible)")

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
