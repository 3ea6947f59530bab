"""Short-lived browser tokens: stateless, HMAC-signed, scoped to one tenant.

A browser cannot keep a tenant API key secret, so the tenant's backend mints a token
(``POST /v1/tokens``) and hands it to the page. The token carries the tenant, its expiry and
optional provider/model pins, and nothing secret: no API key, no provider key. It is
``rrt_<payload>.<signature>``, both parts url-safe base64 without padding, so it is a valid
WebSocket subprotocol token (``relay.token.<token>``) and query value as it stands.

Stateless means any relay node that shares ``RELAY_TOKEN_SECRET`` verifies it without a store
lookup, and that a token stays usable until it expires (at most ``MAX_TTL_S``) — revoking the
tenant still refuses it, since the handshake reads the tenant's status.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson

from relay.config import Secret

LOG = logging.getLogger("relay.tokens")

TOKEN_PREFIX = "rrt_"
MAX_TTL_S = 600
# Longer than any token we mint; refuses junk before any decoding work.
MAX_TOKEN_CHARS = 2048
# Version of the payload layout, signed with it, so a future layout cannot be confused with this one.
_VERSION = 1


class TokenInvalid(Exception):
    """Forged, tampered, malformed or expired. The message is safe to show the client."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    tenant: str
    expires_at: int
    provider: str | None = None
    model: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret: Secret) -> None:
        self.ephemeral = not secret
        if self.ephemeral:
            LOG.warning(
                "RELAY_TOKEN_SECRET is not set: browser tokens are signed with a random per-process secret;"
                " they will not survive a restart or work on other relay nodes"
            )
            key = secrets.token_bytes(32)
        else:
            key = secret.value.encode()
        # Derived, so the configured secret itself is never used directly as a MAC key elsewhere.
        self._key = hmac.new(key, b"relay browser token v1", hashlib.sha256).digest()

    def __repr__(self) -> str:
        return f"TokenSigner(ephemeral={self.ephemeral})"

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def mint(
        self,
        tenant: str,
        ttl_s: int,
        *,
        provider: str | None = None,
        model: str | None = None,
        now: float | None = None,
    ) -> tuple[str, TokenClaims]:
        if not 1 <= ttl_s <= MAX_TTL_S:
            raise ValueError(f"ttl_s must be 1..{MAX_TTL_S}")
        issued = time.time() if now is None else now
        claims = TokenClaims(tenant, int(issued) + ttl_s, provider, model)
        body: dict[str, Any] = {"v": _VERSION, "t": tenant, "exp": claims.expires_at}
        if provider is not None:
            body["p"] = provider
        if model is not None:
            body["m"] = model
        # A nonce makes two tokens minted in the same second for the same tenant distinct.
        body["n"] = _b64(secrets.token_bytes(9))
        payload = _b64(orjson.dumps(body))
        return f"{TOKEN_PREFIX}{payload}.{self._sign(payload)}", claims

    def verify(self, token: str, *, now: float | None = None) -> TokenClaims:
        if len(token) > MAX_TOKEN_CHARS or not token.startswith(TOKEN_PREFIX):
            raise TokenInvalid("not a relay token")
        payload, sep, signature = token[len(TOKEN_PREFIX) :].partition(".")
        if not sep or not payload.isascii() or not signature.isascii():
            raise TokenInvalid("malformed token")
        if not hmac.compare_digest(self._sign(payload).encode(), signature.encode()):
            raise TokenInvalid("invalid token signature")
        # Only signed payloads are parsed: the bytes below were produced by mint().
        try:
            body = orjson.loads(_unb64(payload))
            if body.get("v") != _VERSION:
                raise TokenInvalid("unsupported token version")
            claims = TokenClaims(str(body["t"]), int(body["exp"]), body.get("p"), body.get("m"))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TokenInvalid("malformed token") from None
        if (time.time() if now is None else now) >= claims.expires_at:
            raise TokenInvalid("token expired")
        return claims
