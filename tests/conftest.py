"""Test harness: one real embedded PostgreSQL (pgvector + pg_textsearch) in a temporary data
dir for the whole session, the real local embedding model, and the app driven over HTTP."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from api import embedded
from api.app import create_app
from api.settings import Settings
from domain.documents import service as documents
from domain.documents.service import ChunkingConfig
from domain.documents.validation import DocumentInput
from domain.persistence.database import Database
from domain.persistence.migrate import migrate
from domain.providers.embedding import Embedder, LocalEmbedder
from domain.tenancy import ensure_tenant
from tests.fakes.providers import FakeProviders

pytest_plugins = ("tests.redis_fixture", "tests.log_secrets")

LLM_KEY = "sk-test-llm-key-0000"
COHERE_KEY = "co-test-cohere-key-0000"


@pytest.fixture(scope="session", autouse=True)
def _provider_keys_are_secrets() -> None:
    """The fake providers' keys must never reach a log line either (see tests/log_secrets.py).
    Imported here, not at the top: the plugin module must be imported by pytest first."""
    from tests.log_secrets import remember

    remember(LLM_KEY)
    remember(COHERE_KEY)


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="ragql-test-"))
    os.environ["XDG_RUNTIME_DIR"] = str(root / "run")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url(tmp_root: Path) -> Iterator[str]:
    import pgserver

    pgdata = tmp_root / "pgdata"
    url = embedded.start(pgdata, cleanup_mode="delete")
    yield url
    pgserver.get_server(pgdata).cleanup()


@pytest.fixture(scope="session")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


@asynccontextmanager
async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and talk to it in-process over ASGI."""
    async with LifespanManager(app, startup_timeout=120) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture(scope="session")
async def app_client(pg_url: str, embedder: LocalEmbedder, tmp_root: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url=pg_url, data_dir=tmp_root, load_demo=True, max_upload_bytes=64 * 1024)
    async with client_for(create_app(settings, embedder=embedder)) as client:
        yield client


@pytest.fixture(scope="session")
def fake_providers() -> Iterator[FakeProviders]:
    """OpenAI- and Cohere-speaking HTTP server on 127.0.0.1 (tests/fakes/providers.py)."""
    with FakeProviders() as server:
        yield server


@pytest.fixture
def fake(fake_providers: FakeProviders) -> Iterator[FakeProviders]:
    fake_providers.reset()
    yield fake_providers
    fake_providers.reset()


def provider_values(fake: FakeProviders) -> dict[str, Any]:
    """Settings that wire an app to the fake providers: LLM answers and re-ranking, Cohere
    re-ranking. Small re-rank windows (8 candidates, window 5, step 3) so window logic shows in a
    short list."""
    return {
        "llm_model": "fake-llm",
        "llm_base_url": fake.url + "/v1",
        "llm_api_key": LLM_KEY,
        "llm_max_retries": 0,
        "llm_timeout_s": 2.0,
        "cohere_api_key": COHERE_KEY,
        "cohere_base_url": fake.url,
        "rerank_timeout_s": 1.5,
        "rerank_max_retries": 1,
        "rerank_max_candidates": 8,
        "rerank_window": 5,
        "rerank_step": 3,
        # These apps test what providers do on each call; a reused answer would not call them.
        "answer_cache_ttl_s": 0,
    }


def provider_settings(pg_url: str, tmp_root: Path, fake: FakeProviders, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": pg_url, "data_dir": tmp_root, "load_demo": False, **provider_values(fake)}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
async def provider_client(
    pg_url: str,
    embedder: LocalEmbedder,
    tmp_root: Path,
    app_client: httpx.AsyncClient,
    fake_providers: FakeProviders,
) -> AsyncIterator[httpx.AsyncClient]:
    """A second app on the same database (the demo films loaded by app_client), with providers."""
    async with client_for(create_app(provider_settings(pg_url, tmp_root, fake_providers), embedder=embedder)) as client:
        yield client


@pytest.fixture(scope="session")
async def db(pg_url: str, app_client: httpx.AsyncClient) -> AsyncIterator[Database]:
    """A second connection pool on the same database, for assertions and domain-level tests."""
    database = Database(pg_url)
    await migrate(database, embedding_dim=384)
    yield database
    await database.dispose()


@pytest.fixture
async def tenant(db: Database) -> str:
    """A fresh tenant per test keeps domain tests independent without truncating anything."""
    tenant_id = f"t-{uuid.uuid4().hex[:12]}"
    await ensure_tenant(db, tenant_id)
    return tenant_id


async def ingest_docs(
    db: Database, embedder: Embedder, tenant: str, inputs: list[DocumentInput]
) -> documents.IngestOutcome:
    """Domain-level ingest with the default chunking, for tests that bypass HTTP."""
    ctx = documents.IngestContext(db, embedder, ChunkingConfig(), max_batch=100, max_chars=100_000)
    return await documents.ingest(ctx, documents.IngestRequest(tenant, inputs))


async def graphql(client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST like a client; return the whole response body."""
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def graphql_ok(client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = await graphql(client, query, variables)
    assert "errors" not in body, body.get("errors")
    data: dict[str, Any] = body["data"]
    return data


def error_codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors", [])]


@asynccontextmanager
async def tenant_client(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, *, load_demo: bool = True, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """An app acting as a fresh tenant of its own (development mode's `dev_tenant`), with the demo
    films loaded into it: tests that learn from feedback see no other test's feedback."""
    tenant_id = f"t-{uuid.uuid4().hex[:12]}"
    settings = Settings(database_url=pg_url, data_dir=tmp_root, load_demo=load_demo, dev_tenant=tenant_id, **overrides)
    async with client_for(create_app(settings, embedder=embedder)) as client:
        yield client, tenant_id


async def catalogue(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """Every document of the client's tenant by title (id, title, genre), through `documents` paging."""
    out: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        data = await graphql_ok(
            client,
            "query($a: String) { documents(first: 100, after: $a) { edges { node { id title genre } } "
            "pageInfo { hasNextPage endCursor } } }",
            {"a": after},
        )
        out.update({e["node"]["title"]: e["node"] for e in data["documents"]["edges"]})
        if not data["documents"]["pageInfo"]["hasNextPage"]:
            return out
        after = data["documents"]["pageInfo"]["endCursor"]
