"""`make bench`: figures, not assertions. Runs on a temporary embedded store, loopback only."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

from api import embedded
from api.bootstrap import DEFAULT_TENANT
from bench.recs import bench_feedback_and_recs
from bench.recs_scale import bench_recs_at_scale
from bench.stats import percentile
from domain.answers.extractive import ExtractiveGenerator
from domain.answers.service import Answering, AnswerRequest, Delta
from domain.demo.loader import demo_documents
from domain.documents import service as documents
from domain.documents.service import ChunkingConfig
from domain.persistence.database import Database
from domain.persistence.migrate import keyword_backend, migrate
from domain.providers.embedding import LocalEmbedder
from domain.rerank.service import Reranking
from domain.retrieval.search import SearchOptions, search

QUERIES = [
    "time travel paradox",
    "a heist that goes wrong",
    "haunted house with a family",
    "coming of age summer",
    "robots and artificial intelligence",
    "courtroom drama about justice",
    "animated film about friendship",
    "space exploration survival",
]


async def _run(url: str) -> None:
    db = Database(url)
    try:
        embedder = LocalEmbedder()
        await migrate(db, embedding_dim=embedder.dim)
        backend = await keyword_backend(db)
        demo = demo_documents()

        async def ingest_demo() -> tuple[int, float]:
            started = time.perf_counter()
            ctx = documents.IngestContext(db, embedder, ChunkingConfig(), max_batch=len(demo), max_chars=10**6)
            out = await documents.ingest(ctx, documents.IngestRequest(DEFAULT_TENANT, demo))
            return out.chunks_embedded, time.perf_counter() - started

        chunks, elapsed = await ingest_demo()
        print(
            f"bench ingest demo: {len(demo)} docs, {chunks} chunks in {elapsed:.2f}s = {chunks / elapsed:.1f} chunks/s"
        )
        _, elapsed = await ingest_demo()
        print(f"bench re-ingest unchanged: {elapsed * 1000:.0f} ms for {len(demo)} docs")
        for q in QUERIES:
            await embedder.embed_query(q)  # warm the query-vector cache: this measures the database path
        for mode in ("KEYWORD", "DENSE", "HYBRID"):
            samples: list[float] = []
            for _ in range(25):
                for q in QUERIES:
                    vector = await embedder.embed_query(q)
                    t0 = time.perf_counter()
                    await search(
                        db=db,
                        tenant_id=DEFAULT_TENANT,
                        query_vector=vector,
                        query=q,
                        first=10,
                        options=SearchOptions(mode=mode),
                        keyword_backend=backend,
                    )
                    samples.append((time.perf_counter() - t0) * 1000)
            print(
                f"bench search {mode.lower()} first=10: p50={percentile(samples, 50):.2f} ms "
                f"p95={percentile(samples, 95):.2f} ms (n={len(samples)}, incl. query-log write)"
            )
        cold: list[float] = []
        for i in range(40):
            t0 = time.perf_counter()
            await embedder.embed_query(f"uncached query number {i} about films")
            cold.append((time.perf_counter() - t0) * 1000)
        print(f"bench query embedding (uncached): p50={percentile(cold, 50):.2f} ms p95={percentile(cold, 95):.2f} ms")
        await _bench_answers(db, embedder, backend, [d.title for d in demo])
        await bench_feedback_and_recs(db, embedder, DEFAULT_TENANT, percentile)
        await bench_recs_at_scale(db, embedder, percentile)
    finally:
        await db.dispose()


async def _bench_answers(db: Database, embedder: LocalEmbedder, backend: str, titles: list[str]) -> None:
    """Time to the first AnswerDelta, server side, default (extractive) generator: from the start
    of `prepare` (validation, query embedding, retrieval, sentence scoring) to the first text."""
    answering = Answering(
        db=db,
        embedder=embedder,
        keyword_backend=backend,
        reranking=Reranking(),
        extractive=ExtractiveGenerator(embedder),
    )
    questions = [f"What happens in {title}?" for title in titles[:50]]
    first_delta: list[float] = []
    total: list[float] = []
    for question in questions:
        t0 = time.perf_counter()
        prepared = await answering.prepare(DEFAULT_TENANT, AnswerRequest(question=question))
        async with aclosing(answering.events(DEFAULT_TENANT, prepared)) as events:
            async for event in events:
                if isinstance(event, Delta) and len(first_delta) == len(total):
                    first_delta.append((time.perf_counter() - t0) * 1000)
        total.append((time.perf_counter() - t0) * 1000)
    print(
        f"bench answer first delta (extractive, {len(questions)} questions, cold caches): "
        f"p50={percentile(first_delta, 50):.1f} ms p95={percentile(first_delta, 95):.1f} ms; "
        f"whole answer incl. storing it: p50={percentile(total, 50):.1f} ms p95={percentile(total, 95):.1f} ms"
    )


def run_bench() -> None:
    with embedded.temporary("ragql-bench-") as (_, url):
        asyncio.run(_run(url))
    from bench.security import run_security_bench

    run_security_bench()
