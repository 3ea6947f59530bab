"""`GeminiProvider`: the factory the relay registers as `gemini` (Gemini Live, ``BidiGenerateContent``)."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Mapping
from typing import Any, Final

from providers.base import ProviderKind, SessionConfig, UpstreamError, UpstreamSession
from providers.gemini.connection import Dialer, GeminiUpstreamSession
from providers.gemini.translator import GeminiTranslator
from providers.gemini.wire import (
    DEFAULT_API_VERSION,
    LIVE_MODEL,
    Scrubber,
    auth_headers,
    is_ephemeral_token,
    live_url,
)

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MODEL", "GeminiProvider"]

DEFAULT_BASE_URL: Final = "https://generativelanguage.googleapis.com"
#: a current native-audio Live model (reference §2.3)
DEFAULT_MODEL: Final = "gemini-2.5-flash-native-audio-preview-09-2025"


class GeminiProvider:
    """Opens Gemini Live sessions (implements `providers.base.Provider`).

    * ``api_version``: ``v1beta`` (the API docs' version; google-genai 3.x defaults to ``v1``);
    * ``ssl_context``: trust for a ``https``/``wss`` base URL (e.g. a local emulator's self-signed
      certificate); the system's default trust when None;
    * ``max_connection_s``: move to a fresh, resumed connection once one is this old (at a turn
      boundary) instead of waiting for the server's goAway; None leaves it to the goAway;
    * ``context_window_compression``: sent as ``setup.contextWindowCompression`` (e.g.
      ``{"slidingWindow": {}}``), which lifts Gemini's ≈ 15 min limit on an audio session's context
      at the price of forgetting its oldest part; None (the default) leaves it off.

    The API key is held privately and never shown: not in the repr, the logs or any error message.
    """

    name: str = "gemini"
    kind: ProviderKind = ProviderKind.REALTIME
    modalities: frozenset[str] = frozenset({"audio", "text"})

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        default_model: str = DEFAULT_MODEL,
        api_version: str = DEFAULT_API_VERSION,
        connect_timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        max_connection_s: float | None = None,
        context_window_compression: Mapping[str, Any] | None = None,
    ) -> None:
        live_url(base_url, api_version)  # fail fast on a bad base URL or version
        if max_connection_s is not None and max_connection_s <= 0:
            raise ValueError(f"max_connection_s must be positive or None; got {max_connection_s}")
        self._api_key = api_key
        self.base_url = base_url
        self.default_model = default_model
        self.api_version = api_version
        self.connect_timeout_s = connect_timeout_s
        self.ssl_context = ssl_context
        self.max_connection_s = max_connection_s
        self.context_window_compression = context_window_compression

    def __repr__(self) -> str:
        return (
            f"GeminiProvider(base_url={self.base_url!r}, default_model={self.default_model!r}, "
            f"api_version={self.api_version!r})"
        )

    def supports_model(self, model: str) -> bool:
        # Live models are all named gemini-…live… or gemini-…native-audio…; checking the shape gives the
        # client a clear `unsupported` at session.start for a typo and still admits later models.
        return LIVE_MODEL.fullmatch(model) is not None

    async def connect(self, config: SessionConfig) -> UpstreamSession:
        if not self._api_key:
            raise UpstreamError("Gemini API key is not configured", retryable=False)
        if not config.model:
            config = dataclasses.replace(config, model=self.default_model)
        scrub = Scrubber(self._api_key)
        translator = GeminiTranslator(config, scrub, context_window_compression=self.context_window_compression)
        url = live_url(self.base_url, self.api_version, ephemeral=is_ephemeral_token(self._api_key))
        dialer = Dialer(url, auth_headers(self._api_key), scrub, timeout_s=self.connect_timeout_s, ssl=self.ssl_context)
        ws, pending = await dialer.dial(translator)
        return GeminiUpstreamSession(
            dialer, translator, ws, pending, scrub=scrub, max_connection_s=self.max_connection_s
        )
