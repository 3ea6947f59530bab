"""A real relay on uvicorn whose usage goes through the real metering pipeline (no test sink)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from relay.app import create_app
from relay.config import Settings
from relay.server import RelayServer, uvicorn_config
from relay.state import RelayState


class MeteredRelay:
    def __init__(self, server: RelayServer, state: RelayState, port: int) -> None:
        self.server = server
        self.state = state
        self.port = port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/session"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def metered_relay(settings: Settings) -> AsyncIterator[MeteredRelay]:
    app = create_app(settings)  # no sink: the relay builds its metering pipeline from `settings`
    server = RelayServer(uvicorn_config(app, settings, "127.0.0.1", 0))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("relay server stopped during startup")
        await asyncio.sleep(0.01)  # uvicorn exposes no startup event; `started` is a plain flag
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield MeteredRelay(server, app.state.relay, port)
    finally:
        server.should_exit = True
        await task
