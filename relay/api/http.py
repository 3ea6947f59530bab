"""What every JSON endpoint shares: who is calling, reading a bounded JSON body, error answers.

Errors are ``{"error": "<message>"}`` with the status that says what went wrong (400 bad input,
401 no/invalid credential, 403 not allowed, 404 unknown, 503 store down). Responses that carry a
secret (a new API key or token) say ``Cache-Control: no-store``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay.auth import AuthRefused, Identity
from relay.state import RelayState
from relay.store.db import StoreError

LOG = logging.getLogger("relay.api")

# The API's bodies are a few fields; anything near this is not a legitimate request.
MAX_BODY_BYTES = 16 * 1024
NO_STORE = {"Cache-Control": "no-store"}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def relay_state(request: Request) -> RelayState:
    state: RelayState = request.app.state.relay
    return state


async def caller(request: Request, *, tokens_allowed: bool = False) -> Identity:
    """The authenticated caller. API endpoints take tenant API keys (browser tokens only where
    ``tokens_allowed``); local development mode applies as it does to sessions."""
    try:
        return await relay_state(request).auth.authenticate(request, tokens_allowed=tokens_allowed)
    except AuthRefused as exc:
        raise ApiError(exc.status, exc.message) from None


async def require_admin(request: Request) -> Identity:
    identity = await caller(request)
    if not identity.is_admin:
        raise ApiError(403, "this needs an admin tenant's API key")
    return identity


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; an empty body is ``{}``."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise ApiError(413, f"the body must be at most {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"the body must be at most {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def optional_str(body: dict[str, Any], field: str, max_len: int = 128) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ApiError(400, f"{field} must be a non-empty string of at most {max_len} characters")
    return value


def optional_int(body: dict[str, Any], field: str, low: int, high: int) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    # bool is an int to Python, never to a client.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, f"{field} must be an integer from {low} to {high}")
    return value


Handler = Callable[[Request], Awaitable[Response]]


def json_endpoint(handler: Handler) -> Handler:
    """Turn ``ApiError`` (and a store outage) into the JSON error answer."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        except StoreError as exc:
            LOG.error("%s %s: store error: %s", request.method, request.url.path, exc)
            return JSONResponse({"error": "the tenant store is unavailable; try again"}, status_code=503)

    return endpoint
