"""`GET /v1/prices` (any tenant: the price table is what tenants are charged by) and
`PUT /v1/prices` (admins): read and change the price table.

PUT takes `{"prices": [{"provider", "model", "unit", "usd", "source"?, "as_of"?}, ...]}` and applies
every row in one transaction, or none if any row is invalid (400 says which). `usd` is a decimal
string (`"0.40"`), USD per the unit's basis (1M tokens, 1K characters, or a minute); `null`
deletes the row; `model` `"*"` is the provider's fallback. A change applies to events priced
after it; records already written keep the prices they were charged at.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay.api.http import ApiError, caller, json_body, json_endpoint, relay_state, require_admin
from relay.metering.prices import apply_changes, list_prices, parse_change
from relay.metering.pricing import BASIS_LABEL, PriceError

MAX_ROWS = 500


@json_endpoint
async def get_prices(request: Request) -> Response:
    await caller(request)
    provider = request.query_params.get("provider") or None
    prices = await list_prices(relay_state(request).db, provider)
    return JSONResponse({"currency": "USD", "bases": dict(BASIS_LABEL), "prices": [p.as_json() for p in prices]})


@json_endpoint
async def put_prices(request: Request) -> Response:
    await require_admin(request)
    body = await json_body(request)
    rows = body.get("prices")
    if not isinstance(rows, list) or not rows or len(rows) > MAX_ROWS:
        raise ApiError(400, f'the body must be {{"prices": [...]}} with 1 to {MAX_ROWS} rows')
    changes = []
    for i, row in enumerate(rows):
        try:
            changes.append(parse_change(row))
        except PriceError as exc:
            raise ApiError(400, f"prices[{i}]: {exc}") from None
    db = relay_state(request).db
    await apply_changes(db, changes)
    providers = sorted({c.provider for c in changes})
    updated = [p.as_json() for provider in providers for p in await list_prices(db, provider)]
    return JSONResponse({"currency": "USD", "changed": len(changes), "prices": updated})


routes = [Route("/v1/prices", get_prices, methods=["GET"]), Route("/v1/prices", put_prices, methods=["PUT"])]
