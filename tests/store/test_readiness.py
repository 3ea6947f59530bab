"""`GET /readyz` follows the store: 503 while it cannot be reached, ready again once it can."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from starlette.testclient import TestClient

from relay.app import create_app
from relay.config import Secret
from tests.api.store_relay import bearer, new_tenant, refused_with_body, relay_on_store
from tests.relay.conftest import RunningRelay, relay_settings
from tests.store.pg import PgDatabases, terminate_connections


async def _readyz(relay: RunningRelay) -> httpx.Response:
    async with httpx.AsyncClient(base_url=relay.http, trust_env=False) as http:
        return await http.get("/readyz")


async def test_ready_reports_the_store(tmp_path: Path) -> None:
    async with relay_on_store("sqlite", tmp_path, None) as relay:
        reply = await _readyz(relay)
        assert reply.status_code == 200 and reply.json()["checks"]["store"] == "ok"
        _, key = await new_tenant(relay)
        await relay.state.db.close()  # the store is gone
        reply = await _readyz(relay)
        assert reply.status_code == 503 and reply.json() == {"status": "not ready", "checks": {"store": "unavailable"}}
        # Nobody can be authenticated without the store: refused at the handshake, with a reason.
        status, body = await refused_with_body(relay.url, headers=bearer(key.key))
        assert status == 503 and "unavailable" in body["error"]


async def test_postgresql_outage_and_recovery(postgres_url: str, tmp_path: Path) -> None:
    pg = PgDatabases(postgres_url)
    async with relay_on_store("postgresql", tmp_path, pg) as relay:
        assert (await _readyz(relay)).status_code == 200
        url = relay.state.settings.database_url
        # The server drops every connection (a restart, a failover): the relay reconnects.
        await asyncio.to_thread(terminate_connections, postgres_url, url)
        assert (await _readyz(relay)).status_code == 200
        # The database disappears: not ready.
        await asyncio.to_thread(pg.drop, url)
        reply = await _readyz(relay)
        assert reply.status_code == 503 and reply.json()["checks"]["store"] == "unavailable"


def _redis_app_readyz(tmp_path: Path, redis: str) -> httpx.Response:
    # The metering pipeline (not a test sink) holds the Redis client readiness pings; TestClient
    # runs the app's lifespan, so the relay starts exactly as `serve` starts it.
    settings = relay_settings(
        database_url=f"sqlite:///{tmp_path / 'relay.db'}",
        redis_url=Secret(redis),
        meter_stream=f"test:readyz:{uuid.uuid4().hex[:8]}",
        meter_journal_path=str(tmp_path / "usage.journal"),
    )
    with TestClient(create_app(settings)) as client:
        return client.get("/readyz")


def test_ready_reports_redis_when_metering_uses_it(tmp_path: Path, redis_url: str) -> None:
    reply = _redis_app_readyz(tmp_path, redis_url)
    assert reply.status_code == 200 and reply.json()["checks"] == {"store": "ok", "redis": "ok"}


def test_unreachable_redis_is_not_ready(tmp_path: Path) -> None:
    # Port 1 on loopback: nothing listens there, so the ping is refused at once.
    reply = _redis_app_readyz(tmp_path, "redis://127.0.0.1:1/0")
    assert reply.status_code == 503 and reply.json()["checks"] == {"store": "ok", "redis": "unavailable"}
