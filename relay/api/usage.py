"""`GET /v1/usage`: usage and cost totals for the calling tenant (an admin: for any or every tenant).

Query parameters (all optional):

| parameter | meaning |
|---|---|
| `from` | first UTC day included, `YYYY-MM-DD` |
| `to` | first UTC day *not* included, `YYYY-MM-DD` |
| `group_by` | comma-separated `provider`, `model`, `day` (admins also `tenant`); none: one total |
| `tenant` | admins: only this tenant (default: every tenant); others: only their own id is accepted |

The answer: `{"tenant", "from", "to", "group_by", "currency": "USD", "groups": [...], "total": {...}}`,
each group and the total being `{<group keys>, "events", "unpriced_events", "usage": {<unit>: int},
"cost_usd": "<decimal string>"}`. Money is a decimal string (10 places), never a JSON number.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay.api.http import ApiError, caller, json_endpoint, relay_state
from relay.metering.usage import UsageQueryError, parse_day, parse_group_by, usage_report


@json_endpoint
async def get_usage(request: Request) -> Response:
    identity = await caller(request)
    params = request.query_params
    try:
        start = parse_day(params.get("from"), "from")
        end = parse_day(params.get("to"), "to")
        group_by = parse_group_by(params.get("group_by"), allow_tenant=identity.is_admin)
    except UsageQueryError as exc:
        raise ApiError(400, str(exc)) from None
    if start is not None and end is not None and end <= start:
        raise ApiError(400, "to must be after from (to is the first day not included)")
    asked = params.get("tenant") or None
    if identity.is_admin:
        tenant = asked
    elif asked is not None and asked != identity.tenant:
        raise ApiError(403, "a tenant may read only its own usage")
    else:
        tenant = identity.tenant
    report = await usage_report(relay_state(request).db, tenant=tenant, start=start, end=end, group_by=group_by)
    return JSONResponse(
        {
            "tenant": tenant,
            "from": None if start is None else start.isoformat(),
            "to": None if end is None else end.isoformat(),
            "group_by": group_by,
            "currency": "USD",
            "groups": [g.as_json() for g in report.groups],
            "total": report.total.as_json(),
        }
    )


routes = [Route("/v1/usage", get_usage, methods=["GET"])]
