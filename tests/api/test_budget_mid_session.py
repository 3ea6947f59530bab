"""A tenant that reaches its budget during a session: `error` quota_exceeded, then close 1008
(protocol §6), checked after a response — never on the audio path."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from tests.api.store_relay import bearer, new_tenant, relay_on_store, tenants_of
from tests.conformance.client import RelayClient


async def test_budget_reached_mid_session_ends_it_with_quota_exceeded(tmp_path: Path) -> None:
    async with relay_on_store("sqlite", tmp_path, None) as relay:
        tenant, key = await new_tenant(relay, budget_usd=Decimal("1000"))
        client = await RelayClient.connect(relay.url, headers=bearer(key.key))
        await client.start(modalities=["text"])
        await client.send({"type": "text", "text": "First question."})
        first, _ = await client.collect_response()
        assert first.status == "completed"
        # The budget is lowered while the session runs (an admin, or the spend caught up).
        await tenants_of(relay).update(tenant.id, budget_usd=Decimal("0"))
        await client.send({"type": "text", "text": "Second question."})
        events = await client.until_closed()
        assert client.close_code == 1008
        kinds = [e.type for e in events]
        assert "response.done" in kinds, kinds
        error = next(e for e in events if e.type == "error")
        assert error["code"] == "quota_exceeded" and error["fatal"] is True
        ended = next(e for e in events if e.type == "session.ended")
        assert ended["reason"] == "quota_exceeded"


async def test_a_tenant_without_budget_is_never_checked(tmp_path: Path) -> None:
    async with relay_on_store("sqlite", tmp_path, None) as relay:
        _tenant, key = await new_tenant(relay)
        client = await RelayClient.connect(relay.url, headers=bearer(key.key))
        await client.start(modalities=["text"])
        for text in ("One.", "Two."):
            await client.send({"type": "text", "text": text})
            response, _ = await client.collect_response()
            assert response.status == "completed"
        ended, _ = await client.end()
        assert ended["reason"] == "client_end"
