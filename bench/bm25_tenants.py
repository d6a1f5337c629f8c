"""What per-tenant keyword statistics cost (migration 0005: one partition and one BM25 index per
tenant): index sizes, catalog growth, tenant creation time and keyword-search p50, with 1 tenant
and with 1,000. On a throwaway embedded PostgreSQL; vectors are random (this measures keyword
search and storage, not embedding), texts are drawn from a fixed vocabulary.

    python -m bench bm25-tenants [--tenants 1000] [--small 20] [--big 2000]    (make bench-tenants)

Takes about two and a half minutes at 1,000 tenants on two cores.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

import numpy as np
from sqlalchemy import text

from api import embedded
from bench.stats import percentile
from domain.persistence.database import Database
from domain.persistence.migrate import migrate
from domain.retrieval.search import SearchOptions, build_sql, search
from domain.retrieval.tenant_index import keyword_index
from domain.tenancy import ensure_tenant

DIM = 384
VOCAB = [f"w{i}" for i in range(3000)] + ["glacier", "moraine", "crevasse", "serac", "icefall"]
QUERIES = ["glacier moraine", "crevasse serac icefall", "w17 w230 glacier", "w5 w6 w7 w8", "moraine w999"]
SEARCHES = 200

_DOC = text(
    "INSERT INTO documents (id, tenant_id, title, text, content_hash, chunk_count) VALUES (:d, :t, :x, :x, md5(:x), 1)"
)
_CHUNK = text(
    "INSERT INTO chunks (id, tenant_id, document_id, ordinal, text, search_text, token_count, embedding) "
    "VALUES (:c, :t, :d, 0, :x, :x, 40, :v)"
)


def _texts(rng: random.Random, n: int) -> list[str]:
    # Zipf-ish: a few words are common, most are rare, like real text.
    weights = [1.0 / (i + 1) for i in range(len(VOCAB))]
    return [" ".join(rng.choices(VOCAB, weights, k=40)) for _ in range(n)]


async def _fill(db: Database, tenant: str, texts: list[str], rng: np.random.Generator) -> None:
    """One transaction per tenant: pg_textsearch 1.0 lets one transaction write < ~200 BM25 indexes."""
    async with db.session(tenant) as session:
        for chunk_text in texts:
            doc = uuid.uuid4()
            await session.execute(_DOC, {"d": doc, "t": tenant, "x": chunk_text})
            vector = rng.standard_normal(DIM).astype(np.float32)
            await session.execute(_CHUNK, {"c": uuid.uuid4(), "t": tenant, "d": doc, "x": chunk_text, "v": vector})


async def _search_p50(db: Database, tenant: str) -> float:
    took: list[float] = []
    for i in range(SEARCHES):
        started = time.perf_counter()
        await search(
            db=db,
            tenant_id=tenant,
            query_vector=None,
            query=QUERIES[i % len(QUERIES)],
            first=10,
            options=SearchOptions(mode="KEYWORD"),
            keyword_backend="bm25",
            log=False,
        )
        took.append((time.perf_counter() - started) * 1000)
    return percentile(took[len(QUERIES) :], 50)  # the first round warms plans and caches


async def _sql_p50(db: Database, tenant: str) -> float:
    """The keyword statement alone (one transaction each): what the database spends."""
    sql = text(build_sql("KEYWORD", "bm25", "", tenant))
    took: list[float] = []
    for i in range(SEARCHES):
        started = time.perf_counter()
        async with db.session(tenant) as session:
            await session.execute(sql, {"qt": QUERIES[i % len(QUERIES)], "tenant": tenant, "k": 20})
        took.append((time.perf_counter() - started) * 1000)
    return percentile(took[len(QUERIES) :], 50)


async def _p50s(db: Database, tenant: str) -> tuple[float, float]:
    return await _search_p50(db, tenant), await _sql_p50(db, tenant)


async def _sizes(db: Database) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    """
                    SELECT count(*) FILTER (WHERE a.amname = 'bm25') AS bm25_indexes,
                           coalesce(sum(pg_relation_size(c.oid)) FILTER (WHERE a.amname = 'bm25'), 0) AS bm25_bytes,
                           coalesce(sum(pg_relation_size(c.oid)) FILTER (WHERE a.amname = 'hnsw'), 0) AS hnsw_bytes,
                           (SELECT count(*) FROM pg_class) AS pg_class_rows,
                           (SELECT sum(pg_total_relation_size(r)) FROM unnest(ARRAY['pg_class', 'pg_attribute',
                                'pg_index', 'pg_depend', 'pg_inherits', 'pg_constraint', 'pg_policy', 'pg_type']
                                ::regclass[]) r) AS catalog_bytes,
                           pg_database_size(current_database()) AS database_bytes
                      FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE c.relkind = 'i'
                    """
                )
            )
        ).one()
        chunks_total = (
            await conn.execute(
                text(
                    "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'chunks'::regclass"
                )
            )
        ).scalar()
    return {**row._mapping, "chunks_total_bytes": int(chunks_total or 0)}


async def _memtable(db: Database, tenant: str) -> str:
    """New rows sit in the index's memtable (shared memory) until it spills: pg_relation_size
    does not see them."""
    async with db.engine.connect() as conn:
        summary = str((await conn.execute(text(f"SELECT bm25_summarize_index('{keyword_index(tenant)}')"))).scalar())
    keep = ("total_docs", "DSA total size", "documents:", "on-disk")
    return "; ".join(line.strip() for line in summary.splitlines() if line.strip().startswith(keep))


async def _spill_all(db: Database) -> None:
    async with db.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        names = (
            await conn.execute(
                text(
                    "SELECT c.relname FROM pg_class c JOIN pg_am a ON a.oid = c.relam "
                    "WHERE a.amname = 'bm25' AND c.relkind = 'i'"
                )
            )
        ).scalars()
        for name in list(names):
            await conn.execute(text("SELECT bm25_spill_index(:i)"), {"i": name})


def _show(label: str, sizes: dict[str, Any], p50: tuple[float, float]) -> None:
    mib = 1024 * 1024
    print(
        f"{label}: {sizes['bm25_indexes']} BM25 indexes (one per tenant, 'default' included), "
        f"BM25 {sizes['bm25_bytes'] / mib:.1f} MiB, HNSW {sizes['hnsw_bytes'] / mib:.1f} MiB, "
        f"chunks with all indexes {sizes['chunks_total_bytes'] / mib:.1f} MiB, "
        f"catalog {sizes['catalog_bytes'] / mib:.1f} MiB ({sizes['pg_class_rows']} pg_class rows), "
        f"database {sizes['database_bytes'] / mib:.1f} MiB; big tenant, {SEARCHES} searches: "
        f"keyword search() p50 {p50[0]:.2f} ms, its SQL statement alone p50 {p50[1]:.2f} ms"
    )


async def run(tenants: int, small: int, big: int) -> None:
    rng, vectors = random.Random(7), np.random.default_rng(7)
    with embedded.temporary("ragql-bench-bm25-") as (_, url):
        db = Database(url)
        try:
            await migrate(db, embedding_dim=DIM)
            await ensure_tenant(db, "big")
            await _fill(db, "big", _texts(rng, big), vectors)
            _show("1 tenant", await _sizes(db), await _p50s(db, "big"))

            created, filled = [], []
            for i in range(tenants - 1):
                tenant = f"t{i:04d}"
                started = time.perf_counter()
                await ensure_tenant(db, tenant)
                created.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                await _fill(db, tenant, _texts(rng, small), vectors)
                filled.append((time.perf_counter() - started) * 1000)
            print(
                f"tenant creation (row + partition + 4 indexes): p50 {percentile(created, 50):.1f} ms, "
                f"max {max(created):.1f} ms; writing {small} chunks: p50 {percentile(filled, 50):.1f} ms"
            )
            _show(f"{tenants} tenants", await _sizes(db), await _p50s(db, "big"))
            small_p50 = await _p50s(db, "t0500" if tenants > 501 else "big")
            print(
                f"{tenants} tenants, a small tenant ({small} chunks): keyword search() p50 {small_p50[0]:.2f} ms, "
                f"its SQL statement alone p50 {small_p50[1]:.2f} ms"
            )
            print("big tenant's index:", await _memtable(db, "big"))
            await _spill_all(db)
            _show(f"{tenants} tenants, every memtable spilled to disk", await _sizes(db), await _p50s(db, "big"))
        finally:
            await db.dispose()


def run_tenant_bench(tenants: int, small: int, big: int) -> None:
    asyncio.run(run(tenants, small, big))
