"""`GET /v1/usage` and `/v1/prices` on a real relay and store (both dialects): who sees what, what the
answers say, and what a bad query gets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio

from relay.metering.ledger import Ledger
from tests.api.store_relay import DIALECTS, bearer, new_tenant, relay_on_store
from tests.metering.events import usage_event
from tests.relay.conftest import RunningRelay, relay_settings, start_relay, stop_relay
from tests.store.pg import PgDatabases

D = Decimal
# 2026-03-01T12:00:00Z and the next day
T0 = 1_772_366_400_000
T1 = T0 + 86_400_000


@pytest_asyncio.fixture(loop_scope="session", scope="module", params=DIALECTS)
async def relay(
    request: pytest.FixtureRequest, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningRelay]:
    async with relay_on_store(request.param, tmp_path_factory.mktemp("usage"), PgDatabases(postgres_url)) as r:
        yield r


async def _get(relay: RunningRelay, path: str, key: str | None, **params: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=relay.http, trust_env=False) as http:
        return await http.get(path, params=params, headers=bearer(key) if key else {})


async def _put(relay: RunningRelay, key: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=relay.http, trust_env=False) as http:
        return await http.put("/v1/prices", json=body, headers=bearer(key))


async def _charge(relay: RunningRelay, tenant: str) -> None:
    """Two days of openai and a day of cartesia for `tenant`, straight into the ledger."""
    await Ledger(relay.state.db).record(
        [
            usage_event(tenant=tenant, ts_ms=T0, usage={"input_text_tokens": 1_000_000}),  # $4
            usage_event(tenant=tenant, ts_ms=T0, usage={"output_text_tokens": 500_000}),  # $8
            usage_event(tenant=tenant, ts_ms=T1, usage={"output_audio_tokens": 1_000_000}),  # $64
            usage_event(tenant=tenant, ts_ms=T1, provider="cartesia", model="sonic-3.5", usage={"characters": 2000}),
        ]
    )


async def test_a_tenant_reads_its_own_usage_grouped(relay: RunningRelay) -> None:
    me, key = await new_tenant(relay)
    other, _ = await new_tenant(relay)
    await _charge(relay, me.id)
    await _charge(relay, other.id)
    reply = await _get(relay, "/v1/usage", key.key, group_by="provider,model,day")
    assert reply.status_code == 200
    body = reply.json()
    assert body["tenant"] == me.id and body["currency"] == "USD" and body["group_by"] == ["provider", "model", "day"]
    groups = [(g["provider"], g["model"], g["day"], g["events"], g["cost_usd"]) for g in body["groups"]]
    assert groups == [
        ("cartesia", "sonic-3.5", "2026-03-02", 1, "0.1000000000"),
        ("openai", "gpt-realtime", "2026-03-01", 2, "12.0000000000"),
        ("openai", "gpt-realtime", "2026-03-02", 1, "64.0000000000"),
    ]
    total = body["total"]
    assert D(total["cost_usd"]) == D("76.1") and total["events"] == 4
    assert total["usage"]["input_text_tokens"] == 1_000_000 and total["usage"]["characters"] == 2000
    one_day = (await _get(relay, "/v1/usage", key.key, **{"from": "2026-03-02", "to": "2026-03-03"})).json()
    assert D(one_day["total"]["cost_usd"]) == D("64.1") and one_day["groups"] == []


async def test_a_tenant_cannot_read_another_tenants_usage(relay: RunningRelay) -> None:
    _, key = await new_tenant(relay)
    other, _ = await new_tenant(relay)
    assert (await _get(relay, "/v1/usage", key.key, tenant=other.id)).status_code == 403
    assert (await _get(relay, "/v1/usage", key.key, group_by="tenant")).status_code == 400
    assert (await _get(relay, "/v1/usage", None)).status_code == 401
    assert (await _get(relay, "/v1/usage", "rr_live_" + "x" * 43)).status_code == 401


async def test_an_admin_reads_any_tenant_or_all_of_them(relay: RunningRelay) -> None:
    _, admin = await new_tenant(relay, admin=True)
    a, _ = await new_tenant(relay)
    b, _ = await new_tenant(relay)
    await _charge(relay, a.id)
    await _charge(relay, b.id)
    just_a = (await _get(relay, "/v1/usage", admin.key, tenant=a.id)).json()
    assert just_a["tenant"] == a.id and D(just_a["total"]["cost_usd"]) == D("76.1")
    everyone = (await _get(relay, "/v1/usage", admin.key, group_by="tenant")).json()
    by_tenant = {g["tenant"]: D(g["cost_usd"]) for g in everyone["groups"]}
    assert by_tenant[a.id] == by_tenant[b.id] == D("76.1")
    assert everyone["tenant"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"from": "March 1st"},
        {"to": "2026-13-01"},
        {"from": "2026-03-02", "to": "2026-03-02"},
        {"group_by": "provider,provider"},
        {"group_by": "session"},
    ],
)
async def test_bad_queries_are_400_and_say_why(relay: RunningRelay, params: dict[str, str]) -> None:
    _, key = await new_tenant(relay)
    reply = await _get(relay, "/v1/usage", key.key, **params)
    assert reply.status_code == 400 and reply.json()["error"]


async def test_every_tenant_may_read_the_price_table(relay: RunningRelay) -> None:
    _, key = await new_tenant(relay)
    body = (await _get(relay, "/v1/prices", key.key, provider="openai")).json()
    rows = {(p["model"], p["unit"]): p for p in body["prices"]}
    realtime = rows[("gpt-realtime", "output_audio_tokens")]
    assert realtime["usd"] == "64.00" and realtime["per"] == "1M tokens" and realtime["as_of"] and realtime["source"]
    assert ("*", "input_text_tokens") in rows
    assert {p["provider"] for p in body["prices"]} == {"openai"}


async def test_only_admins_change_prices_and_records_keep_theirs(relay: RunningRelay) -> None:
    _, admin = await new_tenant(relay, admin=True)
    me, key = await new_tenant(relay)
    row = {
        "provider": "acme-tts",
        "model": "*",
        "unit": "characters",
        "usd": "0.20",
        "source": "contract",
        "as_of": "2026-03",
    }
    assert (await _put(relay, key.key, {"prices": [row]})).status_code == 403
    reply = await _put(relay, admin.key, {"prices": [row]})
    assert reply.status_code == 200 and reply.json()["changed"] == 1
    assert reply.json()["prices"][0]["usd"] == "0.20"
    ledger = Ledger(relay.state.db)
    await ledger.record([usage_event(tenant=me.id, provider="acme-tts", model="v1", usage={"characters": 1000})])
    assert (await _put(relay, admin.key, {"prices": [{**row, "usd": "0.30"}]})).status_code == 200
    await ledger.record([usage_event(tenant=me.id, provider="acme-tts", model="v1", usage={"characters": 1000})])
    mine = (await _get(relay, "/v1/usage", key.key)).json()
    assert D(mine["total"]["cost_usd"]) == D("0.50")  # 0.20 at the old price + 0.30 at the new one
    deleted = await _put(relay, admin.key, {"prices": [{**row, "usd": None}]})
    assert deleted.status_code == 200 and deleted.json()["prices"] == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"prices": []},
        {"prices": [{"provider": "p", "model": "m", "unit": "characters", "usd": 0.1}]},  # a float: refused
        {"prices": [{"provider": "p", "model": "m", "unit": "parsecs", "usd": "1"}]},
        {"prices": [{"provider": "p", "model": "m", "unit": "characters", "usd": "-1"}]},
        {"prices": [{"provider": "", "model": "m", "unit": "characters", "usd": "1"}]},
        {"prices": [{"provider": "p", "model": "m", "unit": "characters", "usd": "1"}, "not an object"]},
    ],
)
async def test_a_bad_price_change_changes_nothing(relay: RunningRelay, body: Any) -> None:
    _, admin = await new_tenant(relay, admin=True)
    before = (await _get(relay, "/v1/prices", admin.key)).json()
    reply = await _put(relay, admin.key, body)
    assert reply.status_code == 400 and reply.json()["error"]
    assert (await _get(relay, "/v1/prices", admin.key)).json() == before


async def test_local_development_mode_reads_its_own_usage() -> None:
    relay = await start_relay(relay_settings())
    try:
        await _charge(relay, "local")
        body = (await _get(relay, "/v1/usage", None)).json()
        assert body["tenant"] == "local" and D(body["total"]["cost_usd"]) == D("76.1")
        assert (await _get(relay, "/v1/prices", None)).status_code == 200
        # Changing prices needs an admin: in local mode, use `realtime-relay meter --set-price`.
        row = {"provider": "p", "model": "*", "unit": "characters", "usd": "1"}
        async with httpx.AsyncClient(base_url=relay.http, trust_env=False) as http:
            assert (await http.put("/v1/prices", json={"prices": [row]})).status_code == 403
    finally:
        await stop_relay(relay)
