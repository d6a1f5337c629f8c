"""GraphiQL loads without internet: every file the page loads comes from ragql itself, hashes to
the SRI the page declares, and the page's default query runs against the demo catalogue."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest
from graphql import parse, validate

from api.graphiql import assets
from api.graphiql.page import DEFAULT_QUERY
from schema.root import build_schema
from tests.conftest import graphql_ok

_LOADED = re.compile(r'(?:src|href)="(?P<url>[^"]+)"\s+integrity="(?P<integrity>[^"]+)"')


async def _page(client: httpx.AsyncClient) -> str:
    response = await client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def test_the_vendored_files_match_strawberrys_sri_hashes() -> None:
    listed = assets.manifest()
    # Strawberry's page loads these seven files (see the issue); a template change shows up here.
    assert sorted(a.relative for a in listed) == [
        "@graphiql/plugin-explorer@1.0.2/dist/index.umd.js",
        "@graphiql/plugin-explorer@1.0.2/dist/style.css",
        "graphiql@3.8.3/graphiql.min.css",
        "graphiql@3.8.3/graphiql.min.js",
        "js-cookie@3.0.5/dist/js.cookie.min.js",
        "react-dom@18.2.0/umd/react-dom.production.min.js",
        "react@18.2.0/umd/react.production.min.js",
    ]
    assert assets.problems() == []


def test_a_changed_or_missing_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "static"
    shutil.copytree(assets.STATIC_DIR, copy)
    monkeypatch.setattr(assets, "STATIC_DIR", copy)
    react = next(a for a in assets.manifest() if a.package == "react")
    react.file.write_bytes(react.file.read_bytes() + b"\n")
    next(a for a in assets.manifest() if a.path == "graphiql.min.css").file.unlink()
    wrong = assets.problems()
    assert len(wrong) == 2
    assert any(line.startswith("react@18.2.0/umd/react.production.min.js hashes to sha384-") for line in wrong)
    assert "graphiql@3.8.3/graphiql.min.css is missing" in wrong


async def test_the_page_loads_only_local_files_whose_bytes_match_its_integrity(app_client: httpx.AsyncClient) -> None:
    html = await _page(app_client)
    assert "unpkg.com" not in html and '<script src="http' not in html
    loaded = list(_LOADED.finditer(html))
    assert len(loaded) == len(assets.manifest())
    for match in loaded:
        assert match["url"].startswith(assets.URL_PREFIX + "/"), match["url"]
        response = await app_client.get(match["url"])
        assert response.status_code == 200, match["url"]
        assert assets.sri(response.content) == match["integrity"], match["url"]


async def test_the_assets_are_served_outside_the_guarded_graphql_path(app_client: httpx.AsyncClient) -> None:
    # Served outside /graphql, so api/guard.py never sees them (a 401 would break GraphiQL's page
    # in a browser that sends the token only to /graphql).
    css = next(a for a in assets.manifest() if a.path == "graphiql.min.css")
    response = await app_client.get(css.local_url)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/css")


def test_the_default_query_is_valid_against_the_schema() -> None:
    schema = build_schema()._schema
    assert validate(schema, parse(DEFAULT_QUERY)) == []


async def test_the_page_opens_with_a_filtered_hybrid_search_that_finds_films(app_client: httpx.AsyncClient) -> None:
    html = await _page(app_client)
    assert 'const EXAMPLE_QUERY = "# ragql: hybrid search' in html
    data = await graphql_ok(app_client, DEFAULT_QUERY)
    hits = data["search"]["hits"]
    assert len(hits) == 5
    assert all(hit["document"]["year"] >= 1980 for hit in hits)
    assert any("time" in (hit["snippet"] + hit["document"]["title"]).lower() for hit in hits)
