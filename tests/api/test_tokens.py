"""`POST /v1/tokens` and browser tokens at the session handshake, on a real relay and store."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from relay.config import Secret
from relay.store.tokens import TokenSigner
from tests.api.store_relay import (
    DIALECTS,
    bearer,
    new_tenant,
    open_ws,
    refused,
    refused_with_body,
    relay_on_store,
    session_tenant,
    tenants_of,
)
from tests.conformance.client import Event, RelayClient
from tests.relay.conftest import RunningRelay
from tests.store.pg import PgDatabases


@pytest_asyncio.fixture(loop_scope="session", scope="module", params=DIALECTS)
async def relay(
    request: pytest.FixtureRequest, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningRelay]:
    async with relay_on_store(request.param, tmp_path_factory.mktemp("tokens"), PgDatabases(postgres_url)) as r:
        await new_tenant(r)  # local development mode off
        yield r


async def _mint(relay: RunningRelay, key: str, body: Any = None, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=relay.http, trust_env=False) as http:
        return await http.post("/v1/tokens", headers=bearer(key), json=body, **kwargs)


async def _token(relay: RunningRelay, key: str, **body: Any) -> str:
    reply = await _mint(relay, key, body)
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["token"]
    return token


async def test_mint_a_token_and_open_a_session_with_it_in_the_query(relay: RunningRelay) -> None:
    tenant, key = await new_tenant(relay)
    before = int(time.time())
    reply = await _mint(relay, key.key)
    assert reply.status_code == 200 and reply.headers["cache-control"] == "no-store"
    body = reply.json()
    assert set(body) == {"token", "expires_at"}
    assert before + 300 <= body["expires_at"] <= int(time.time()) + 300
    assert key.key not in body["token"]
    client = await RelayClient.connect(f"{relay.url}?token={body['token']}")
    assert await session_tenant(relay, client) == tenant.id


@pytest.mark.parametrize("framing", ["relay.v1.msgpack", "relay.v1.json"])
async def test_a_token_in_the_subprotocol_selects_the_framing_never_the_token(
    relay: RunningRelay, framing: str
) -> None:
    tenant, key = await new_tenant(relay)
    token = await _token(relay, key.key, ttl_s=60)
    ws = await open_ws(relay.url, subprotocols=[f"relay.token.{token}", framing])
    assert ws.subprotocol == framing
    assert ws.response is not None and token not in str(ws.response.headers)
    client = RelayClient(ws, framing)  # type: ignore[arg-type]
    assert await session_tenant(relay, client) == tenant.id


async def test_expired_tampered_and_foreign_tokens_are_401(relay: RunningRelay) -> None:
    tenant, key = await new_tenant(relay)
    signer = relay.state.auth.tokens
    expired, _ = signer.mint(tenant.id, 60, now=time.time() - 61)
    status, body = await refused_with_body(f"{relay.url}?token={expired}")
    assert status == 401 and "expired" in body["error"]
    good = await _token(relay, key.key)
    payload, signature = good.split(".")
    tampered = payload[:-3] + ("xyz" if not payload.endswith("xyz") else "abc") + "." + signature
    assert await refused(f"{relay.url}?token={tampered}") == 401
    assert await refused(relay.url, subprotocols=[f"relay.token.{good}x", "relay.v1.json"]) == 401
    foreign, _ = TokenSigner(Secret("another-relay-secret-" + "z" * 20)).mint(tenant.id, 60)
    assert await refused(f"{relay.url}?token={foreign}") == 401
    assert await refused(f"{relay.url}?token={good}&token={good}") == 401
    # A token for a tenant that was revoked since is 403.
    await tenants_of(relay).revoke_tenant(tenant.id)
    assert await refused(f"{relay.url}?token={good}") == 403


async def test_a_pinned_provider_and_model_are_enforced_at_session_start(relay: RunningRelay) -> None:
    _, key = await new_tenant(relay)
    token = await _token(relay, key.key, provider="openai", model="gpt-realtime-mini")
    # The pinned model is the default: session.start may leave it out.
    client = await RelayClient.connect(f"{relay.url}?token={token}")
    started = await client.start("openai")
    assert started["model"] == "gpt-realtime-mini"
    await client.end()
    for start in ({"provider": "cartesia"}, {"provider": "openai", "model": "gpt-realtime"}):
        client = await RelayClient.connect(f"{relay.url}?token={token}")
        await client.send({"type": "session.start", **start})
        events = await client.until_closed()
        errors = [e for e in events if e.type == "error"]
        assert errors and errors[0]["code"] == "unsupported" and errors[0]["fatal"] is True, _brief(events)
        assert client.close_code == 1008
    # Fallbacks are providers too: a provider-pinned token cannot reach another one through them.
    only_openai = await _token(relay, key.key, provider="openai")
    client = await RelayClient.connect(f"{relay.url}?token={only_openai}")
    await client.send({"type": "session.start", "provider": "openai", "fallback": ["cartesia"]})
    events = await client.until_closed()
    assert any(e.type == "error" and e["code"] == "unsupported" for e in events), _brief(events)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"ttl_s": 601}, "ttl_s must be an integer from 1 to 600"),
        ({"ttl_s": 0}, "ttl_s"),
        ({"ttl_s": "300"}, "ttl_s"),
        ({"ttl_s": True}, "ttl_s"),
        ({"ttl_s": 1.5}, "ttl_s"),
        ({"provider": "nope"}, "unknown provider"),
        ({"provider": "openai", "model": "not-a-realtime-model"}, "no model"),
        ({"model": "gpt-realtime"}, "needs a provider"),
        ({"provider": ""}, "provider must be"),
        ([1, 2], "JSON object"),
    ],
)
async def test_bad_requests_are_400_with_a_clear_message(relay: RunningRelay, body: Any, message: str) -> None:
    _, key = await new_tenant(relay)
    reply = await _mint(relay, key.key, body)
    assert reply.status_code == 400 and message in reply.json()["error"]


async def test_who_may_mint(relay: RunningRelay) -> None:
    tenant, key = await new_tenant(relay)
    reply = await _mint(relay, key.key, content=b"{not json")
    assert reply.status_code == 400 and "not valid JSON" in reply.json()["error"]
    async with httpx.AsyncClient(base_url=relay.http, trust_env=False) as http:
        assert (await http.post("/v1/tokens")).status_code == 401
        too_big = await http.post("/v1/tokens", headers=bearer(key.key), content=b" " * 20_000)
        assert too_big.status_code == 413
    # A token cannot mint tokens: it would renew itself forever.
    token = await _token(relay, key.key)
    reply = await _mint(relay, token)
    assert reply.status_code == 401 and "API key" in reply.json()["error"]
    await tenants_of(relay).revoke_tenant(tenant.id)
    assert (await _mint(relay, key.key)).status_code == 403


async def test_tokens_in_urls_are_redacted_from_the_servers_log(
    relay: RunningRelay, caplog: pytest.LogCaptureFixture
) -> None:
    tenant, key = await new_tenant(relay)
    token = await _token(relay, key.key)
    uvicorn_log = logging.getLogger("uvicorn.error")
    # uvicorn's own logger does not propagate to the root; listen on it directly.
    uvicorn_log.addHandler(caplog.handler)
    level = uvicorn_log.level
    uvicorn_log.setLevel(logging.INFO)
    try:
        client = await RelayClient.connect(f"{relay.url}?token={token}")
        assert await session_tenant(relay, client) == tenant.id
        ws = await open_ws(relay.url, subprotocols=[f"relay.token.{token}", "relay.v1.json"])
        await ws.close()
    finally:
        uvicorn_log.setLevel(level)
        uvicorn_log.removeHandler(caplog.handler)
    assert "token=***" in caplog.text
    assert token not in caplog.text and token[4:40] not in caplog.text


async def test_local_development_mode_mints_tokens_for_local(postgres_url: str, tmp_path: Any) -> None:
    async with relay_on_store("sqlite", tmp_path, None) as relay:
        async with httpx.AsyncClient(base_url=relay.http, trust_env=False) as http:
            reply = await http.post("/v1/tokens", json={"ttl_s": 30})
        assert reply.status_code == 200
        token = reply.json()["token"]
        client = await RelayClient.connect(f"{relay.url}?token={token}")
        assert await session_tenant(relay, client) == "local"
        # Once a tenant exists, a local token is worth nothing.
        await new_tenant(relay)
        assert await refused(f"{relay.url}?token={token}") == 401


def _brief(events: list[Event]) -> str:
    return ", ".join(e.brief() for e in events)
