"""The ledger in both dialects: exactly once, priced from the table at the time, rolled up exactly."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from relay.metering.ledger import Ledger, utc_day
from relay.metering.prices import PriceChange, apply_changes, list_prices
from relay.metering.usage import reconcile, tenant_spend, usage_report
from relay.store.db import Database
from tests.metering.events import usage_event

D = Decimal
M = D(1_000_000)
DAY_MS = 86_400_000
# 2026-03-01T12:00:00Z
T0 = 1_772_366_400_000


async def records(db: Database, tenant: str | None = None) -> list[tuple[object, ...]]:
    sql = "SELECT event_id, cost_usd, unpriced, price_model, rate_input_text_tokens FROM cost_records"
    if tenant is not None:
        return await db.fetchall(sql + " WHERE tenant = ?", (tenant,))
    return await db.fetchall(sql)


async def test_the_same_event_a_thousand_times_is_one_record(store: Database) -> None:
    ledger = Ledger(store)
    event = usage_event(usage={"input_text_tokens": 1000})
    first = await ledger.record([event])
    assert (first.recorded, first.duplicates) == (1, 0)
    for _ in range(9):
        again = await ledger.record([event] * 111)
        assert (again.recorded, again.duplicates) == (0, 111)
    rows = await records(store)
    assert len(rows) == 1 and D(rows[0][1]) == D(1000) * D(4) / M
    report = await usage_report(store, tenant="acme")
    assert report.total.events == 1
    assert report.total.usage["input_text_tokens"] == 1000
    assert report.total.cost_usd == D(1000) * D(4) / M


async def test_seeded_prices_are_there_with_source_and_date(store: Database) -> None:
    prices = {(p.provider, p.model, p.unit): p for p in await list_prices(store)}
    realtime = prices[("openai", "gpt-realtime", "output_audio_tokens")]
    assert realtime.usd == D("64.00") and realtime.as_of and realtime.source
    assert prices[("cartesia", "*", "characters")].usd == D("0.05")
    assert prices[("gemini", "*", "input_audio_tokens")].as_of == "2026-05-16"


async def test_a_price_change_applies_to_later_events_only(store: Database) -> None:
    ledger = Ledger(store)
    before = usage_event(tenant="t-price", usage={"input_text_tokens": 1_000_000})
    await ledger.record([before])
    await apply_changes(store, [PriceChange("openai", "gpt-realtime", "input_text_tokens", D("4.50"), "test", "2026")])
    after = usage_event(tenant="t-price", usage={"input_text_tokens": 1_000_000})
    await ledger.record([after, before])  # `before` redelivered: still charged at its old price
    rows = {r[0]: r for r in await records(store, "t-price")}
    assert D(rows[before.event_id][1]) == D(4) and D(rows[before.event_id][4]) == D(4)
    assert D(rows[after.event_id][1]) == D("4.5") and D(rows[after.event_id][4]) == D("4.50")
    assert await tenant_spend(store, "t-price") == D("8.5")


async def test_unknown_model_uses_the_wildcard_and_unknown_provider_is_unpriced(store: Database) -> None:
    ledger = Ledger(store)
    fallback = usage_event(tenant="t-w", model="gpt-realtime-2099-01-01", usage={"output_text_tokens": 1_000_000})
    nobody = usage_event(tenant="t-w", provider="nobody", model="x", usage={"characters": 5000})
    result = await ledger.record([fallback, nobody])
    assert (result.recorded, result.unpriced) == (2, 1)
    rows = {r[0]: r for r in await records(store, "t-w")}
    assert D(rows[fallback.event_id][1]) == D(16) and rows[fallback.event_id][3] == "*"
    assert D(rows[nobody.event_id][1]) == 0 and bool(rows[nobody.event_id][2]) and rows[nobody.event_id][3] is None
    report = await usage_report(store, tenant="t-w", group_by=["provider"])
    by_provider = {g.key["provider"]: g for g in report.groups}
    assert by_provider["nobody"].unpriced_events == 1 and by_provider["nobody"].usage["characters"] == 5000
    # A redelivery of the unpriced event is not counted again.
    assert (await ledger.record([nobody])).unpriced == 0


async def test_session_summaries_are_kept_but_never_charged(store: Database) -> None:
    ledger = Ledger(store)
    response = usage_event(tenant="t-s", session_id="s1", usage={"input_text_tokens": 10, "audio_in_ms": 900})
    summary = usage_event(
        tenant="t-s",
        session_id="s1",
        kind="session",
        response_id=None,
        usage={"input_text_tokens": 10, "audio_in_ms": 1500},
    )
    result = await ledger.record([response, summary])
    assert result.recorded == 2
    assert len(await records(store, "t-s")) == 1
    assert await store.fetchone("SELECT count(*) FROM session_records WHERE tenant = ?", ("t-s",)) == (1,)
    assert (await usage_report(store, tenant="t-s")).total.events == 1
    assert await tenant_spend(store, "t-s") == D(10) * D(4) / M
    # audio_in_ms may differ (the summary counts audio no response followed); tokens must not.
    assert await reconcile(store) == []
    lost = usage_event(tenant="t-s", session_id="s2", kind="session", response_id=None, usage={"output_text_tokens": 7})
    await ledger.record([lost])
    [mismatch] = await reconcile(store)
    assert (mismatch.session_id, mismatch.field, mismatch.summary, mismatch.responses) == (
        "s2",
        "output_text_tokens",
        7,
        0,
    )


async def test_usage_groups_by_provider_model_and_day_within_a_range(store: Database) -> None:
    ledger = Ledger(store)
    events = [
        usage_event(tenant="t-g", ts_ms=T0, usage={"input_text_tokens": 1}),
        usage_event(tenant="t-g", ts_ms=T0 + 1000, usage={"input_text_tokens": 2}),
        usage_event(tenant="t-g", ts_ms=T0 + DAY_MS, usage={"input_text_tokens": 4}),
        usage_event(tenant="t-g", ts_ms=T0 + DAY_MS, provider="cartesia", model="sonic-3.5", usage={"characters": 8}),
        usage_event(tenant="t-g", ts_ms=T0 + 2 * DAY_MS, usage={"input_text_tokens": 16}),
        usage_event(tenant="other", ts_ms=T0, usage={"input_text_tokens": 32}),
    ]
    await ledger.record(events)
    assert utc_day(T0) == "2026-03-01"
    report = await usage_report(
        store, tenant="t-g", start=date(2026, 3, 1), end=date(2026, 3, 3), group_by=["provider", "model", "day"]
    )
    got = [(g.key["provider"], g.key["model"], g.key["day"], g.events, g.cost_usd) for g in report.groups]
    assert got == [
        ("cartesia", "sonic-3.5", "2026-03-02", 1, D(8) * D("0.05") / D(1000)),
        ("openai", "gpt-realtime", "2026-03-01", 2, D(3) * D(4) / M),
        ("openai", "gpt-realtime", "2026-03-02", 1, D(4) * D(4) / M),
    ]
    assert report.total.events == 4
    everyone = await usage_report(store, tenant=None, group_by=["tenant"])
    assert {g.key["tenant"]: g.events for g in everyone.groups} == {"other": 1, "t-g": 5}


async def test_the_rollup_equals_the_sum_of_the_records(store: Database) -> None:
    ledger = Ledger(store)
    for i in range(5):
        batch = [
            usage_event(
                tenant="t-r", usage={"input_text_tokens": 7 * i + j, "cached_input_tokens": j, "output_audio_tokens": 3}
            )
            for j in range(40)
        ]
        await ledger.record(batch + batch[:5])
    rows = await store.fetchall("SELECT cost_usd FROM cost_records WHERE tenant = ?", ("t-r",))
    assert len(rows) == 200
    assert await tenant_spend(store, "t-r") == sum((D(r[0]) for r in rows), D(0))


async def test_nul_in_client_chosen_text_cannot_make_an_event_unrecordable(store: Database) -> None:
    event = usage_event(tenant="t-n", model="gpt\x00x", metadata={"k\x00": "v\x00"})
    assert (await Ledger(store).record([event])).recorded == 1
    assert await store.fetchone("SELECT model FROM cost_records WHERE event_id = ?", (event.event_id,)) == (
        "gpt\ufffdx",
    )
