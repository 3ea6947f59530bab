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
from relay.api import prices as prices_api
from relay.api import tenants as tenants_api
from relay.api import tokens as tokens_api
from relay.api import usage as usage_api
from relay.auth import Authenticator
from relay.config import Settings
from relay.endpoint import session_endpoint
from relay.logging import install_redaction
from relay.metering.metrics import MeterMetrics
from relay.metering.pipeline import start_metering
from relay.metering.sink import UsageSink
from relay.metrics import CONTENT_TYPE, RelayMetrics
from relay.readiness import readiness
from relay.registry import SessionRegistry
from relay.state import RelayState
from relay.store.migrate import migrated_database
from relay.store.tenants import Tenants
from relay.store.tokens import TokenSigner
from relay.upstreams import provider_directory

LOG = logging.getLogger("relay.app")


def create_app(
    settings: Settings | None = None, *, sink: UsageSink | None = None, record_emulators: bool = False
) -> Starlette:
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        install_redaction()
        async with (
            migrated_database(settings.database_url, pool_size=settings.database_pool_size) as db,
            provider_directory(settings, record=record_emulators) as directory,
        ):
            auth = Authenticator(Tenants(db), TokenSigner(settings.token_secret))
            if await auth.local_mode():
                LOG.warning(
                    "local development mode: no tenant in %s, so unauthenticated clients from loopback"
                    " are accepted as tenant 'local' (create a tenant to end it)",
                    db.url,
                )
            else:
                LOG.info("tenants configured in %s: every client must authenticate", db.url)
            registry = SessionRegistry(settings.max_sessions, settings.tenant_max_sessions)
            metrics = RelayMetrics(registry)
            # A sink passed in (tests) replaces the metering pipeline; otherwise usage is metered for real.
            metering = None
            usage_sink = sink
            if usage_sink is None:
                metering = await start_metering(settings, db, MeterMetrics(metrics.registry))
                usage_sink = metering.sink
            app.state.relay = RelayState(
                settings=settings,
                directory=directory,
                sink=usage_sink,
                registry=registry,
                metrics=metrics,
                db=db,
                auth=auth,
                metering=metering,
            )
            try:
                yield
            finally:
                # After the server drained the sessions (their last usage is emitted), before the store closes.
                if metering is not None:
                    await metering.close()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    async def readyz(request: Request) -> JSONResponse:
        state: RelayState | None = getattr(request.app.state, "relay", None)
        if state is None or state.registry.draining:
            return JSONResponse({"status": "not ready"}, status_code=503)
        ready, report = await readiness(state)
        if not ready:
            return JSONResponse({"status": "not ready", "checks": report}, status_code=503)
        return JSONResponse(
            {
                "status": "ready",
                "providers": state.directory.names(),
                "emulated": sorted(state.directory.emulated),
                "checks": report,
            }
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
            *tokens_api.routes,
            *tenants_api.routes,
            *usage_api.routes,
            *prices_api.routes,
        ],
        lifespan=lifespan,
    )
