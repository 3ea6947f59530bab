"""End to end: sessions through the real relay -> producer -> (Redis stream -> consumer) -> ledger ->
GET /v1/usage. What the ledger charged must equal the usage every `response.done` reported to the
client, priced here by hand from the seeded list prices."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from relay.config import Secret
from relay.metering.consumer import StreamConsumer
from relay.metering.ledger import Ledger
from relay.metering.pipeline import consumer_config
from relay.metering.usage import reconcile
from tests.conformance.client import RelayClient
from tests.metering.relay import MeteredRelay, metered_relay
from tests.relay.conftest import relay_settings
from tests.store.pg import PgDatabases

D = Decimal
# The seed's list prices (relay/store/migrations/0102_seed_prices.sql), written out again on purpose.
OPENAI_GPT_REALTIME = {  # USD per 1M tokens
    "input_text_tokens": D("4.00"),
    "cached_input_tokens": D("0.40"),
    "output_text_tokens": D("16.00"),
    "input_audio_tokens": D("32.00"),
    "output_audio_tokens": D("64.00"),
}
CARTESIA_PER_1K_CHARACTERS = D("0.05")


def by_hand(provider: str, usage: dict[str, int]) -> Decimal:
    if provider == "cartesia":
        return D(usage.get("characters", 0)) * CARTESIA_PER_1K_CHARACTERS / D(1000)
    assert provider == "openai"
    text, audio = usage.get("input_text_tokens", 0), usage.get("input_audio_tokens", 0)
    cached = min(usage.get("cached_input_tokens", 0), text + audio)  # cached: a part of the input ...
    from_text = min(cached, text)  # ... taken off the text tokens first, then the audio ones
    p = OPENAI_GPT_REALTIME
    total = (
        D(text - from_text) * p["input_text_tokens"]
        + D(audio - (cached - from_text)) * p["input_audio_tokens"]
        + D(cached) * p["cached_input_tokens"]
        + D(usage.get("output_text_tokens", 0)) * p["output_text_tokens"]
        + D(usage.get("output_audio_tokens", 0)) * p["output_audio_tokens"]
    )
    return total / D(1_000_000)


async def openai_session(
    relay: MeteredRelay, key: str, turns: list[str], modalities: list[str]
) -> list[dict[str, int]]:
    usages = []
    async with await RelayClient.connect(relay.url, headers={"Authorization": f"Bearer {key}"}) as c:
        await c.start("openai", modalities=modalities, metadata={"run": "e2e"})
        for text in turns:
            await c.send({"type": "text", "text": text})
            response, _ = await c.collect_response()
            assert response.done is not None and response.status == "completed"
            usages.append(response.done["usage"])
        await c.end()
    return usages


async def tts_session(relay: MeteredRelay, key: str, text: str) -> list[dict[str, int]]:
    async with await RelayClient.connect(relay.url, headers={"Authorization": f"Bearer {key}"}) as c:
        await c.start("cartesia")
        await c.send({"type": "text", "text": text, "final": True})
        response, _ = await c.collect_response(wait_s=20)
        assert response.done is not None
        await c.end()
    return [response.done["usage"]]


def summed(usages: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for u in usages:
        for k, v in u.items():
            out[k] = out.get(k, 0) + v
    return out


@pytest.mark.parametrize("pipeline", ["redis+postgresql", "embedded+sqlite"])
async def test_sessions_are_charged_exactly_what_response_done_reported(
    pipeline: str, redis_url: str, meter_pg: PgDatabases, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    if pipeline == "redis+postgresql":
        database_url = meter_pg.create()
        metering: dict[str, Any] = {
            "redis_url": Secret(redis_url),
            "meter_stream": f"test:e2e:{tag}",
            "meter_group": f"e2e-{tag}",
            "meter_dead_letter_stream": f"test:e2e:{tag}:dead",
        }
    else:
        database_url = f"sqlite:///{tmp_path / 'relay.db'}"
        metering = {}
    settings = relay_settings(database_url=database_url, meter_journal_path=str(tmp_path / "journal"), **metering)
    async with metered_relay(settings) as relay:
        tenants = relay.state.auth.tenants
        _, admin = await tenants.create("Ops", tenant_id=f"ops-{tag}", admin=True)
        acme, acme_key = await tenants.create("Acme", tenant_id=f"acme-{tag}")
        key = acme_key.key
        runs = await asyncio.gather(
            openai_session(relay, key, ["Hello there", "And again"], ["text"]),
            openai_session(relay, key, ["Say something"], ["audio", "text"]),
            openai_session(relay, key, ["One", "Two", "Three"], ["audio"]),
            tts_session(relay, key, "Your table for two is booked for seven tonight."),
            tts_session(relay, key, "Hello and welcome."),
        )
        providers = ["openai", "openai", "openai", "cartesia", "cartesia"]
        reported = [(p, u) for p, usages in zip(providers, runs, strict=True) for u in usages]
        expected = sum((by_hand(p, u) for p, u in reported), D(0))
        assert expected > 0

        assert relay.state.metering is not None
        assert await relay.state.metering.producer.flush()
        if pipeline == "redis+postgresql":
            # What `realtime-relay meter` runs, driven here so the test knows when it is done.
            config = consumer_config(settings)
            async with Redis.from_url(redis_url) as redis:
                consumer = StreamConsumer(redis, Ledger(relay.state.db), config)
                await consumer.ensure_group()
                while await consumer.poll(block_ms=1):
                    pass
                await redis.delete(config.stream, config.dead_letter_stream)

        db = relay.state.db
        rows = await db.fetchall("SELECT cost_usd, metadata FROM cost_records WHERE tenant = ?", (acme.id,))
        assert len(rows) == len(reported) == 8
        assert sum((D(r[0]) for r in rows), D(0)) == expected
        assert sorted(r[1] for r in rows) == ['{"run":"e2e"}'] * 6 + ["{}"] * 2  # the session's metadata, copied
        assert await db.fetchone("SELECT count(*) FROM session_records WHERE tenant = ?", (acme.id,)) == (5,)
        assert await reconcile(db) == []

        async with httpx.AsyncClient(base_url=relay.http) as http:
            mine = (await http.get("/v1/usage", headers={"Authorization": f"Bearer {key}"})).json()
            assert D(mine["total"]["cost_usd"]) == expected
            assert mine["total"]["events"] == 8
            reported_total = summed([u for _, u in reported])
            assert mine["total"]["usage"] == {k: reported_total.get(k, 0) for k in mine["total"]["usage"]}
            by_provider = (
                await http.get(
                    "/v1/usage",
                    params={"group_by": "provider", "tenant": acme.id},
                    headers={"Authorization": f"Bearer {admin.key}"},
                )
            ).json()
            costs = {g["provider"]: D(g["cost_usd"]) for g in by_provider["groups"]}
            assert costs == {
                "cartesia": sum((by_hand(p, u) for p, u in reported if p == "cartesia"), D(0)),
                "openai": sum((by_hand(p, u) for p, u in reported if p == "openai"), D(0)),
            }
    if pipeline == "redis+postgresql":
        meter_pg.drop(database_url)


async def test_a_relay_can_consume_in_process_and_reports_redis_in_readiness_and_metrics(
    redis_url: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = relay_settings(
        database_url=f"sqlite:///{tmp_path / 'relay.db'}",
        meter_journal_path=str(tmp_path / "journal"),
        redis_url=Secret(redis_url),
        meter_in_process=True,
        meter_stream=f"test:inproc:{tag}",
        meter_group=f"inproc-{tag}",
        meter_dead_letter_stream=f"test:inproc:{tag}:dead",
    )
    async with metered_relay(settings) as relay:
        assert relay.state.metering is not None and relay.state.metering.consumer is not None
        committed = asyncio.Event()

        async def on_commit(ids: Sequence[bytes]) -> None:  # the consumer's test seam: after COMMIT
            committed.set()

        relay.state.metering.consumer.after_commit = on_commit
        async with await RelayClient.connect(relay.url) as c:  # local development mode
            await c.start("openai", modalities=["text"])
            await c.send({"type": "text", "text": "Hello"})
            response, _ = await c.collect_response()
            await c.end()
        assert response.done is not None
        expected = by_hand("openai", response.done["usage"])
        db = relay.state.db
        await asyncio.wait_for(committed.wait(), 10)
        [(cost,)] = await db.fetchall("SELECT cost_usd FROM cost_records WHERE tenant = 'local'")
        assert D(cost) == expected
        async with httpx.AsyncClient(base_url=relay.http) as http:
            ready = (await http.get("/readyz")).json()
            assert ready["checks"]["redis"] == "ok"
            scraped = (await http.get("/metrics")).text
        assert "relay_meter_sent_total 2.0" in scraped  # the response and the session summary
        assert "relay_meter_queue_depth 0.0" in scraped
    async with Redis.from_url(redis_url) as redis:
        await redis.delete(settings.meter_stream, settings.meter_dead_letter_stream)
