"""What every provider connection does the same way with its upstream WebSocket.

* `websocket_url` — a provider's WebSocket URL from its ``base_url``, derived as the official SDKs do;
* `wire_logger` — the logger to hand `websockets`: it never enables DEBUG, where `websockets` would
  log the handshake headers (the provider's key) and excerpts of every frame;
* `describe_close` — a close as ``code 1008: reason``, the reason scrubbed;
* `handshake_error` — the `UpstreamError` for a socket that could not be opened: a refused upgrade
  (HTTP 400-404 will not change on retry, anything else may), a URL that is not a WebSocket URL
  (permanent), anything else (retryable). What a provider says *after* the upgrade (a close during
  setup, an ``error`` message) and how long it may take are each provider's own.

Messages never carry the key: everything from upstream goes through the provider's ``scrub``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from providers.base import UpstreamError

__all__ = [
    "PERMANENT_HTTP_STATUSES",
    "WireLogger",
    "describe_close",
    "handshake_error",
    "websocket_url",
    "wire_logger",
]

#: HTTP statuses at the upgrade that will not change on retry
PERMANENT_HTTP_STATUSES: Final = frozenset({400, 401, 402, 403, 404})
_WS_SCHEMES: Final = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def websocket_url(provider: str, base_url: str, path: str, params: Sequence[tuple[str, str]] = ()) -> str:
    """`base_url` as a WebSocket URL: http→ws, https→wss (ws and wss kept), `path` appended to its path
    (a trailing slash on it dropped), `params` added to its own query (kept as it is without `params`).
    Raises `ValueError` for a URL that is not http(s) or ws(s) or has no host."""
    parts = urlsplit(base_url)
    scheme = _WS_SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(f"{provider} base_url must be an http(s) or ws(s) URL with a host")
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *params]) if params else parts.query
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, query, ""))


class WireLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The logger handed to `websockets`. At DEBUG it would log the handshake headers — the
    provider's key (``Authorization``, ``xi-api-key``, ``X-API-Key``, ``x-goog-api-key``) — and
    excerpts of every frame; this adapter never enables DEBUG."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


def wire_logger(module: str) -> WireLogger:
    """The `WireLogger` for a connection module: logger ``<module>.wire``."""
    return WireLogger(logging.getLogger(f"{module}.wire"), {})


def describe_close(exc: ConnectionClosed, scrub: Callable[[str], str]) -> str:
    """``code 1008: reason`` (the reason scrubbed), ``code 1006`` without one, or ``no close frame``."""
    received = exc.rcvd
    if received is None:
        return "no close frame"
    reason = scrub(received.reason) if received.reason else ""
    return f"code {received.code}: {reason}" if reason else f"code {received.code}"


def handshake_error(provider: str, exc: BaseException, scrub: Callable[[str], str]) -> UpstreamError:
    """The `UpstreamError` for failing to open `provider`'s socket with `exc` (a refused upgrade,
    an invalid URL, a handshake or network error)."""
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return UpstreamError(
            f"{provider} refused the connection: HTTP {status}", retryable=status not in PERMANENT_HTTP_STATUSES
        )
    if isinstance(exc, InvalidURI):
        return UpstreamError(f"{provider} URL is not a valid WebSocket URL", retryable=False)
    return UpstreamError(f"could not connect to {provider}: {type(exc).__name__}: {scrub(str(exc))}")
