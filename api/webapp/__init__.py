"""The reference web app at `/`: static files in api/webapp/static/, no build step.

Its one dependency, the graphql-ws client, is vendored from npm by its lockfile
(`python -m api.webapp.vendor`, see vendor.py), so the app loads on a machine without internet.
The page is served with the environment filled in: in production it asks for a token first."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Outside /graphql on purpose, as GraphiQL's files: api/guard.py admits and authenticates /graphql*.
URL_PREFIX = "/static/app"


@cache
def _page(environment: str) -> str:
    return (STATIC_DIR / "index.html").read_text(encoding="utf-8").replace("{{environment}}", environment)


def mount(app: FastAPI, environment: str) -> None:
    page = _page(environment)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def reference_app() -> HTMLResponse:
        return HTMLResponse(page)

    app.mount(URL_PREFIX, StaticFiles(directory=STATIC_DIR), name="reference-app")
