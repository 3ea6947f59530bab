"""`POST /v1/tokens`: a tenant's backend mints a short-lived browser token.

Body (all optional): ``provider`` and ``model`` pin what sessions opened with the token may use;
``ttl_s`` is its lifetime (1..600 s, default ``RELAY_TOKEN_DEFAULT_TTL_S``). Answer:
``{"token": "...", "expires_at": <unix s>}``. Only a tenant API key may mint (a token could
otherwise renew itself forever); in local development mode a loopback caller mints for ``local``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay.api.http import NO_STORE, ApiError, caller, json_body, json_endpoint, optional_int, optional_str, relay_state
from relay.store.tokens import MAX_TTL_S


@json_endpoint
async def mint_token(request: Request) -> Response:
    state = relay_state(request)
    identity = await caller(request)
    body = await json_body(request)
    provider = optional_str(body, "provider")
    model = optional_str(body, "model")
    ttl_s = optional_int(body, "ttl_s", 1, MAX_TTL_S)
    if provider is not None:
        found = state.directory.get(provider)
        if found is None:
            raise ApiError(400, f"unknown provider {provider!r}; available: {', '.join(state.directory.names())}")
        if model is not None and not found.supports_model(model):
            raise ApiError(400, f"provider {provider!r} has no model {model!r}")
    elif model is not None:
        raise ApiError(400, "a model pin needs a provider pin")
    token, claims = state.auth.tokens.mint(
        identity.tenant,
        ttl_s if ttl_s is not None else state.settings.token_default_ttl_s,
        provider=provider,
        model=model,
    )
    return JSONResponse({"token": token, "expires_at": claims.expires_at}, headers=NO_STORE)


routes = [Route("/v1/tokens", mint_token, methods=["POST"])]
