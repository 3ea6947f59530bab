"""A real relay on uvicorn (ephemeral port) in the test loop, with its in-process OpenAI emulator.

Shared across the relay tests: starting uvicorn and the emulator once keeps the suite fast. Tests
that change the emulator's fault switches reset them in a `finally`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest_asyncio
from starlette.applications import Starlette

from relay.app import create_app
from relay.config import Settings
from relay.metering.sink import MemorySink
from relay.server import RelayServer, uvicorn_config
from relay.state import RelayState


@dataclass
class RunningRelay:
    app: Starlette
    server: RelayServer
    port: int
    sink: MemorySink

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/session"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state(self) -> RelayState:
        state: RelayState = self.app.state.relay
        return state

    @property
    def emulator(self) -> Any:
        return self.state.directory.emulators["openai"]


async def start_relay(settings: Settings) -> RunningRelay:
    sink = MemorySink()
    app = create_app(settings, sink=sink, record_emulators=True)
    server = RelayServer(uvicorn_config(app, settings, "127.0.0.1", 0))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("relay server stopped during startup")
        await asyncio.sleep(0.01)  # uvicorn exposes no startup event; `started` is a plain flag
    port = server.servers[0].sockets[0].getsockname()[1]
    relay = RunningRelay(app, server, port, sink)
    relay._task = task  # type: ignore[attr-defined]
    return relay


async def stop_relay(relay: RunningRelay) -> None:
    relay.server.should_exit = True
    await relay._task  # type: ignore[attr-defined]


def relay_settings(**overrides: Any) -> Settings:
    # An in-memory store: no tenant, so local development mode, unless a test passes its own database_url.
    base = Settings(
        openai_api_key=Settings().openai_api_key,
        emulator_speed=0.0,
        log_level="warning",
        database_url="sqlite:///:memory:",
    )
    return dataclasses.replace(base, **overrides)


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def relay() -> AsyncIterator[RunningRelay]:
    running = await start_relay(relay_settings())
    yield running
    await stop_relay(running)
