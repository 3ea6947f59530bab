"""The ASGI application: routes, startup and shutdown. No business logic lives here."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from relay import __version__
from relay.config import Settings
from relay.endpoint import session_endpoint
from relay.metering.sink import MemorySink, UsageSink
from relay.metrics import CONTENT_TYPE, RelayMetrics
from relay.registry import SessionRegistry
from relay.state import RelayState
from relay.upstreams import provider_directory

LOG = logging.getLogger("relay.app")


def create_app(
    settings: Settings | None = None, *, sink: UsageSink | None = None, record_emulators: bool = False
) -> Starlette:
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        LOG.warning("local development mode: unauthenticated clients from loopback are accepted as tenant 'local'")
        async with provider_directory(settings, record=record_emulators) as directory:
            registry = SessionRegistry(settings.max_sessions, settings.tenant_max_sessions)
            app.state.relay = RelayState(
                settings=settings,
                directory=directory,
                sink=sink if sink is not None else MemorySink(),
                registry=registry,
                metrics=RelayMetrics(registry),
            )
            yield

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    async def readyz(request: Request) -> JSONResponse:
        state: RelayState | None = getattr(request.app.state, "relay", None)
        if state is None or state.registry.draining:
            return JSONResponse({"status": "not ready"}, status_code=503)
        return JSONResponse(
            {"status": "ready", "providers": state.directory.names(), "emulated": sorted(state.directory.emulated)}
        )

    async def metrics(request: Request) -> Response:
        state: RelayState = request.app.state.relay
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            WebSocketRoute("/v1/session", session_endpoint),
        ],
        lifespan=lifespan,
    )
