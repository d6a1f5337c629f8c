"""Migration 0005 moves a populated store's chunks into one partition per tenant, with the rows
intact and each tenant's keyword index holding that tenant's chunks only."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from domain.documents.validation import DocumentInput
from domain.persistence.database import Database
from domain.persistence.migrate import MIGRATIONS, migrate
from domain.providers.embedding import LocalEmbedder
from domain.retrieval.search import SearchOptions, search
from domain.retrieval.tenant_index import keyword_index
from domain.tenancy import ensure_tenant
from tests.conftest import ingest_docs


def _upgrade_to(conn: Connection, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    cfg.attributes["embedding_dim"] = 384
    cfg.attributes["keyword_backend"] = "auto"
    command.upgrade(cfg, revision)


@contextlib.asynccontextmanager
async def store_at(pg_url: str, revision: str) -> AsyncIterator[Database]:
    """A database of its own, migrated up to `revision` only, dropped afterwards: the state a
    later migration's test starts from. Shared with the other migration tests."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    admin = Database(pg_url)
    async with admin.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    db = Database(pg_url.replace("/ragql?", f"/{name}?"))
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_upgrade_to, revision)
        await db.enable_vector_codec()
        yield db
    finally:
        await db.dispose()
        async with admin.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture
async def store_at_0004(pg_url: str) -> AsyncIterator[Database]:
    async with store_at(pg_url, "0004") as db:
        yield db


async def test_upgrade_moves_every_chunk_into_its_tenants_partition(
    store_at_0004: Database, embedder: LocalEmbedder
) -> None:
    db = store_at_0004
    tenants = {"north": "glacier moraine crevasse", "south": "glacier desert dune"}
    for tenant, words in tenants.items():
        await ensure_tenant(db, tenant)
        docs = [DocumentInput(title=f"{tenant} {i}", text=f"{words} number {i}.") for i in range(5)]
        await ingest_docs(db, embedder, tenant, docs)
    async with db.engine.connect() as conn:
        before = sorted((await conn.execute(text("SELECT id, tenant_id, text FROM chunks"))).all())

    await migrate(db, embedding_dim=384)

    async with db.engine.connect() as conn:
        after = sorted((await conn.execute(text("SELECT id, tenant_id, text FROM chunks"))).all())
        assert after == before and len(after) == 10
        for tenant in tenants:
            summary = (await conn.execute(text(f"SELECT bm25_summarize_index('{keyword_index(tenant)}')"))).scalar()
            assert "total_docs: 5" in str(summary), summary
    result = await search(
        db=db,
        tenant_id="north",
        query_vector=None,
        query="glacier",
        first=10,
        options=SearchOptions(mode="KEYWORD"),
        keyword_backend="bm25",
        log=False,
    )
    assert sorted(h.document.title for h in result.hits) == [f"north {i}" for i in range(5)]
