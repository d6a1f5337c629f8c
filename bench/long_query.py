"""Long-query latency: a ~3,900-character pasted paragraph against a short query, hybrid, first=100,
through the Searching service (embedding, keyword terms, legs, fusion, snippets), demo films in a
temporary store, with the configured embedding backend (RAGQL_EMBEDDING_BACKEND, onnx-int8 by
default) warmed as `ragql serve` warms it. `python -m bench long-query`; each query is timed warm
(its vector cached), so the figure is the search path, plus one cold run (embedding included);
`next cold` is a second, different paragraph, its vector not cached either."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from api import embedded
from api.bootstrap import build_embedder
from api.settings import Settings
from domain.demo.loader import demo_documents
from domain.documents import service as documents
from domain.documents.service import ChunkingConfig
from domain.persistence.database import Database
from domain.persistence.migrate import keyword_backend, migrate
from domain.rerank.service import Reranking
from domain.retrieval import searching
from domain.retrieval.long_query import warm_up
from domain.retrieval.search import SearchOptions

TENANT = "default"
RUNS = 15


def _long_query(start: int = 5) -> str:
    films = [json.loads(line) for line in Path("domain/demo/films.jsonl").open(encoding="utf-8")]
    text = " ".join(f["text"] for f in films[start : start + 35])
    return text[:3900]


async def _time(service: searching.Searching, query: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    await service.search(TENANT, query, 100, SearchOptions())
    cold = (time.perf_counter() - t0) * 1000
    warm = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        await service.search(TENANT, query, 100, SearchOptions())
        warm.append((time.perf_counter() - t0) * 1000)
    return cold, statistics.median(warm)


async def _run(url: str) -> None:
    db = Database(url)
    try:
        embedder = build_embedder(Settings())
        await warm_up(embedder)  # as build_services does before `ragql serve` takes requests
        await migrate(db, embedding_dim=embedder.dim)
        backend = await keyword_backend(db)
        demo = demo_documents()
        ctx = documents.IngestContext(db, embedder, ChunkingConfig(), max_batch=len(demo), max_chars=10**6)
        await documents.ingest(ctx, documents.IngestRequest(TENANT, demo))
        extra: dict[str, Any] = {}
        if hasattr(searching, "TermStatistics"):
            extra["terms"] = searching.TermStatistics(db)
        service = searching.Searching(db, embedder, backend, Reranking(), None, max_query_chars=10_000, **extra)
        short = "time travel paradox"
        long = _long_query()
        s_cold, s_warm = await _time(service, short)
        l_cold, l_warm = await _time(service, long)
        print(f"bench short query ({len(short)} chars) hybrid first=100: p50={s_warm:.1f} ms (cold {s_cold:.1f} ms)")
        print(f"bench long query ({len(long)} chars) hybrid first=100: p50={l_warm:.1f} ms (cold {l_cold:.1f} ms)")
        t0 = time.perf_counter()
        await service.search(TENANT, _long_query(60), 100, SearchOptions())
        l_next = (time.perf_counter() - t0) * 1000
        print(f"bench long query, a second paragraph, cold: {l_next:.1f} ms")
        print(
            f"bench long/short p50 ratio: {l_warm / s_warm:.2f}x (cold {l_cold / s_cold:.2f}x, "
            f"next cold {l_next / s_cold:.2f}x); backend {getattr(embedder, 'backend', '?')}"
        )
    finally:
        await db.dispose()


def run_long_query_bench() -> None:
    with embedded.temporary("ragql-bench-") as (_, url):
        asyncio.run(_run(url))


if __name__ == "__main__":
    run_long_query_bench()
