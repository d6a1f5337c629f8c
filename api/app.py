"""The FastAPI application: /graphql (HTTP + websockets), the reference app at /, health, metrics."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_fastapi_instrumentator import Instrumentator
from strawberry.subscriptions import (
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)

from api import heap, metrics
from api.bootstrap import (
    Shared,
    build_gate,
    build_services,
    describe_auth,
    runs_worker_in_process,
    worker_config,
    worker_deps,
)
from api.graphiql import assets as graphiql_assets
from api.graphql_router import RagqlRouter, RagqlState, get_context
from api.guard import STATE_KEY, GraphQLGuard
from api.health import IndexWatch, is_ready, readiness
from api.metrics_server import CHALLENGE, MetricsServer, bearer_matches
from api.observability import Observed, OperationObserver
from api.ratelimit import Rate, RateLimiter
from api.replay import ResponseReplay
from api.settings import Settings
from api.webapp import mount as mount_reference_app
from api.websocket_guard import WebsocketLimits
from api.worker import BackgroundWorker, Worker
from domain import telemetry
from domain.errors import StartupError
from domain.providers.embedding import Embedder
from domain.runtime import ServerFacts, Services
from schema.root import QueryLimits, build_schema

log = logging.getLogger("ragql")


def create_app(settings: Settings | None = None, *, embedder: Embedder | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, RagqlState]]:
        metrics_server = _start_metrics_server(settings)
        shared = Shared(settings)
        try:
            services, close = await build_services(settings, embedder=embedder, shared=shared)
        except BaseException:
            await shared.aclose()
            if metrics_server is not None:
                metrics_server.close()
            raise
        app.state.metrics_server = metrics_server
        gate = build_gate(settings, services, shared)
        shared.start()
        watch = IndexWatch(services, settings.bm25_probe_interval_s)
        watch.start()
        app.state.shared, app.state.index_watch = shared, watch
        pool = services.db.engine.pool
        metrics.watch_pool(lambda: _pool_state(pool))
        facts = ServerFacts(
            auth_description=describe_auth(settings),
            introspection=settings.introspection_enabled,
            rate_limiter=gate.limiter,
            in_process_worker=runs_worker_in_process(settings),
        )
        # app.state too: /readyz and operators' probes look there; requests read the lifespan state.
        app.state.services = services
        if settings.env == "development":
            log.warning(
                "development mode: requests without credentials act as an admin of tenant %r "
                "(set RAGQL_ENV=production to require authentication)",
                settings.dev_tenant,
            )
        if settings.env == "production" and not settings.redis_url:
            log.warning("RAGQL_REDIS_URL is not set: rate limits are kept per process, not shared by replicas")
        if (settings.workers or 1) > 1 and not settings.redis_url:
            log.warning(
                "RAGQL_WORKERS=%d without RAGQL_REDIS_URL: each worker keeps its own rate limits and websocket "
                "caps (result caches stay coherent: index versions are shared through RAGQL_DATA_DIR); API "
                "keys are looked up on every request",
                settings.workers,
            )
        if (settings.workers or 1) > 1 and settings.metrics_token is not None:
            log.warning(
                "RAGQL_WORKERS=%d with RAGQL_METRICS_TOKEN: each scrape of /metrics is answered by one worker "
                "and shows that worker's counters only; run one worker per container to scrape them all",
                settings.workers,
            )
        log.info("rate limits: %s", gate.limiter.backend)
        background = None
        if facts.in_process_worker:
            background = BackgroundWorker(Worker(worker_deps(settings, services), worker_config(settings)))
            background.start()
            log.info("ingestion jobs: running an in-process worker (RAGQL_WORKER_IN_PROCESS=false to turn it off)")
        try:
            replay = (
                ResponseReplay(schema._schema, router.encode_json)
                if settings.response_replay and settings.search_cache_ttl_s > 0
                else None
            )
            app.state.replay = replay  # for tests and operators' probes, as app.state.services
            # Last before serving: everything start-up built leaves the collector's scans.
            heap.freeze_startup_objects()
            yield {STATE_KEY: RagqlState(services=services, gate=gate, facts=facts, replay=replay)}
        finally:
            heap.unfreeze()
            await watch.aclose()
            if background is not None:
                await background.stop()
            await gate.limiter.aclose()
            await shared.aclose()
            await close()
            if metrics_server is not None:
                metrics_server.close()

    # FastAPI's /docs, /redoc and /openapi.json describe the HTTP routes: development only.
    development = settings.env == "development"
    telemetry.install(Observed())
    app = FastAPI(
        title="ragql",
        lifespan=lifespan,
        docs_url="/docs" if development else None,
        redoc_url="/redoc" if development else None,
        openapi_url="/openapi.json" if development else None,
    )
    schema = build_schema(
        QueryLimits(
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_query_aliases,
            max_tokens=settings.max_query_tokens,
            max_cost=settings.max_query_cost,
            introspection=settings.introspection_enabled,
            suggestions=settings.env == "development",
        ),
        observers=[OperationObserver],
    )
    router = RagqlRouter(
        schema,
        context_getter=get_context,
        multipart_uploads_enabled=True,
        # Strawberry refuses cross-origin websocket handshakes unless the page's origin is allowed
        # (the CORS settings below); same-origin pages and clients that send no Origin (servers,
        # CLIs) are let in.
        allowed_origins=settings.cors_origins,
        origin_regex=settings.cors_regex,
        # Websockets first; multipart-over-HTTP streams subscriptions to clients without them.
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL, MULTIPART_SUBSCRIPTION_PROTOCOL),
    )
    app.include_router(router, prefix="/graphql")
    app.mount(graphiql_assets.URL_PREFIX, StaticFiles(directory=graphiql_assets.STATIC_DIR), name="graphiql-assets")
    mount_reference_app(app, settings.env)
    app.add_middleware(
        GraphQLGuard,
        admission=RateLimiter(None),
        admission_rate=Rate(max(1, round(settings.admission_per_ip_per_s)), 1.0),
        max_body_bytes=settings.max_request_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        trusted_proxies=settings.trusted_proxies,
        websocket_limits=WebsocketLimits(
            max_message_bytes=settings.max_request_bytes,
            init_timeout_s=settings.websocket_init_timeout_s,
            max_unidentified_per_ip=settings.max_unidentified_websockets_per_ip,
        ),
    )
    # Added last, so it runs first: preflights are answered before the guard (which would ask an
    # OPTIONS request for credentials), and the guard's 401/413/429 carry CORS headers a frontend
    # can read. Always installed: with nothing allowed, a preflight gets a clear 400, not a 405.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_origin_regex=settings.cors_regex,
        allow_credentials=True,
        allow_methods=["GET", "POST", "OPTIONS"],
        # `accept` carries the multipart subscription protocol (multipart/mixed;subscriptionSpec=1.0).
        allow_headers=["authorization", "content-type", "accept", "x-request-id"],
        expose_headers=["retry-after"],
        max_age=600,
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        services: Services | None = getattr(request.app.state, "services", None)
        if services is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        shared = request.app.state.shared
        checks = await readiness(services, shared.link, request.app.state.index_watch)
        ready = is_ready(checks)
        return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503)

    if settings.bench_route:
        from api.bench_route import add_bench_route

        add_bench_route(app)
    Instrumentator(excluded_handlers=["/metrics", "/healthz", "/readyz"]).instrument(app)
    _add_metrics_route(app, settings)
    return app


def _add_metrics_route(app: FastAPI, settings: Settings) -> None:
    """/metrics on the API port: open in development, token-only in production (api/metrics_server.py)."""
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    if token is None and settings.env == "production":
        return  # a 404, as for any path that does not exist

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint(request: Request) -> Response:
        if token is not None and not bearer_matches(request.headers.get("authorization"), token):
            return PlainTextResponse(
                "metrics need Authorization: Bearer <RAGQL_METRICS_TOKEN>\n",
                status_code=401,
                headers={"WWW-Authenticate": CHALLENGE},
            )
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def _start_metrics_server(settings: Settings) -> MetricsServer | None:
    if settings.metrics_port is None:
        if settings.env == "production" and settings.metrics_token is None:
            log.warning(
                "metrics are not served: set RAGQL_METRICS_PORT (a port for Prometheus only) or "
                "RAGQL_METRICS_TOKEN (/metrics on the API port with that bearer token)"
            )
        return None
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    try:
        server = MetricsServer(settings.host, settings.metrics_port, token)
    except OSError as exc:
        raise StartupError(
            f"cannot serve metrics on {settings.host}:{settings.metrics_port} (RAGQL_METRICS_PORT): {exc.strerror}"
        ) from exc
    log.info("metrics on http://%s:%d/metrics", settings.host, server.port)
    return server


def _pool_state(pool: object) -> tuple[int, int, int]:
    """(in use, idle, overflow) of a SQLAlchemy QueuePool; zeros for pools without counters."""
    try:
        in_use = int(pool.checkedout())  # type: ignore[attr-defined]
        idle = int(pool.checkedin())  # type: ignore[attr-defined]
        overflow = max(0, int(pool.overflow()))  # type: ignore[attr-defined]
    except AttributeError:
        return 0, 0, 0
    return in_use, idle, overflow
