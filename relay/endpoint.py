"""`WS /v1/session`: admission (auth, budget, caps, capacity, draining), subprotocol, then the session.

Every refusal the contract puts at the handshake (401/403 auth, 402 budget, 429 tenant cap, 503
store down) is answered before `accept`, as a plain HTTP response with a JSON body. Admission does
its store work (key lookup, spend) here, once per session, never on the audio path.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from relay.auth import AuthRefused, Identity
from relay.budget import check_budget, over_budget
from relay.errors import CLOSE_RESTART, CLOSE_TRY_AGAIN
from relay.outbound import OutboundQueue
from relay.pins import pinned_directory
from relay.session import Session
from relay.state import RelayState
from relay.transports.websocket import WebSocketTransport, choose_subprotocol

LOG = logging.getLogger("relay.endpoint")

_REFUSAL_REASON = {401: "auth", 403: "forbidden", 402: "budget", 503: "store"}


async def session_endpoint(ws: WebSocket) -> None:
    state: RelayState = ws.app.state.relay
    settings = state.settings
    try:
        identity = await state.auth.authenticate(ws)
        await check_budget(state, identity)
    except AuthRefused as exc:
        state.metrics.refused.labels(_REFUSAL_REASON.get(exc.status, "auth")).inc()
        await ws.send_denial_response(JSONResponse({"error": exc.message}, status_code=exc.status))
        return
    registry = state.registry
    # From here to registry.add nothing awaits, so two handshakes cannot both take a tenant's last slot.
    if registry.tenant_full(identity.tenant, identity.session_cap(settings.tenant_max_sessions)):
        state.metrics.refused.labels("tenant_sessions").inc()
        await ws.send_denial_response(
            JSONResponse({"error": "too many concurrent sessions for this tenant"}, status_code=429)
        )
        return
    subprotocol = choose_subprotocol(ws.scope.get("subprotocols", []))
    refusal = "draining" if registry.draining else "capacity" if registry.at_capacity() else None
    session: Session | None = None
    if refusal is None:
        outbound = OutboundQueue(settings.outbound_high_water_ms, settings.outbound_hard_limit_ms)
        session = Session(
            settings=settings,
            directory=pinned_directory(state.directory, identity.provider, identity.model),
            sink=state.sink,
            tenant=identity.tenant,
            outbound=outbound,
            metrics=state.metrics,
            over_budget=_budget_probe(state, identity),
        )
        registry.add(session)
    try:
        await ws.accept(subprotocol=subprotocol)
        if refusal == "draining":
            state.metrics.refused.labels("draining").inc()
            await ws.send_json({"type": "session.ended", "reason": "server_restart", "usage": {}})
            await ws.close(CLOSE_RESTART)
            return
        if session is None:
            state.metrics.refused.labels("capacity").inc()
            await ws.close(CLOSE_TRY_AGAIN, "relay at capacity")
            return
        await WebSocketTransport(ws, session, subprotocol, settings.max_message_bytes).run()
    finally:
        if session is not None:
            registry.remove(session)


def _budget_probe(state: RelayState, identity: Identity) -> Callable[[], Awaitable[bool]] | None:
    if identity.record is None or identity.record.budget_usd is None:
        return None
    return lambda: over_budget(state, identity)
