"""Start-up checks against real servers: a PostgreSQL without pgvector, a store embedded with
another model, and a server where BM25 is unavailable (the full-text fallback)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import create_app
from api.settings import Settings
from domain.errors import EmbeddingModelMismatch, MissingExtension
from domain.persistence.database import Database
from domain.persistence.migrate import check_embedding_model, check_pgvector, migrate
from domain.providers.embedding import LocalEmbedder
from tests.conftest import client_for, graphql_ok


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@pytest.mark.skipif(not _listening("127.0.0.1", 5432), reason="no PostgreSQL without pgvector on 127.0.0.1:5432")
async def test_server_without_pgvector_is_a_clear_error() -> None:
    # Only reads pg_available_extensions: nothing is created on a server we do not own.
    db = Database("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        with pytest.raises(MissingExtension) as info:
            await check_pgvector(db)
    finally:
        await db.dispose()
    message = info.value.message
    assert "pgvector" in message and "'vector'" in message
    assert "apt install postgresql-<major>-pgvector" in message and "RAGQL_DATABASE_URL" in message


async def _fresh_database(pg_url: str) -> str:
    """A new database on the embedded test server (never on a server we did not start)."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    admin = Database(pg_url)
    try:
        async with admin.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            from sqlalchemy import text

            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return pg_url.replace("/ragql?", f"/{name}?")


async def test_store_embedded_with_another_model_refuses_to_start(pg_url: str) -> None:
    db = Database(await _fresh_database(pg_url))
    try:
        await migrate(db, embedding_dim=384)
        await check_embedding_model(db, model="all-MiniLM-L6-v2", dim=384)
        await check_embedding_model(db, model="all-MiniLM-L6-v2", dim=384)  # same model: fine, idempotent
        with pytest.raises(EmbeddingModelMismatch) as info:
            await check_embedding_model(db, model="text-embedding-3-small", dim=1536)
    finally:
        await db.dispose()
    assert "all-MiniLM-L6-v2 (384 dimensions)" in info.value.message
    assert "RAGQL_EMBEDDING_MODEL" in info.value.message


@pytest.fixture
async def fulltext_client(pg_url: str, embedder: LocalEmbedder, tmp_path: object) -> AsyncIterator[httpx.AsyncClient]:
    url = await _fresh_database(pg_url)
    settings = Settings(database_url=url, keyword_backend="fulltext", load_demo=True, data_dir=str(tmp_path))
    async with client_for(create_app(settings, embedder=embedder)) as client:
        yield client


async def test_fulltext_fallback_is_reported_and_searches(fulltext_client: httpx.AsyncClient) -> None:
    info = (await graphql_ok(fulltext_client, "{ serverInfo { keywordBackend keywordBackendNote } }"))["serverInfo"]
    assert info["keywordBackend"] == "FULLTEXT"
    assert "pg_textsearch" in info["keywordBackendNote"]
    query = """query { search(query: "bank robbery heist crew", first: 5, options: {mode: KEYWORD}) {
        hits { document { tags } scores { keyword keywordRank } } } }"""
    hits = (await graphql_ok(fulltext_client, query))["search"]["hits"]
    assert hits and all(h["scores"]["keyword"] > 0 for h in hits)
    assert "heist" in hits[0]["document"]["tags"]


def test_production_refuses_default_secret() -> None:
    with pytest.raises(ValueError, match="RAGQL_JWT_SECRET"):
        Settings(env="production", database_url="postgresql://x@localhost/db")
    with pytest.raises(ValueError, match="at least 32"):
        Settings(env="production", database_url="postgresql://x@localhost/db", jwt_secret="short")
    ok = Settings(env="production", database_url="postgresql://x@localhost/db", jwt_secret="k" * 40)
    assert ok.env == "production"
