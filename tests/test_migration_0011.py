"""Migration 0011 stores chunk vectors as halfvec: a populated store at 0007 keeps its chunks, each
tenant's partition (and any made later) gets the new type and a halfvec HNSW index, and dense
search still finds a document by its own text through that index."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from domain.documents.validation import DocumentInput
from domain.persistence.database import Database
from domain.persistence.migrate import migrate
from domain.providers.embedding import LocalEmbedder
from domain.retrieval.search import SearchOptions, search
from domain.retrieval.tenant_index import chunk_partition
from domain.tenancy import ensure_tenant
from tests.conftest import ingest_docs
from tests.test_migration_0005 import store_at

TYPE = (
    "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
    "WHERE attrelid = CAST(:rel AS regclass) AND attname = 'embedding'"
)
OPCLASSES = (
    "SELECT DISTINCT o.opcname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "JOIN pg_am a ON a.oid = c.relam AND a.amname = 'hnsw' JOIN pg_opclass o ON o.oid = i.indclass[0] "
    "WHERE i.indrelid = CAST(:rel AS regclass)"
)


@pytest.fixture
async def store_at_0007(pg_url: str) -> AsyncIterator[Database]:
    async with store_at(pg_url, "0007") as db:
        yield db


async def _type_and_opclasses(db: Database, rel: str) -> tuple[str, list[str]]:
    async with db.engine.connect() as conn:
        kind = (await conn.execute(text(TYPE), {"rel": rel})).scalar_one()
        ops = sorted((await conn.execute(text(OPCLASSES), {"rel": rel})).scalars().all())
    return kind, ops


async def test_0011_converts_populated_partitions_to_halfvec(store_at_0007: Database, embedder: LocalEmbedder) -> None:
    db = store_at_0007
    await ensure_tenant(db, "t-old")
    docs = [
        DocumentInput(title="Glaciers", text="Icefall and crevasses on alpine glaciers move a metre a day."),
        DocumentInput(title="Baking", text="Sourdough bread rises slowly with wild yeast and lactobacilli."),
    ]
    await ingest_docs(db, embedder, "t-old", docs)
    assert await _type_and_opclasses(db, chunk_partition("t-old")) == ("vector(384)", ["vector_cosine_ops"])

    await migrate(db, embedding_dim=384)
    await db.engine.dispose()  # connections opened before the type change cache the old codec

    for rel in ("chunks", chunk_partition("t-old")):
        assert await _type_and_opclasses(db, rel) == ("halfvec(384)", ["halfvec_cosine_ops"])
    await ensure_tenant(db, "t-new")
    assert await _type_and_opclasses(db, chunk_partition("t-new")) == ("halfvec(384)", ["halfvec_cosine_ops"])

    # Ingest writes float vectors into the halfvec column, and the dense leg reads it by index.
    await ingest_docs(db, embedder, "t-new", [DocumentInput(title="Volcanoes", text="Basalt lava flows and ash.")])
    for tenant, query, title in (("t-old", "sourdough yeast", "Baking"), ("t-new", "lava and ash", "Volcanoes")):
        res = await search(
            db=db,
            tenant_id=tenant,
            query_vector=await embedder.embed_query(query),
            query=query,
            first=1,
            options=SearchOptions(mode="DENSE"),
            keyword_backend="bm25",
            log=False,
        )
        assert [h.document.title for h in res.hits] == [title]
    async with db.engine.begin() as conn:
        # Two rows: only with sequential scans off does the plan show the index can serve the cast.
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            (
                await conn.execute(
                    text(
                        f"EXPLAIN SELECT id FROM {chunk_partition('t-old')} c "  # noqa: S608 (hex name)
                        "ORDER BY c.embedding <=> CAST(:v AS vector) LIMIT 5"
                    ),
                    {"v": await embedder.embed_query("glacier")},
                )
            ).scalars()
        )
    assert "Index Scan using" in plan  # its only index on embedding is the halfvec HNSW one
