"""The FastAPI application: /graphql (HTTP + websockets), health, metrics."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from prometheus_fastapi_instrumentator import Instrumentator
from sqlalchemy import text
from starlette.requests import HTTPConnection
from strawberry.fastapi import GraphQLRouter
from strawberry.subscriptions import (
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)

from api.bootstrap import build_services
from api.settings import Settings
from domain.providers.embedding import Embedder
from domain.runtime import Services
from schema.context import Context, Principal
from schema.root import build_schema

log = logging.getLogger("ragql")


async def get_context(connection: HTTPConnection) -> Context:
    """One context getter for HTTP requests and websockets (both are HTTPConnections)."""
    services: Services = connection.app.state.services
    request_id = connection.headers.get("x-request-id") or uuid.uuid4().hex
    principal = Principal(tenant_id=services.dev_tenant, subject="anonymous", roles=["admin", "editor", "reader"])
    return Context(services=services, principal=principal, request_id=request_id)


def create_app(settings: Settings | None = None, *, embedder: Embedder | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services, close = await build_services(settings, embedder=embedder)
        app.state.services = services
        if settings.env == "development":
            log.warning(
                "development mode: authentication is off and every request acts as tenant %r", settings.dev_tenant
            )
        try:
            yield
        finally:
            await close()

    app = FastAPI(title="ragql", lifespan=lifespan)
    router: GraphQLRouter[Context, None] = GraphQLRouter(
        build_schema(),
        context_getter=get_context,
        multipart_uploads_enabled=True,
        # Strawberry refuses cross-origin websocket handshakes unless the page's origin is listed;
        # same-origin pages and clients that send no Origin (servers, CLIs) are let in.
        allowed_origins=settings.allowed_origins,
        # Websockets first; multipart-over-HTTP streams subscriptions to clients without them.
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL, MULTIPART_SUBSCRIPTION_PROTOCOL),
    )
    app.include_router(router, prefix="/graphql")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request, response: Response) -> dict[str, str]:
        services: Services | None = getattr(request.app.state, "services", None)
        if services is None:
            response.status_code = 503
            return {"status": "starting"}
        async with services.db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return {"status": "ready"}

    Instrumentator(excluded_handlers=["/metrics", "/healthz", "/readyz"]).instrument(app).expose(app)
    return app
