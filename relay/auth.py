"""Who is calling. Until tenants exist (issue: tenants and metering), the contract's local
development mode applies: unauthenticated clients from loopback are the tenant `local`."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from starlette.requests import HTTPConnection

LOCAL_TENANT = "local"


@dataclass(frozen=True, slots=True)
class Identity:
    tenant: str


class AuthRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def authenticate(conn: HTTPConnection) -> Identity:
    client = conn.client
    if _is_loopback(client.host if client else None):
        return Identity(LOCAL_TENANT)
    raise AuthRefused(401, "authentication required")
