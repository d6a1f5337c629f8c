"""Keyword scores depend on the tenant's own documents only (issue 13, failure 3).

The probe's oracle: tenant L's keyword scores, to the last digit, and its ranking, for a set of
queries, do not change when tenant V stores 150 documents with the same words, nor when V
stores a one-word memo and deletes it again. Run through the product's search, for BM25 and for
the built-in full-text fallback."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from domain.documents import service as documents
from domain.documents.validation import DocumentInput
from domain.persistence.database import Database
from domain.persistence.migrate import migrate
from domain.providers.embedding import LocalEmbedder
from domain.retrieval.search import SearchOptions, search
from domain.retrieval.tenant_index import chunk_partition
from domain.tenancy import ensure_tenant
from tests.conftest import ingest_docs

QUERIES = [
    "glacier moraine",
    "crevasse serac",
    "glacier alpenglow",
    "glacier bergschrund",
    "alpenglow bergschrund crevasse",
    "icefall",
]
L_DOCS = [
    ("twin-a", "Field notes", "The glacier below the col had a crevasse field and an alpenglow moraine ridge."),
    ("twin-b", "Field notes", "The glacier below the col had a crevasse field and an bergschrund moraine ridge."),
    ("serac", "Serac fall", "A serac toppled into the crevasse; the icefall was loud and the glacier moved."),
    ("moraine", "Moraine walk", "We walked the lateral moraine for hours, far from any glacier tongue."),
    ("camp", "Camp", "Camp two sat on a moraine shelf, safe from the icefall and from every serac."),
]


async def fresh_database(pg_url: str, *, keyword_backend: str) -> AsyncIterator[Database]:
    """A new, migrated database on the embedded test server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    admin = Database(pg_url)
    async with admin.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    db = Database(pg_url.replace("/ragql?", f"/{name}?"))
    try:
        await migrate(db, embedding_dim=384, keyword_backend=keyword_backend)
        yield db
    finally:
        await db.dispose()
        async with admin.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture
async def fulltext_db(pg_url: str) -> AsyncIterator[Database]:
    async for database in fresh_database(pg_url, keyword_backend="fulltext"):
        yield database


Scores = dict[str, list[tuple[str, float]]]


async def keyword_scores(db: Database, tenant: str, backend: str) -> Scores:
    """Per query, L's keyword hits in rank order: (external id, keyword score)."""
    scores: Scores = {}
    for query in QUERIES:
        result = await search(
            db=db,
            tenant_id=tenant,
            query_vector=None,
            query=query,
            first=20,
            options=SearchOptions(mode="KEYWORD"),
            keyword_backend=backend,
            log=False,
        )
        scores[query] = [(str(h.document.external_id), float(h.keyword or 0.0)) for h in result.hits]
    return scores


async def assert_other_tenants_cannot_move_scores(db: Database, embedder: LocalEmbedder, backend: str) -> None:
    salt = uuid.uuid4().hex[:8]
    lessee, visitor = f"bm25-l-{salt}", f"bm25-v-{salt}"
    for tenant in (lessee, visitor):
        await ensure_tenant(db, tenant)
    await ingest_docs(db, embedder, lessee, [DocumentInput(title=t, text=x, external_id=e) for e, t, x in L_DOCS])
    before = await keyword_scores(db, lessee, backend)
    # the oracle can fail: every query matches, with scores that differ between documents
    assert all(before[q] for q in QUERIES), before
    assert len({s for hits in before.values() for _, s in hits}) > 3, before
    twins = dict(before["alpenglow bergschrund crevasse"])
    assert twins["twin-a"] == twins["twin-b"]

    # when V stores 150 documents with L's words
    flood = [
        DocumentInput(
            title=f"Report {i}",
            text=f"glacier moraine crevasse serac alpenglow icefall survey {i}",
            external_id=f"r{i}",
        )
        for i in range(150)
    ]
    for start in range(0, len(flood), 100):
        await ingest_docs(db, embedder, visitor, flood[start : start + 100])
    assert await keyword_scores(db, lessee, backend) == before

    # when V stores a one-word memo, then deletes it
    memo = await ingest_docs(
        db, embedder, visitor, [DocumentInput(title="memo", text="bergschrund", external_id="memo")]
    )
    assert await keyword_scores(db, lessee, backend) == before
    await documents.delete(db=db, tenant_id=visitor, document_id=memo.documents[0].document.id)
    assert await keyword_scores(db, lessee, backend) == before


async def test_bm25_scores_of_a_tenant_do_not_move_when_another_tenant_writes(
    db: Database, embedder: LocalEmbedder
) -> None:
    await assert_other_tenants_cannot_move_scores(db, embedder, "bm25")


async def test_fulltext_fallback_scores_do_not_move_when_another_tenant_writes(
    fulltext_db: Database, embedder: LocalEmbedder
) -> None:
    await assert_other_tenants_cannot_move_scores(fulltext_db, embedder, "fulltext")


async def test_a_tenant_partition_shows_its_rows_to_that_tenant_only(db: Database, embedder: LocalEmbedder) -> None:
    salt = uuid.uuid4().hex[:8]
    a, b = f"part-a-{salt}", f"part-b-{salt}"
    for tenant in (a, b):
        await ensure_tenant(db, tenant)
        await ingest_docs(db, embedder, tenant, [DocumentInput(title="t", text=f"Words of {tenant}.")])
    count = "SELECT count(*) FROM {}"  # the partition is named on purpose, as keyword search does
    async with db.session(a) as session:
        assert (await session.execute(text(count.format(chunk_partition(a))))).scalar_one() == 1
        assert (await session.execute(text(count.format(chunk_partition(b))))).scalar_one() == 0
    # writes go through `chunks` only
    with pytest.raises(DBAPIError, match="permission denied"):
        async with db.session(a) as session:
            await session.execute(text(f"DELETE FROM {chunk_partition(a)}"))  # noqa: S608 (hex name)
