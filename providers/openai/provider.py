"""`OpenAIProvider`: the factory the relay registers as `openai` (OpenAI Realtime, GA protocol)."""

from __future__ import annotations

import re
from typing import Final

from providers.base import ProviderKind, SessionConfig, UpstreamError, UpstreamSession
from providers.openai.connection import open_session
from providers.sockets import websocket_url

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MODEL", "OpenAIProvider", "realtime_url"]

DEFAULT_BASE_URL: Final = "https://api.openai.com/v1"
DEFAULT_MODEL: Final = "gpt-realtime"
_REALTIME_MODEL: Final = re.compile(r"gpt-[A-Za-z0-9.\-]*realtime[A-Za-z0-9.\-]*")


def realtime_url(base_url: str, model: str) -> str:
    """The Realtime WebSocket URL for `base_url`, derived as the official SDK does: http→ws,
    https→wss, the path with `/realtime` appended, `model=` added to the base URL's own query."""
    return websocket_url("OpenAI", base_url, "/realtime", [("model", model)])


class OpenAIProvider:
    """Opens OpenAI Realtime sessions (implements `providers.base.Provider`).

    The API key is held privately and never shown: not in the repr, the logs or any error message.
    """

    name: str = "openai"
    kind: ProviderKind = ProviderKind.REALTIME
    modalities: frozenset[str] = frozenset({"audio", "text"})

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        default_model: str = DEFAULT_MODEL,
        connect_timeout_s: float = 10.0,
    ) -> None:
        realtime_url(base_url, default_model)  # fail fast on a bad base URL
        self._api_key = api_key
        self.base_url = base_url
        self.default_model = default_model
        self.connect_timeout_s = connect_timeout_s

    def __repr__(self) -> str:
        return f"OpenAIProvider(base_url={self.base_url!r}, default_model={self.default_model!r})"

    def supports_model(self, model: str) -> bool:
        # Realtime models are all named gpt-…realtime… (gpt-realtime, gpt-realtime-mini,
        # gpt-4o-realtime-preview-2025-06-03, …). Checking the shape here gives the client a clear
        # `unsupported` at session.start for a typo, and still admits models released later.
        return _REALTIME_MODEL.fullmatch(model) is not None

    async def connect(self, config: SessionConfig) -> UpstreamSession:
        model = config.model or self.default_model
        if not self._api_key:
            raise UpstreamError("OpenAI API key is not configured", retryable=False)
        return await open_session(
            realtime_url(self.base_url, model), self._api_key, config, timeout_s=self.connect_timeout_s
        )
