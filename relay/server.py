"""Running the app on uvicorn, with a drain on shutdown that the contract's 1012 needs.

uvicorn closes every WebSocket with 1012 the moment it shuts down. We first stop accepting,
let sessions finish for `drain_timeout_s`, and end the rest ourselves with `session.ended`
(`reason: "server_restart"`) and 1012, with their usage settled.
"""

from __future__ import annotations

import socket

import uvicorn
from starlette.applications import Starlette

from relay.config import Settings
from relay.state import RelayState


def uvicorn_config(app: Starlette, settings: Settings, host: str, port: int, **extra: object) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        # The sans-I/O implementation costs 25-35 % less CPU per message than the legacy one,
        # and compression costs 2.3x CPU for audio that does not compress (physical-limits.md).
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_max_size=settings.max_message_bytes,
        lifespan="on",
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) + 10,
        **extra,  # type: ignore[arg-type]
    )


class RelayServer(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.loaded_app
        state: RelayState | None = None
        # The loaded app may be wrapped in uvicorn middleware; find the Starlette app's state.
        while app is not None and state is None:
            state = getattr(getattr(app, "state", None), "relay", None)
            app = getattr(app, "app", None)
        for server in self.servers:
            server.close()
        if state is not None:
            await state.registry.drain(state.settings.drain_timeout_s)
        await super().shutdown(sockets)
