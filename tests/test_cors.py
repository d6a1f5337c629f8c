"""CORS for frontends on another origin, and the websocket Origin check reading the same rules.

Development allows any port on localhost/127.0.0.1; production allows nothing until
RAGQL_CORS_ORIGINS (or RAGQL_CORS_ORIGIN_REGEX) is set. Preflights are answered before the
guard, so they never meet a 401 or a 405."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from pydantic import ValidationError
from websockets.typing import Origin, Subprotocol

from api.app import create_app
from api.settings import Settings
from domain.providers.embedding import LocalEmbedder
from tests.security_harness import TEST_JWT_SECRET, Signer, production_client
from tests.servers import serve_in_thread

FRONTEND = "http://localhost:3000"
CONFIGURED = "https://app.example.test"
SEARCH = {"query": '{ search(query: "heist", first: 1) { hits { document { title } } } }'}


def _preflight_headers(origin: str, *, headers: str = "authorization, content-type, accept") -> dict[str, str]:
    return {"origin": origin, "access-control-request-method": "POST", "access-control-request-headers": headers}


@pytest.fixture(scope="module")
def signer(tmp_root: Path) -> Signer:
    return Signer(tmp_root)


async def test_a_dev_server_on_localhost_passes_the_preflight(app_client: httpx.AsyncClient) -> None:
    response = await app_client.options("/graphql", headers=_preflight_headers(FRONTEND))
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == FRONTEND
    assert response.headers["access-control-allow-credentials"] == "true"
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "accept"} <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]


async def test_any_loopback_port_is_allowed_in_development_and_the_answer_is_readable(
    app_client: httpx.AsyncClient,
) -> None:
    for origin in ("http://127.0.0.1:5173", "http://localhost:8080", "http://localhost"):
        response = await app_client.post("/graphql", json=SEARCH, headers={"origin": origin})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == origin
        assert response.json()["data"]["search"]["hits"]


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "http://localhost.evil.example:3000", "https://localhost:3000", "null"]
)
async def test_other_origins_are_refused_in_development(app_client: httpx.AsyncClient, origin: str) -> None:
    preflight = await app_client.options("/graphql", headers=_preflight_headers(origin))
    assert preflight.status_code == 400 and "access-control-allow-origin" not in preflight.headers
    simple = await app_client.post("/graphql", json=SEARCH, headers={"origin": origin})
    assert "access-control-allow-origin" not in simple.headers


async def test_production_allows_no_origin_until_configured(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, signer: Signer
) -> None:
    async with production_client(pg_url, tmp_root, embedder, signer) as client:
        for origin in (FRONTEND, CONFIGURED):
            response = await client.options("/graphql", headers=_preflight_headers(origin))
            assert response.status_code == 400, response.text
            assert "access-control-allow-origin" not in response.headers


async def test_a_configured_origin_is_allowed_in_production_and_sees_the_guards_errors(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, signer: Signer
) -> None:
    async with production_client(pg_url, tmp_root, embedder, signer, cors_origins=[CONFIGURED]) as client:
        preflight = await client.options("/graphql", headers=_preflight_headers(CONFIGURED))
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == CONFIGURED
        # Loopback is a development convenience only.
        assert (await client.options("/graphql", headers=_preflight_headers(FRONTEND))).status_code == 400
        # No token: the guard's 401 carries CORS headers, so the frontend can read what to fix.
        refused = await client.post("/graphql", json=SEARCH, headers={"origin": CONFIGURED})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == CONFIGURED
        assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_origin_settings_accept_lists_and_refuse_what_is_not_an_origin() -> None:
    assert Settings(cors_origins="https://a.example, http://b.example:8080").cors_origins == [
        "http://b.example:8080",
        "https://a.example",
    ]
    assert Settings(cors_origins='["https://a.example"]').cors_origins == ["https://a.example"]
    with pytest.raises(ValidationError, match="RAGQL_CORS_ORIGINS"):
        Settings(cors_origins=["https://a.example/app"])
    assert Settings().cors_regex is not None and Settings(cors_origin_regex="").cors_regex is None
    with pytest.raises(ValidationError, match="RAGQL_CORS_ORIGIN_REGEX is not a regular expression"):
        Settings(cors_origin_regex="https://(app|admin.example.com")


def test_a_wildcard_origin_is_refused_in_production(pg_url: str, tmp_root: Path) -> None:
    with pytest.raises(ValidationError, match=r"RAGQL_CORS_ORIGINS=\* is refused in production"):
        Settings(env="production", jwt_secret=TEST_JWT_SECRET, database_url=pg_url, cors_origins=["*"])


@pytest.fixture(scope="module")
def dev_server(pg_url: str, tmp_root: Path, embedder: LocalEmbedder, app_client: httpx.AsyncClient) -> Iterator[str]:
    settings = Settings(database_url=pg_url, data_dir=tmp_root, load_demo=False, cors_origins=[CONFIGURED])
    with serve_in_thread(create_app(settings, embedder=embedder)) as address:
        yield address


async def _websocket_accepted(address: str, origin: str) -> bool:
    try:
        async with websockets.connect(
            f"ws://{address}/graphql", origin=Origin(origin), subprotocols=[Subprotocol("graphql-transport-ws")]
        ):
            return True
    except websockets.InvalidStatus as exc:
        assert exc.response.status_code == 403
        return False


@pytest.mark.parametrize(
    "origin",
    [FRONTEND, "http://127.0.0.1:5173", CONFIGURED, "http://evil.example", "http://localhost.evil.example:3000"],
)
async def test_the_websocket_origin_check_agrees_with_cors(dev_server: str, origin: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{dev_server}") as client:
        preflight = await client.options("/graphql", headers=_preflight_headers(origin))
    cors_allows = preflight.status_code == 200
    assert await _websocket_accepted(dev_server, origin) == cors_allows
    expected = origin in (FRONTEND, "http://127.0.0.1:5173", CONFIGURED)
    assert cors_allows == expected
