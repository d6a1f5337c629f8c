"""pg_textsearch is weak on updates and deletes (retrieval-notes, trap 6). After re-ingesting
and deleting documents, the index's top-k must equal a brute-force scoring of the live rows."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from domain.documents import service as documents
from domain.documents.validation import DocumentInput
from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder
from tests.conftest import ingest_docs

TOPICS = ["volcano eruption lava", "coral reef fish", "desert camel caravan", "glacier ice melt", "rainforest frogs"]


TOP_K = (
    "SELECT c.text FROM chunks c WHERE c.tenant_id = :t "
    "ORDER BY c.search_text <@> to_bm25query(:q, 'chunks_bm25_idx') LIMIT 10"
)


async def top_k(db: Database, tenant: str, query: str, *, index: bool) -> list[str]:
    """The same query, forced through the BM25 index or through a sequential scan and sort."""
    async with db.session(tenant) as s:
        await s.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
        await s.execute(text("SET LOCAL enable_bitmapscan = off"))
        await s.execute(text(f"SET LOCAL enable_seqscan = {'off' if index else 'on'}"))
        await s.execute(text(f"SET LOCAL enable_indexscan = {'on' if index else 'off'}"))
        plan = "\n".join((await s.execute(text("EXPLAIN " + TOP_K), {"t": tenant, "q": query})).scalars())
        assert ("chunks_bm25_idx" in plan and "Index Scan" in plan) == index, plan
        rows = await s.execute(text(TOP_K), {"t": tenant, "q": query})
        return list(rows.scalars())


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
        assert await top_k(db, tenant, query, index=True) == await top_k(db, tenant, query, index=False), query
