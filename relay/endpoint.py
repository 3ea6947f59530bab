"""`WS /v1/session`: admission (auth, capacity, draining), subprotocol, then the session."""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from relay.auth import AuthRefused, authenticate
from relay.errors import CLOSE_RESTART, CLOSE_TRY_AGAIN
from relay.outbound import OutboundQueue
from relay.session import Session
from relay.state import RelayState
from relay.transports.websocket import WebSocketTransport, choose_subprotocol

LOG = logging.getLogger("relay.endpoint")


async def session_endpoint(ws: WebSocket) -> None:
    state: RelayState = ws.app.state.relay
    settings = state.settings
    try:
        identity = authenticate(ws)
    except AuthRefused as exc:
        state.metrics.refused.labels("auth").inc()
        await ws.send_denial_response(JSONResponse({"error": exc.message}, status_code=exc.status))
        return
    registry = state.registry
    if registry.tenant_full(identity.tenant):
        state.metrics.refused.labels("tenant_sessions").inc()
        await ws.send_denial_response(
            JSONResponse({"error": "too many concurrent sessions for this tenant"}, status_code=429)
        )
        return
    subprotocol = choose_subprotocol(ws.scope.get("subprotocols", []))
    await ws.accept(subprotocol=subprotocol)
    if registry.draining:
        state.metrics.refused.labels("draining").inc()
        await ws.send_json({"type": "session.ended", "reason": "server_restart", "usage": {}})
        await ws.close(CLOSE_RESTART)
        return
    if registry.at_capacity():
        state.metrics.refused.labels("capacity").inc()
        await ws.close(CLOSE_TRY_AGAIN, "relay at capacity")
        return
    outbound = OutboundQueue(settings.outbound_high_water_ms, settings.outbound_hard_limit_ms)
    session = Session(
        settings=settings,
        directory=state.directory,
        sink=state.sink,
        tenant=identity.tenant,
        outbound=outbound,
        metrics=state.metrics,
    )
    registry.add(session)
    try:
        await WebSocketTransport(ws, session, subprotocol, settings.max_message_bytes).run()
    finally:
        registry.remove(session)
