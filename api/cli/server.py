"""`ragql serve` and `ragql schema`."""

from __future__ import annotations

import typer

from api.cli.core import settings


def serve(ctx: typer.Context) -> None:
    """Serve /graphql, GraphiQL and the reference app on RAGQL_HOST:RAGQL_PORT."""
    import uvicorn

    from api.app import create_app
    from api.serving import uvicorn_options

    s = settings(ctx)
    # Limits and proxy trust for a public server: api/serving.py.
    uvicorn.run(create_app(s), **uvicorn_options(s))


def schema() -> None:
    """Print the GraphQL schema (SDL)."""
    from schema.root import build_schema

    # Plain text, not rich: the output is meant for files and diffs.
    typer.echo(build_schema().as_str())


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(schema)
