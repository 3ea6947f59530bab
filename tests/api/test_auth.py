"""Who may open `WS /v1/session`, judged at the handshake (protocol §2, §6) on a real relay and store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio
from starlette.requests import HTTPConnection

from providers.events import Usage
from relay.auth import Authenticator, AuthRefused
from relay.metering.events import UsageEvent
from relay.metering.ledger import Ledger
from relay.metering.usage import tenant_spend
from tests.api.store_relay import (
    DIALECTS,
    bearer,
    new_tenant,
    refused,
    refused_with_body,
    relay_on_store,
    session_tenant,
    tenants_of,
)
from tests.conformance.client import RelayClient
from tests.relay.conftest import RunningRelay
from tests.store.pg import PgDatabases


@pytest_asyncio.fixture(loop_scope="session", scope="module", params=DIALECTS)
async def relay(
    request: pytest.FixtureRequest, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningRelay]:
    pg = PgDatabases(postgres_url)
    async with relay_on_store(request.param, tmp_path_factory.mktemp("auth"), pg) as running:
        # A tenant exists from the start: local development mode is off for this relay.
        await new_tenant(running)
        yield running


async def test_a_tenant_api_key_opens_a_session_as_that_tenant(relay: RunningRelay) -> None:
    tenant, key = await new_tenant(relay)
    client = await RelayClient.connect(relay.url, headers=bearer(key.key))
    assert await session_tenant(relay, client) == tenant.id


async def test_missing_or_wrong_credentials_are_401(relay: RunningRelay) -> None:
    _, key = await new_tenant(relay)
    status, body = await refused_with_body(relay.url)
    # Even from loopback: a tenant exists, so local development mode is over.
    assert status == 401 and "Bearer" in body["error"]
    wrong = key.key[:-2] + ("AA" if not key.key.endswith("AA") else "BB")
    assert await refused(relay.url, headers=bearer(wrong)) == 401
    assert await refused(relay.url, headers=bearer("rr_live_short")) == 401
    assert await refused(relay.url, headers={"Authorization": f"Basic {key.key}"}) == 401
    assert await refused(relay.url, headers={"Authorization": "Bearer "}) == 401
    # An API key never rides in the URL or a subprotocol (it would be logged on the way).
    assert await refused(f"{relay.url}?token={key.key}") == 401
    assert await refused(relay.url, subprotocols=[f"relay.token.{key.key}", "relay.v1.json"]) == 401


async def test_revoked_keys_and_tenants_are_403(relay: RunningRelay) -> None:
    tenants = tenants_of(relay)
    tenant, first = await new_tenant(relay)
    second = await tenants.add_key(tenant.id)
    await tenants.revoke_key(first.info.id)
    status, body = await refused_with_body(relay.url, headers=bearer(first.key))
    assert status == 403 and "revoked" in body["error"]
    # The other key of the tenant still works.
    client = await RelayClient.connect(relay.url, headers=bearer(second.key))
    assert await session_tenant(relay, client) == tenant.id
    await tenants.revoke_tenant(tenant.id)
    assert await refused(relay.url, headers=bearer(second.key)) == 403


async def test_the_tenants_own_session_cap_is_429_at_the_handshake(relay: RunningRelay) -> None:
    tenant, key = await new_tenant(relay, max_sessions=2)
    _, other_key = await new_tenant(relay)
    first = await RelayClient.connect(relay.url, headers=bearer(key.key))
    second = await RelayClient.connect(relay.url, headers=bearer(key.key))
    try:
        status, body = await refused_with_body(relay.url, headers=bearer(key.key))
        assert status == 429 and "concurrent sessions" in body["error"]
        # Another tenant is not affected.
        other = await RelayClient.connect(relay.url, headers=bearer(other_key.key))
        await other.close()
    finally:
        await first.close()
    # The freed slot is taken again once the relay has let go of the first session.
    await _until(lambda: not relay.state.registry.tenant_full(tenant.id, 2))
    third = await RelayClient.connect(relay.url, headers=bearer(key.key))
    await third.close()
    await second.close()
    _, none_allowed = await new_tenant(relay, max_sessions=0)
    assert await refused(relay.url, headers=bearer(none_allowed.key)) == 429


async def test_a_tenant_at_its_budget_is_402_at_the_handshake(relay: RunningRelay) -> None:
    tenant, key = await new_tenant(relay, budget_usd=Decimal("0"))
    status, body = await refused_with_body(relay.url, headers=bearer(key.key))
    assert status == 402 and "budget" in body["error"]

    # Charge real usage through the metering ledger, then set the budget around it.
    usage = Usage(input_text_tokens=1000, output_audio_tokens=5000)
    event = UsageEvent(
        UsageEvent.new_id(),
        "response",
        tenant.id,
        "sess_x",
        "resp_x",
        "openai",
        "gpt-realtime",
        usage,
        int(time.time() * 1000),
    )
    await Ledger(relay.state.db).record([event])
    spend = await tenant_spend(relay.state.db, tenant.id)
    assert spend > 0
    tenants = tenants_of(relay)
    await tenants.update(tenant.id, budget_usd=spend + Decimal("0.01"))
    client = await RelayClient.connect(relay.url, headers=bearer(key.key))
    await client.close()
    await tenants.update(tenant.id, budget_usd=spend)
    assert await refused(relay.url, headers=bearer(key.key)) == 402
    await tenants.update(tenant.id, budget_usd=None)
    client = await RelayClient.connect(relay.url, headers=bearer(key.key))
    await client.close()


async def test_refusals_are_counted_by_reason(relay: RunningRelay) -> None:
    await refused(relay.url)
    text = relay.state.metrics.render().decode()
    assert 'relay_refused_total{reason="auth"}' in text


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_local_development_mode_lasts_only_while_no_tenant_exists(
    dialect: str, postgres_url: str, tmp_path: Path
) -> None:
    async with relay_on_store(dialect, tmp_path, PgDatabases(postgres_url)) as relay:
        client = await RelayClient.connect(relay.url)
        assert await session_tenant(relay, client) == "local"
        _, key = await new_tenant(relay)
        assert await refused(relay.url) == 401
        client = await RelayClient.connect(relay.url, headers=bearer(key.key))
        await client.close()


async def test_local_development_mode_is_for_loopback_only(tmp_path: Path) -> None:
    async with relay_on_store("sqlite", tmp_path, None) as empty:
        auth: Authenticator = empty.state.auth
        assert await auth.local_mode()
        for host in ("203.0.113.7", "10.0.0.2", "::ffff:192.0.2.1"):
            scope = {"type": "websocket", "headers": [], "client": (host, 5555), "query_string": b"", "path": "/"}
            with pytest.raises(AuthRefused) as refusal:
                await auth.authenticate(HTTPConnection(scope))
            assert refusal.value.status == 401
        local = {"type": "websocket", "headers": [], "client": ("::1", 5555), "query_string": b"", "path": "/"}
        assert (await auth.authenticate(HTTPConnection(local))).tenant == "local"


async def _until(condition: Callable[[], bool], deadline_s: float = 5.0) -> None:
    end = time.monotonic() + deadline_s
    # The registry has no "session removed" event to wait on; poll it, bounded.
    while not condition():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.01)
