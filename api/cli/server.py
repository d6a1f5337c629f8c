"""`ragql serve` and `ragql schema`."""

from __future__ import annotations

import typer

from api.cli.core import settings


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
    config = uvicorn.Config(
        create_app(s),
        # Limits and proxy trust for a public server: api/serving.py.
        **uvicorn_options(s),
        log_config=None,  # api/logs.py formats every line, uvicorn's too
        # SIGTERM: stop accepting, finish in-flight requests, then give up after the grace period.
        timeout_graceful_shutdown=max(1, int(s.shutdown_grace_s)),
    )
    GracefulServer(config).run()


def schema() -> None:
    """Print the GraphQL schema (SDL)."""
    from schema.root import build_schema

    # Plain text, not rich: the output is meant for files and diffs.
    typer.echo(build_schema().as_str())


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(schema)
