"""pg_textsearch is weak on updates and deletes (retrieval-notes, trap 6). After re-ingesting
and deleting documents, the index's top-k must equal a brute-force scoring of the live rows."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from domain.documents import service as documents
from domain.documents.validation import DocumentInput
from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder
from domain.retrieval.tenant_index import chunk_partition, keyword_index
from tests.conftest import ingest_docs

TOPICS = ["volcano eruption lava", "coral reef fish", "desert camel caravan", "glacier ice melt", "rainforest frogs"]


def top_k_sql(tenant: str) -> str:
    """The tenant's partition and its own BM25 index, as keyword search reads them."""
    score = f"c.search_text <@> to_bm25query(:q, '{keyword_index(tenant)}')"
    # Scores are per tenant, so equal chunks tie exactly: the text breaks ties the same way on both paths.
    part = chunk_partition(tenant)
    return f"SELECT c.text, {score} FROM {part} c ORDER BY {score}, c.text LIMIT 10"  # noqa: S608 (hex names)


async def top_k(db: Database, tenant: str, query: str, *, index: bool) -> list[str]:
    """The same query, forced through the BM25 index or through a sequential scan and sort. As the
    owner: the app role's row-level security qual would let the primary key compete as an index."""
    sql = top_k_sql(tenant)
    async with db.engine.begin() as s:
        await s.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
        await s.execute(text("SET LOCAL enable_bitmapscan = off"))
        await s.execute(text(f"SET LOCAL enable_seqscan = {'off' if index else 'on'}"))
        await s.execute(text(f"SET LOCAL enable_indexscan = {'on' if index else 'off'}"))
        plan = "\n".join((await s.execute(text("EXPLAIN " + sql), {"q": query})).scalars())
        assert (f"Index Scan using {keyword_index(tenant)}" in plan) == index, plan
        rows = (await s.execute(text(sql), {"q": query})).all()
    # The index returns matching chunks only; a brute-force scan also scores the rest 0.
    return [chunk_text for chunk_text, score in rows if score < 0]


async def test_bm25_index_matches_brute_force_after_churn(db: Database, embedder: LocalEmbedder, tenant: str) -> None:
    async def put(inputs: list[DocumentInput]) -> documents.IngestOutcome:
        return await ingest_docs(db, embedder, tenant, inputs)

    tag = uuid.uuid4().hex[:6]
    first = [
        DocumentInput(title=f"Doc {i}", text=f"Notes {tag} on {TOPICS[i % 5]} number {i}.", external_id=f"d{i}")
        for i in range(30)
    ]
    out = await put(first)
    # churn: rewrite a third, delete a third
    await put(
        [
            DocumentInput(
                title=f"Doc {i}", text=f"Rewritten {tag}: {TOPICS[(i + 2) % 5]} report {i}.", external_id=f"d{i}"
            )
            for i in range(0, 30, 3)
        ]
    )
    for ingested in out.documents[1::3]:
        await documents.delete(db=db, tenant_id=tenant, document_id=ingested.document.id)

    for query in (f"{tag} volcano lava", "coral reef", "glacier melt report"):
        from_index = await top_k(db, tenant, query, index=True)
        assert from_index, query  # the comparison cannot pass on two empty lists
        assert from_index == await top_k(db, tenant, query, index=False), query
