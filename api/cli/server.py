"""`ragql serve` and `ragql schema`."""

from __future__ import annotations

import os
from typing import Any

import typer

from api.cli.core import settings
from domain.errors import StartupError


def serve(ctx: typer.Context) -> None:
    """Serve /graphql, GraphiQL and the reference app on RAGQL_HOST:RAGQL_PORT."""
    import uvicorn

    from api.app import create_app
    from api.logs import configure
    from api.serving import uvicorn_options
    from api.shutdown import GracefulServer
    from api.tracing import configure_tracing

    s = settings(ctx)
    configure(s.log_level, s.log_format)
    configure_tracing()
    # Limits and proxy trust for a public server: api/serving.py. log_config=None: api/logs.py
    # formats every line, uvicorn's too. SIGTERM: stop accepting, finish in-flight requests, then
    # give up after the grace period.
    workers = s.serve_workers
    common: dict[str, Any] = {
        **uvicorn_options(s, workers=workers),
        "log_config": None,
        "timeout_graceful_shutdown": max(1, int(s.shutdown_grace_s)),
    }
    if workers == 1:
        GracefulServer(uvicorn.Config(create_app(s), **common)).run()
        return
    if s.database_url is None:
        raise StartupError(
            "RAGQL_WORKERS > 1 needs RAGQL_DATABASE_URL: the embedded PostgreSQL belongs to one process; "
            "run one worker, or point RAGQL_DATABASE_URL at a PostgreSQL server"
        )
    if s.metrics_port is not None:
        raise StartupError(
            "RAGQL_METRICS_PORT with RAGQL_WORKERS > 1: every worker process would need the one port; "
            "run one worker per container, or unset RAGQL_METRICS_PORT and scrape /metrics on the API "
            "port with RAGQL_METRICS_TOKEN"
        )
    # Each worker process builds its own app from the same RAGQL_* environment; the count goes
    # with it, so each knows it is not alone (api/bootstrap.py: what is per process without Redis).
    os.environ["RAGQL_WORKERS"] = str(workers)
    uvicorn.run("api.app:create_app", factory=True, workers=workers, **common)


def schema() -> None:
    """Print the GraphQL schema (SDL)."""
    from schema.root import build_schema

    # Plain text, not rich: the output is meant for files and diffs.
    typer.echo(build_schema().as_str())


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(schema)
