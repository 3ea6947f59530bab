"""`/v1/tenants` and `/v1/keys`: who may manage tenants and keys over HTTP, on a real relay and store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.api.store_relay import DIALECTS, bearer, new_tenant, refused, relay_on_store, tenants_of
from tests.conformance.client import RelayClient
from tests.relay.conftest import RunningRelay
from tests.store.pg import PgDatabases


@pytest_asyncio.fixture(loop_scope="session", scope="module", params=DIALECTS)
async def relay(
    request: pytest.FixtureRequest, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningRelay]:
    async with relay_on_store(request.param, tmp_path_factory.mktemp("admin"), PgDatabases(postgres_url)) as r:
        yield r


async def _call(relay: RunningRelay, method: str, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=relay.http, trust_env=False) as http:
        return await http.request(method, path, headers=bearer(key) if key else {}, **kwargs)


async def test_an_admin_manages_tenants_and_keys(relay: RunningRelay) -> None:
    _, admin = await new_tenant(relay, admin=True)
    reply = await _call(
        relay, "POST", "/v1/tenants", admin.key, json={"name": "Beta Co", "max_sessions": 4, "budget_usd": "9.99"}
    )
    assert reply.status_code == 201 and reply.headers["cache-control"] == "no-store"
    created = reply.json()
    beta_id, beta_key = created["tenant"]["id"], created["key"]["api_key"]
    assert created["tenant"]["budget_usd"] == "9.99" and created["tenant"]["max_sessions"] == 4
    # The key it printed works, and is never shown again.
    client = await RelayClient.connect(relay.url, headers=bearer(beta_key))
    await client.close()
    listing = await _call(relay, "GET", "/v1/tenants", admin.key)
    assert listing.status_code == 200 and beta_id in listing.text and beta_key not in listing.text

    patched = await _call(relay, "PATCH", f"/v1/tenants/{beta_id}", admin.key, json={"budget_usd": None})
    assert patched.status_code == 200 and patched.json()["budget_usd"] is None
    rotated = await _call(relay, "POST", f"/v1/tenants/{beta_id}/keys", admin.key)
    assert rotated.status_code == 201
    revoked = await _call(relay, "DELETE", f"/v1/keys/{created['key']['id']}", admin.key)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert await refused(relay.url, headers=bearer(beta_key)) == 403
    suspended = await _call(relay, "PATCH", f"/v1/tenants/{beta_id}", admin.key, json={"status": "revoked"})
    assert suspended.status_code == 200
    assert await refused(relay.url, headers=bearer(rotated.json()["key"]["api_key"])) == 403


async def test_a_tenant_sees_and_rotates_only_itself(relay: RunningRelay) -> None:
    me, key = await new_tenant(relay)
    other, other_key = await new_tenant(relay)
    assert (await _call(relay, "GET", "/v1/tenants", key.key)).status_code == 403
    assert (await _call(relay, "POST", "/v1/tenants", key.key, json={"name": "x"})).status_code == 403
    assert (await _call(relay, "GET", f"/v1/tenants/{other.id}", key.key)).status_code == 403
    mine = await _call(relay, "GET", f"/v1/tenants/{me.id}", key.key)
    assert mine.status_code == 200 and mine.json()["keys"][0]["id"] == key.info.id
    assert (await _call(relay, "PATCH", f"/v1/tenants/{me.id}", key.key, json={"budget_usd": None})).status_code == 403
    new = await _call(relay, "POST", f"/v1/tenants/{me.id}/keys", key.key)
    assert new.status_code == 201
    # Someone else's key looks exactly like a missing one.
    assert (await _call(relay, "DELETE", f"/v1/keys/{other_key.info.id}", key.key)).status_code == 404
    assert (await _call(relay, "DELETE", "/v1/keys/key_missing", key.key)).status_code == 404
    assert (await _call(relay, "DELETE", f"/v1/keys/{key.info.id}", key.key)).status_code == 200
    assert (await _call(relay, "GET", f"/v1/tenants/{me.id}", key.key)).status_code == 403


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 400, "name is required"),
        ({"name": "x", "budget_usd": 1.5}, 400, "decimal string"),
        ({"name": "x", "budget_usd": "-1"}, 400, "budget"),
        ({"name": "x", "max_sessions": "3"}, 400, "max_sessions"),
        ({"name": "x", "admin": "yes"}, 400, "admin"),
        ({"name": "x", "id": "Bad Id"}, 400, "lower-case"),
        ({"name": "local"}, 400, "reserved"),
    ],
)
async def test_bad_tenant_requests(relay: RunningRelay, body: dict[str, Any], status: int, message: str) -> None:
    _, admin = await new_tenant(relay, admin=True)
    reply = await _call(relay, "POST", "/v1/tenants", admin.key, json=body)
    assert reply.status_code == status and message in reply.json()["error"]


async def test_duplicates_and_unknowns(relay: RunningRelay) -> None:
    existing, admin = await new_tenant(relay, admin=True)
    dup = await _call(relay, "POST", "/v1/tenants", admin.key, json={"name": "x", "id": existing.id})
    assert dup.status_code == 409
    assert (await _call(relay, "GET", "/v1/tenants/nobody", admin.key)).status_code == 404
    assert (await _call(relay, "PATCH", "/v1/tenants/nobody", admin.key, json={})).status_code == 404
    assert (await _call(relay, "POST", "/v1/tenants/nobody/keys", admin.key)).status_code == 404
    bad = await _call(relay, "PATCH", f"/v1/tenants/{existing.id}", admin.key, json={"status": "paused"})
    assert bad.status_code == 400


async def test_local_development_mode_grants_no_admin(tmp_path: Any) -> None:
    async with relay_on_store("sqlite", tmp_path, None) as relay:
        assert await relay.state.auth.local_mode()
        assert (await _call(relay, "GET", "/v1/tenants")).status_code == 403
        assert (await _call(relay, "POST", "/v1/tenants", json={"name": "first"})).status_code == 403
        assert not await tenants_of(relay).any_exist()
