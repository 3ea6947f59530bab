"""`ElevenLabsProvider`: the factory the relay registers as `elevenlabs` (streaming TTS, multi-context WebSocket)."""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping, Sequence
from typing import Final
from urllib.parse import quote

from providers.base import ProviderKind, SessionConfig, UpstreamError, UpstreamSession
from providers.elevenlabs.connection import KEEPALIVE_S, open_session
from providers.elevenlabs.translator import ElevenLabsTranslator, Scrubber
from providers.sockets import websocket_url

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MODEL", "DEFAULT_VOICE", "ElevenLabsProvider", "stream_url"]

DEFAULT_BASE_URL: Final = "https://api.elevenlabs.io"
#: the low-latency model meant for streaming (0.5 credit per character)
DEFAULT_MODEL: Final = "eleven_flash_v2_5"
#: "Rachel", a premade voice every account has
DEFAULT_VOICE: Final = "21m00Tcm4TlvDq8ikWAM"
#: TTS model families served over the WebSockets (eleven_v3 is not, per the service's docs)
_WS_MODEL: Final = re.compile(r"eleven_(?:flash|turbo|multilingual|monolingual)_v\d+(?:_\d+)?")
#: the service's inactivity timeout may be raised to this many seconds
MAX_INACTIVITY_TIMEOUT_S: Final = 180


def stream_url(
    base_url: str,
    voice_id: str,
    *,
    model: str,
    output_format: str,
    multi: bool = True,
    extra: Mapping[str, str] | None = None,
) -> str:
    """The TTS WebSocket URL for `base_url`, derived as the official SDK does: http→ws, https→wss,
    ``/v1/text-to-speech/{voice_id}/(multi-)stream-input`` under the base path, the query appended
    to the base URL's own."""
    endpoint = "multi-stream-input" if multi else "stream-input"
    path = f"/v1/text-to-speech/{quote(voice_id, safe='')}/{endpoint}"
    params = [("model_id", model), ("output_format", output_format), *(extra or {}).items()]
    return websocket_url("ElevenLabs", base_url, path, params)


class ElevenLabsProvider:
    """Opens ElevenLabs streaming TTS sessions (implements `providers.base.Provider`).

    Options beyond the common ones: `default_voice` (a voice id, used when the session names none);
    `voice_settings` (stability, similarity_boost, style, use_speaker_boost, speed) and
    `chunk_length_schedule` (characters buffered before each generation), sent when a context opens;
    `auto_mode` (the service picks generation points itself); `inactivity_timeout_s` (the service's
    inactivity timeout, up to 180 s; default 20 s); `keepalive_s` (a keepalive after this long
    without sending; 0 turns it off).

    The API key is held privately and never shown: not in the repr, the logs or any error message.
    """

    name: str = "elevenlabs"
    kind: ProviderKind = ProviderKind.TTS
    modalities: frozenset[str] = frozenset({"audio"})
    default_model: str = DEFAULT_MODEL  # the instance's own, when given, shadows it

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        default_model: str = DEFAULT_MODEL,
        default_voice: str = DEFAULT_VOICE,
        connect_timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        *,
        voice_settings: Mapping[str, float | bool] | None = None,
        chunk_length_schedule: Sequence[int] | None = None,
        auto_mode: bool = False,
        inactivity_timeout_s: int | None = None,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        stream_url(base_url, default_voice, model=default_model, output_format="pcm_24000")  # fail fast
        if inactivity_timeout_s is not None and not 1 <= inactivity_timeout_s <= MAX_INACTIVITY_TIMEOUT_S:
            raise ValueError(f"inactivity_timeout_s must be 1..{MAX_INACTIVITY_TIMEOUT_S}; got {inactivity_timeout_s}")
        self._api_key = api_key
        self.base_url = base_url
        self.default_model = default_model
        self.default_voice = default_voice
        self.connect_timeout_s = connect_timeout_s
        self.ssl_context = ssl_context
        self.voice_settings = dict(voice_settings) if voice_settings else None
        self.chunk_length_schedule = tuple(chunk_length_schedule) if chunk_length_schedule else None
        self.auto_mode = auto_mode
        self.inactivity_timeout_s = inactivity_timeout_s
        self.keepalive_s = keepalive_s

    def __repr__(self) -> str:
        return (
            f"ElevenLabsProvider(base_url={self.base_url!r}, default_model={self.default_model!r}, "
            f"default_voice={self.default_voice!r})"
        )

    def supports_model(self, model: str) -> bool:
        # Checking the shape gives the client a clear `unsupported` at session.start for a typo or for
        # eleven_v3 (no WebSocket streaming), and still admits later versions of these families.
        return _WS_MODEL.fullmatch(model) is not None

    def _query(self) -> dict[str, str]:
        extra: dict[str, str] = {}
        if self.auto_mode:
            extra["auto_mode"] = "true"
        if self.inactivity_timeout_s is not None:
            extra["inactivity_timeout"] = str(self.inactivity_timeout_s)
        return extra

    async def connect(self, config: SessionConfig) -> UpstreamSession:
        if not self._api_key:
            raise UpstreamError("ElevenLabs API key is not configured", retryable=False)
        voice = config.voice or self.default_voice
        scrub = Scrubber(self._api_key)
        translator = ElevenLabsTranslator(
            config,
            voice=voice,
            voice_settings=self.voice_settings,
            chunk_length_schedule=self.chunk_length_schedule,
            scrub=scrub,
        )
        url = stream_url(
            self.base_url,
            voice,
            model=config.model or self.default_model,
            output_format=translator.wire_output_format,
            extra=self._query(),
        )
        return await open_session(
            url,
            self._api_key,
            translator,
            scrub,
            timeout_s=self.connect_timeout_s,
            ssl_context=self.ssl_context,
            keepalive_s=self.keepalive_s,
        )
