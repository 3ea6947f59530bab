"""Who is calling: tenant API keys, browser tokens, and the local development mode.

Credentials, in the order they are looked at (the first one present is the one judged; a bad one
is refused, never passed over for the next):

1. ``Authorization: Bearer <tenant API key>`` (a browser token there is accepted too);
2. ``?token=<browser token>`` (browsers cannot set headers);
3. the WebSocket subprotocol ``relay.token.<browser token>``.

An API key is only taken from the header: in a URL it would end up in proxies' and servers' logs.

Refusals (``AuthRefused``) carry the HTTP status the handshake answers with: 401 when there is no
usable credential (missing, malformed, unknown, forged, expired), 403 when the credential is
recognised but may not be used (revoked key, revoked tenant), 503 when the store cannot be asked.

Local development mode: while the store holds no tenant at all, a client that presents nothing
and connects from loopback is the tenant ``local``. The first tenant created ends the mode; from
then on every client authenticates.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl

from starlette.requests import HTTPConnection

from relay.store.db import StoreError
from relay.store.tenants import Tenant, Tenants
from relay.store.tokens import TOKEN_PREFIX, TokenInvalid, TokenSigner

LOG = logging.getLogger("relay.auth")

LOCAL_TENANT = "local"
TOKEN_SUBPROTOCOL_PREFIX = "relay.token."
HOW_TO_AUTHENTICATE = (
    "authentication required: Authorization: Bearer <api key>, ?token=<browser token>"
    " or the subprotocol relay.token.<browser token>"
)

Via = Literal["api_key", "token", "local"]


@dataclass(frozen=True, slots=True)
class Identity:
    tenant: str
    via: Via
    #: the tenant's record; None in local development mode
    record: Tenant | None = None
    #: pins from a browser token: the session may use only this provider / model
    provider: str | None = None
    model: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.record is not None and self.record.is_admin

    def session_cap(self, default: int) -> int:
        return default if self.record is None else self.record.session_cap(default)


class AuthRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Presented:
    """A credential as the client presented it. ``value`` is secret: never log it."""

    source: Literal["header", "query", "subprotocol"]
    value: str

    def __repr__(self) -> str:
        return f"Presented(source={self.source!r}, value='***')"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def token_subprotocols(offered: list[str]) -> list[str]:
    return [s for s in offered if s.startswith(TOKEN_SUBPROTOCOL_PREFIX)]


def presented_credential(conn: HTTPConnection) -> Presented | None:
    header = conn.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthRefused(401, "the Authorization header must be: Bearer <api key>")
        return Presented("header", value.strip())
    # Parsed by hand rather than conn.query_params so a repeated ?token= cannot pick a winner silently.
    tokens = [v for k, v in parse_qsl(conn.scope.get("query_string", b"").decode("latin-1")) if k == "token"]
    if len(tokens) > 1:
        raise AuthRefused(401, "more than one ?token= given")
    if tokens:
        return Presented("query", tokens[0])
    offered = token_subprotocols(list(conn.scope.get("subprotocols", [])))
    if len(offered) > 1:
        raise AuthRefused(401, "more than one relay.token.* subprotocol offered")
    if offered:
        return Presented("subprotocol", offered[0][len(TOKEN_SUBPROTOCOL_PREFIX) :])
    return None


class Authenticator:
    def __init__(self, tenants: Tenants, tokens: TokenSigner) -> None:
        self.tenants = tenants
        self.tokens = tokens

    async def authenticate(self, conn: HTTPConnection, *, tokens_allowed: bool = True) -> Identity:
        """The caller's identity, or ``AuthRefused``. ``tokens_allowed=False`` asks for an API key
        (minting a token with a token would let one extend itself forever)."""
        try:
            presented = presented_credential(conn)
            if presented is None:
                return await self._anonymous(conn)
            if presented.value.startswith(TOKEN_PREFIX):
                if not tokens_allowed:
                    raise AuthRefused(401, "this endpoint needs a tenant API key, not a browser token")
                return await self._token(conn, presented.value)
            if presented.source != "header":
                raise AuthRefused(401, "API keys go in the Authorization header, never in the URL or subprotocol")
            return await self._api_key(presented.value)
        except StoreError as exc:
            LOG.error("authentication could not reach the store: %s", exc)
            raise AuthRefused(503, "the tenant store is unavailable; try again") from None

    async def local_mode(self) -> bool:
        """True while no tenant exists (then loopback clients need no credential)."""
        return not await self.tenants.any_exist()

    async def _anonymous(self, conn: HTTPConnection) -> Identity:
        client = conn.client
        if is_loopback(client.host if client else None) and await self.local_mode():
            return Identity(LOCAL_TENANT, "local")
        raise AuthRefused(401, HOW_TO_AUTHENTICATE)

    async def _api_key(self, key: str) -> Identity:
        match = await self.tenants.authenticate(key)
        if match is None:
            raise AuthRefused(401, "invalid API key")
        if match.key.revoked:
            raise AuthRefused(403, "this API key has been revoked")
        if not match.tenant.active:
            raise AuthRefused(403, "this tenant has been revoked")
        return Identity(match.tenant.id, "api_key", match.tenant)

    async def _token(self, conn: HTTPConnection, token: str) -> Identity:
        try:
            claims = self.tokens.verify(token)
        except TokenInvalid as exc:
            raise AuthRefused(401, str(exc)) from None
        if claims.tenant == LOCAL_TENANT:
            # Minted in local development mode; good only while that mode lasts, and from loopback.
            client = conn.client
            if is_loopback(client.host if client else None) and await self.local_mode():
                return Identity(LOCAL_TENANT, "token", None, claims.provider, claims.model)
            raise AuthRefused(401, "local development tokens are valid only in local development mode")
        tenant = await self.tenants.get(claims.tenant)
        if tenant is None:
            raise AuthRefused(401, "the token's tenant does not exist")
        if not tenant.active:
            raise AuthRefused(403, "this tenant has been revoked")
        return Identity(tenant.id, "token", tenant, claims.provider, claims.model)
