"""`/v1/tenants` and `/v1/keys`: manage tenants and API keys over HTTP.

Admin tenants manage everyone; a tenant may read itself, add keys to itself (rotation) and revoke
its own keys. The first tenant — necessarily the first admin — is made with the CLI
(`realtime-relay tenants create NAME --admin`): local development mode grants nothing here.

| method and path | who | does |
|---|---|---|
| `GET /v1/tenants` | admin | every tenant, with its keys (never the keys themselves) |
| `POST /v1/tenants` | admin | `{name, id?, admin?, max_sessions?, budget_usd?}` -> 201 tenant + first key |
| `GET /v1/tenants/{id}` | admin, self | the tenant and its keys |
| `PATCH /v1/tenants/{id}` | admin | `{max_sessions?, budget_usd?, status?}` (null: default cap, no budget) |
| `POST /v1/tenants/{id}/keys` | admin, self | 201 a new key (shown once) |
| `DELETE /v1/keys/{key_id}` | admin, owner | revoke the key |
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay.api.http import (
    NO_STORE,
    ApiError,
    caller,
    json_body,
    json_endpoint,
    optional_str,
    relay_state,
    require_admin,
)
from relay.auth import Identity
from relay.store.tenants import UNCHANGED, NewKey, NotFound, Tenant, TenantError, Tenants, TenantStatus

MAX_CAP = 1_000_000


def _tenants(request: Request) -> Tenants:
    return relay_state(request).auth.tenants


def _may_act_for(identity: Identity, tenant_id: str) -> None:
    if not identity.is_admin and identity.tenant != tenant_id:
        raise ApiError(403, "a tenant may act only for itself")


def _cap(body: dict[str, Any]) -> int | None:
    value = body["max_sessions"]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CAP:
        raise ApiError(400, f"max_sessions must be null or an integer from 0 to {MAX_CAP}")
    return value


def _budget(body: dict[str, Any]) -> Any:
    value = body["budget_usd"]
    # Money travels as a decimal string; a JSON number would have passed through a float.
    if value is not None and not isinstance(value, str):
        raise ApiError(400, 'budget_usd must be null or a decimal string such as "25.00"')
    return value


def _new_key_json(tenant: Tenant, new_key: NewKey) -> dict[str, Any]:
    return {"tenant": tenant.as_json(), "key": {**new_key.info.as_json(), "api_key": new_key.key}}


async def _tenant_json(tenants: Tenants, tenant: Tenant) -> dict[str, Any]:
    return {**tenant.as_json(), "keys": [k.as_json() for k in await tenants.keys(tenant.id)]}


@json_endpoint
async def list_tenants(request: Request) -> Response:
    await require_admin(request)
    tenants = _tenants(request)
    listed = await tenants.all()
    keys = await tenants.keys()
    return JSONResponse(
        {"tenants": [{**t.as_json(), "keys": [k.as_json() for k in keys if k.tenant_id == t.id]} for t in listed]}
    )


@json_endpoint
async def create_tenant(request: Request) -> Response:
    await require_admin(request)
    body = await json_body(request)
    name = optional_str(body, "name", 200)
    if name is None:
        raise ApiError(400, "name is required")
    admin = body.get("admin", False)
    if not isinstance(admin, bool):
        raise ApiError(400, "admin must be true or false")
    try:
        tenant, new_key = await _tenants(request).create(
            name,
            tenant_id=optional_str(body, "id", 63),
            admin=admin,
            max_sessions=_cap(body) if "max_sessions" in body else None,
            budget_usd=_budget(body) if "budget_usd" in body else None,
        )
    except TenantError as exc:
        status = 409 if "already exists" in str(exc) else 400
        raise ApiError(status, str(exc)) from None
    return JSONResponse(_new_key_json(tenant, new_key), status_code=201, headers=NO_STORE)


@json_endpoint
async def get_tenant(request: Request) -> Response:
    tenant_id: str = request.path_params["tenant_id"]
    _may_act_for(await caller(request), tenant_id)
    tenants = _tenants(request)
    tenant = await tenants.get(tenant_id)
    if tenant is None:
        raise ApiError(404, "no such tenant")
    return JSONResponse(await _tenant_json(tenants, tenant))


@json_endpoint
async def update_tenant(request: Request) -> Response:
    await require_admin(request)
    tenant_id: str = request.path_params["tenant_id"]
    body = await json_body(request)
    status = body.get("status")
    if status is not None and status not in {s.value for s in TenantStatus}:
        raise ApiError(400, f"status must be one of {', '.join(s.value for s in TenantStatus)}")
    tenants = _tenants(request)
    try:
        tenant = await tenants.update(
            tenant_id,
            max_sessions=_cap(body) if "max_sessions" in body else UNCHANGED,
            budget_usd=_budget(body) if "budget_usd" in body else UNCHANGED,
            status=None if status is None else TenantStatus(status),
        )
    except NotFound:
        raise ApiError(404, "no such tenant") from None
    except TenantError as exc:
        raise ApiError(400, str(exc)) from None
    return JSONResponse(await _tenant_json(tenants, tenant))


@json_endpoint
async def add_key(request: Request) -> Response:
    tenant_id: str = request.path_params["tenant_id"]
    _may_act_for(await caller(request), tenant_id)
    tenants = _tenants(request)
    try:
        new_key = await tenants.add_key(tenant_id)
    except NotFound:
        raise ApiError(404, "no such tenant") from None
    tenant = await tenants.get(tenant_id)
    assert tenant is not None
    return JSONResponse(_new_key_json(tenant, new_key), status_code=201, headers=NO_STORE)


@json_endpoint
async def revoke_key(request: Request) -> Response:
    identity = await caller(request)
    key_id: str = request.path_params["key_id"]
    tenants = _tenants(request)
    owned = [k for k in await tenants.keys(identity.tenant) if k.id == key_id]
    if not identity.is_admin and not owned:
        # The same answer whether the key is someone else's or does not exist.
        raise ApiError(404, "no such API key")
    try:
        key = await tenants.revoke_key(key_id)
    except NotFound:
        raise ApiError(404, "no such API key") from None
    return JSONResponse(key.as_json())


routes = [
    Route("/v1/tenants", list_tenants, methods=["GET"]),
    Route("/v1/tenants", create_tenant, methods=["POST"]),
    Route("/v1/tenants/{tenant_id}", get_tenant, methods=["GET"]),
    Route("/v1/tenants/{tenant_id}", update_tenant, methods=["PATCH"]),
    Route("/v1/tenants/{tenant_id}/keys", add_key, methods=["POST"]),
    Route("/v1/keys/{key_id}", revoke_key, methods=["DELETE"]),
]
