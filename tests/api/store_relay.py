"""A real relay (uvicorn, ephemeral port) on a real store — a SQLite file or a PostgreSQL database —
for the auth and token tests, plus what they share: handshakes that must be refused, tenants."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from relay.config import Secret
from relay.store.tenants import NewKey, Tenant, Tenants
from tests.conformance.client import RelayClient
from tests.relay.conftest import RunningRelay, relay_settings, start_relay, stop_relay
from tests.store.pg import PgDatabases

DIALECTS = ["sqlite", "postgresql"]
TOKEN_SECRET = Secret("test-token-secret-" + "s" * 32)


@contextlib.asynccontextmanager
async def relay_on_store(
    dialect: str, tmp: Path, pg: PgDatabases | None, **overrides: Any
) -> AsyncIterator[RunningRelay]:
    """A relay whose store is an empty database of ``dialect``."""
    if dialect == "sqlite":
        url = f"sqlite:///{tmp / f'relay-{uuid.uuid4().hex[:8]}.db'}"
    else:
        assert pg is not None
        url = pg.create()
    overrides.setdefault("token_secret", TOKEN_SECRET)
    relay = await start_relay(relay_settings(database_url=url, **overrides))
    try:
        yield relay
    finally:
        await stop_relay(relay)
        if pg is not None and dialect == "postgresql":
            pg.drop(url)


def tenants_of(relay: RunningRelay) -> Tenants:
    return relay.state.auth.tenants


async def new_tenant(relay: RunningRelay, **options: Any) -> tuple[Tenant, NewKey]:
    """A tenant with a unique id (the relay is shared by a module's tests)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    return await tenants_of(relay).create(name, **options)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def refused(url: str, *, headers: dict[str, str] | None = None, subprotocols: list[str] | None = None) -> int:
    """The HTTP status that refused the handshake (fails if the handshake is accepted)."""
    status, _ = await refused_with_body(url, headers=headers, subprotocols=subprotocols)
    return status


async def refused_with_body(
    url: str, *, headers: dict[str, str] | None = None, subprotocols: list[str] | None = None
) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as refusal:
        ws = await open_ws(url, headers=headers, subprotocols=subprotocols)
        await ws.close()
    response = refusal.value.response
    return response.status_code, orjson.loads(response.body or b"{}")


async def open_ws(
    url: str, *, headers: dict[str, str] | None = None, subprotocols: list[str] | None = None
) -> ClientConnection:
    return await connect(
        url,
        additional_headers=headers or {},
        subprotocols=subprotocols,  # type: ignore[arg-type]
        proxy=None,
        open_timeout=5,
        close_timeout=2,
        compression=None,
        ping_interval=None,
    )


async def session_tenant(relay: RunningRelay, client: RelayClient, **start: Any) -> str:
    """Run a minimal session on ``client``; the tenant its usage was metered to."""
    started = await client.start(**start)
    session_id = started["session_id"]
    await client.end()
    summary = await relay.sink.wait_for(lambda e: e.kind == "session" and e.session_id == session_id)
    return summary.tenant
