"""`CartesiaProvider`: the factory the relay registers as `cartesia` (Cartesia TTS over its WebSocket)."""

from __future__ import annotations

import re
import ssl
from typing import Final

from providers.base import ProviderKind, SessionConfig, UpstreamError, UpstreamSession
from providers.cartesia.connection import connector, open_session
from providers.cartesia.translator import CartesiaTranslator, Scrubber, negotiate_output
from providers.sockets import websocket_url

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "DEFAULT_VERSION",
    "DEFAULT_VOICE",
    "CartesiaProvider",
    "tts_url",
]

DEFAULT_BASE_URL: Final = "https://api.cartesia.ai"
#: the current Sonic model (cartesia 4.x `TTSModel` lists it first)
DEFAULT_MODEL: Final = "sonic-3.5"
#: a stock voice from Cartesia's own WebSocket examples
DEFAULT_VOICE: Final = "a0e99841-438c-4a64-b679-ae501e7d6091"
#: the newest version the API reference lists as allowed; it has structured errors, and the
#: ``{"mode": "id", "id": …}`` voice it takes is the shape production integrations send
DEFAULT_VERSION: Final = "2026-03-01"
_SONIC_MODEL: Final = re.compile(r"sonic(?:-[A-Za-z0-9.\-]+)?")
_VERSION: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
TTS_PATH: Final = "/tts/websocket"


def tts_url(base_url: str) -> str:
    """The TTS WebSocket URL for `base_url`, derived as the official SDK does: http→ws, https→wss,
    ``/tts/websocket`` appended to the path, the base URL's own query kept."""
    return websocket_url("Cartesia", base_url, TTS_PATH)


class CartesiaProvider:
    """Opens Cartesia TTS sessions (implements `providers.base.Provider`).

    Provider-specific options: `default_voice` (a voice id; a session's ``voice`` overrides it),
    `cartesia_version` (the ``Cartesia-Version`` header), `language` (sent with every request when
    set; Cartesia's default otherwise) and `max_buffer_delay_ms` (Cartesia's text buffering, 0-5000;
    its default, 3000, suits text streamed from an LLM).

    The API key is held privately and never shown: not in the repr, the logs or any error message.
    """

    name: str = "cartesia"
    kind: ProviderKind = ProviderKind.TTS
    modalities: frozenset[str] = frozenset({"audio"})

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        default_model: str = DEFAULT_MODEL,
        default_voice: str = DEFAULT_VOICE,
        cartesia_version: str = DEFAULT_VERSION,
        connect_timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        *,
        language: str | None = None,
        max_buffer_delay_ms: int | None = None,
    ) -> None:
        self.url = tts_url(base_url)  # fails fast on a bad base URL
        if not _VERSION.fullmatch(cartesia_version):
            raise ValueError("cartesia_version must be a date, YYYY-MM-DD")
        if max_buffer_delay_ms is not None and not 0 <= max_buffer_delay_ms <= 5000:
            raise ValueError("max_buffer_delay_ms must be within 0-5000")
        self._api_key = api_key
        self.base_url = base_url
        self.default_model = default_model
        self.default_voice = default_voice
        self.cartesia_version = cartesia_version
        self.connect_timeout_s = connect_timeout_s
        self.ssl_context = ssl_context
        self.language = language
        self.max_buffer_delay_ms = max_buffer_delay_ms

    def __repr__(self) -> str:
        return (
            f"CartesiaProvider(base_url={self.base_url!r}, default_model={self.default_model!r}, "
            f"cartesia_version={self.cartesia_version!r})"
        )

    def supports_model(self, model: str) -> bool:
        # Cartesia's TTS models are all named sonic… (sonic-3.5, sonic-3-2026-01-12, sonic-latest, …);
        # checking the shape gives the client a clear `unsupported` for a typo and admits later models.
        return _SONIC_MODEL.fullmatch(model) is not None

    async def connect(self, config: SessionConfig) -> UpstreamSession:
        if not self._api_key:
            raise UpstreamError("Cartesia API key is not configured", retryable=False)
        scrub = Scrubber(self._api_key)
        translator = CartesiaTranslator(
            model=config.model or self.default_model,
            voice=config.voice or self.default_voice,
            output_format=negotiate_output(config.client_output),
            version=self.cartesia_version,
            language=self.language,
            max_buffer_delay_ms=self.max_buffer_delay_ms,
            scrub=scrub,
        )
        open_socket = connector(
            self.url,
            self._api_key,
            self.cartesia_version,
            timeout_s=self.connect_timeout_s,
            ssl_context=self.ssl_context,
        )
        return await open_session(open_socket, translator, scrub)
