"""The query log written behind the response (domain/retrieval/query_log.py): batched, in each
tenant's own transaction, and never lost silently. And the bare asyncpg reads a search makes
(domain/retrieval/reads.py) give the rows the ORM gives."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import col, select

from domain.documents.validation import DocumentInput
from domain.persistence.database import APP_ROLE, Database
from domain.persistence.tables import Document, utcnow
from domain.providers.embedding import LocalEmbedder
from domain.retrieval.query_log import QueryLogWriter
from domain.retrieval.reads import RawReads, positional
from domain.tenancy import ensure_tenant
from tests.conftest import ingest_docs


def _row(tenant: str, query: str = "lonely robot") -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "tenant_id": tenant,
        "query": query,
        "mode": "HYBRID",
        "options": {"first": 10},
        "result_count": 0,
        "document_ids": [],
        "took_ms": 1.5,
        "created_at": utcnow(),
    }


async def _stored(db: Database, tenant: str) -> set[uuid.UUID]:
    async with db.session(tenant) as s:
        return {r[0] for r in (await s.execute(text("SELECT id FROM query_log WHERE tenant_id = :t"), {"t": tenant}))}


async def test_rows_queued_for_two_tenants_are_stored_each_in_its_own_tenant_after_flush(db: Database) -> None:
    # given
    a, b = f"ql-a-{uuid.uuid4().hex[:8]}", f"ql-b-{uuid.uuid4().hex[:8]}"
    for tenant in (a, b):
        await ensure_tenant(db, tenant)
    writer = QueryLogWriter(db)
    rows = [_row(a), _row(b), _row(a)]
    # when
    for row in rows:
        writer.add(row)  # returns at once: nothing awaited on the caller's path
    await writer.flush()
    # then: RLS lets each tenant see exactly its own rows, so each went in under its own tenant
    assert await _stored(db, a) == {rows[0]["id"], rows[2]["id"]}
    assert await _stored(db, b) == {rows[1]["id"]}
    assert writer.dropped == 0
    await writer.aclose()


async def test_a_row_the_database_refuses_is_counted_and_logged_and_the_others_are_stored(
    db: Database, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    # given: PostgreSQL refuses a NUL in text, so the batch fails, on every retry
    writer = QueryLogWriter(db, retry_delays_s=(0.01,))
    good, bad, also_good = _row(tenant), _row(tenant, "nul \x00 here"), _row(tenant)
    # when
    with caplog.at_level(logging.ERROR, logger="ragql.query_log"):
        for row in (good, bad, also_good):
            writer.add(row)
        await writer.flush()
    # then
    assert await _stored(db, tenant) == {good["id"], also_good["id"]}
    assert writer.dropped == 1
    assert any("1 rows not stored" in r.getMessage() for r in caplog.records)
    await writer.aclose()


async def test_a_full_queue_refuses_rows_loudly_instead_of_growing(
    db: Database, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    writer = QueryLogWriter(db, max_pending=2)
    with caplog.at_level(logging.ERROR, logger="ragql.query_log"):
        for _ in range(3):  # no await between: the writer task has not run yet
            writer.add(_row(tenant))
    assert writer.dropped == 1
    assert any("queue is full" in r.getMessage() for r in caplog.records)
    await writer.flush()
    assert len(await _stored(db, tenant)) == 2
    await writer.aclose()


def test_named_parameters_become_asyncpg_positions_and_casts_stay() -> None:
    sql = "SELECT CAST(:qv AS vector), :tenant, x::jsonb FROM t WHERE a = :tenant AND b <=> CAST(:qv AS vector)"
    converted, names = positional(sql)
    assert converted == "SELECT CAST($1 AS vector), $2, x::jsonb FROM t WHERE a = $2 AND b <=> CAST($1 AS vector)"
    assert names == ("qv", "tenant")


async def test_raw_document_reads_equal_the_orms(db: Database, embedder: LocalEmbedder, tenant: str) -> None:
    docs = [
        DocumentInput(title="A film", text="Robots on a lagoon.", metadata={"genre": "drama", "year": 1999}),
        DocumentInput(title="Another", text="Nothing at all."),
    ]
    ids = [d.document.id for d in (await ingest_docs(db, embedder, tenant, docs)).documents]
    async with db.connection(tenant) as conn:
        raw = await RawReads(conn).documents(tenant, ids)
    async with db.session(tenant) as s:
        orm = {d.id: d for d in (await s.execute(select(Document).where(col(Document.id).in_(ids)))).scalars()}
    assert set(raw) == set(orm) == set(ids)
    for doc_id in ids:
        assert raw[doc_id].model_dump() == orm[doc_id].model_dump()
        assert type(raw[doc_id].id) is uuid.UUID


async def test_the_bare_connection_runs_as_the_app_role_for_its_tenant_and_leaves_nothing_behind(
    db: Database, tenant: str
) -> None:
    async with db.connection(tenant) as conn:
        role, scoped, ef = await conn.fetchrow(
            "SELECT current_user, current_setting('ragql.tenant_id'), current_setting('hnsw.ef_search')"
        )
        other = await conn.fetchval("SELECT count(*) FROM documents WHERE tenant_id <> $1", tenant)
    assert (role, scoped, ef) == (APP_ROLE, tenant, str(db.hnsw_ef_search))
    assert other == 0  # row-level security, not the WHERE clause
    with pytest.raises(RuntimeError):
        async with db.connection(tenant) as conn:
            raise RuntimeError("the request failed")
    # Every connection of the pool again: the role and the tenant ended with their transactions.
    pool = db._raw_pool
    assert pool is not None
    async with pool.acquire() as conn:
        role, scoped = await conn.fetchrow("SELECT current_user, current_setting('ragql.tenant_id', true)")
        assert role != APP_ROLE and not scoped and not conn.is_in_transaction()
