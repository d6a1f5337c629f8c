"""`make eval`: BEIR SciFact through the same ingest and search code the API uses.

The corpus is ingested (as ingestion jobs, like `ragql ingest`) into a cached embedded store
(`.ragql-eval/`): ingest is idempotent, so a second run finds every document unchanged and embeds
nothing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from domain.documents.service import ChunkingConfig
from domain.documents.validation import DocumentInput
from domain.evaluation.beir import load_beir
from domain.evaluation.metrics import ndcg_at_k, recall_at_k
from domain.feedback.profiles import LearningConfig
from domain.jobs import store as job_store
from domain.jobs.items import document_items
from domain.jobs.model import MAX_JOB_ITEMS, Job, JobKind, JobState
from domain.persistence.database import Database
from domain.persistence.migrate import check_embedding_model, keyword_backend, migrate
from domain.providers.embedding import Embedder
from domain.retrieval.fusion import FusionMethod, fuse
from domain.retrieval.index_health import ensure_bm25_healthy
from domain.retrieval.search import SearchOptions, fetch_legs, leg_query, search
from domain.tenancy import ensure_tenant

TENANT = "default"


def load(dataset: Path, split: str) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, dict[str, int]]]:
    """The served BEIR loader (domain/evaluation/beir.py), as the benches' plain dicts."""
    beir = load_beir(dataset, split)
    corpus = [{"_id": d.id, "title": d.title, "text": d.text} for d in beir.corpus]
    return corpus, beir.queries, beir.qrels


async def ingest_corpus(
    db: Database, embedder: Embedder, corpus: list[dict[str, Any]], chunking: ChunkingConfig
) -> None:
    """Through the job path `ragql ingest` and ASYNC ingests take: the corpus becomes jobs (10,000
    documents each), run here by a worker of this process until the queue is empty."""
    from api.worker import Worker, WorkerConfig, WorkerDeps

    await ensure_tenant(db, TENANT)
    inputs = [
        DocumentInput(title=d["title"] or d["_id"], text=d["text"] or d["title"], external_id=d["_id"]) for d in corpus
    ]
    items = document_items(inputs, "documents", max_chars=10**7)
    started = time.perf_counter()
    jobs = [
        await job_store.create(
            db, TENANT, JobKind.DOCUMENTS, items[i : i + MAX_JOB_ITEMS], created_by="eval", field_prefix="documents"
        )
        for i in range(0, len(items), MAX_JOB_ITEMS)
    ]
    bar = tqdm(total=len(corpus), unit="doc", desc="ingest scifact")
    seen: dict[Any, tuple[int, int]] = {}

    def progress(job: Job) -> None:
        done = seen.get(job.id, (0, 0))[0]
        seen[job.id] = (job.items_done, job.chunks_embedded)
        embedded = sum(c for _, c in seen.values())
        bar.set_postfix(chunks=embedded, chunks_per_s=f"{embedded / (time.perf_counter() - started):.1f}")
        bar.update(job.items_done - done)

    deps = WorkerDeps(db, embedder, chunking, 10**7, LearningConfig(), on_progress=progress)
    await Worker(deps, WorkerConfig(concurrency=1, poll_s=0.5)).run(drain=True)
    bar.close()
    elapsed = time.perf_counter() - started
    finished = [await job_store.get(db, TENANT, job.id) for job in jobs]
    failed = sum(job.failed for job in finished)
    if failed or any(job.state is not JobState.SUCCEEDED for job in finished):
        errors = await job_store.errors(db, TENANT, finished[0].id, first=3)
        raise RuntimeError(f"ingest errors ({failed} failed): {[e.message for e in errors]}")
    embedded = sum(job.chunks_embedded for job in finished)
    if embedded:
        print(f"ingest: {embedded} chunks embedded in {elapsed:.1f}s = {embedded / elapsed:.1f} chunks/s")
    else:
        print(f"ingest: cached, nothing to embed ({elapsed:.1f}s)")


async def run_eval(
    *,
    embedder: Embedder,
    database_url: str,
    dataset: Path,
    split: str,
    sweep: bool,
    chunk_tokens: int,
    overlap_tokens: int,
) -> None:
    db = Database(database_url)
    try:
        await migrate(db, embedding_dim=embedder.dim)
        await check_embedding_model(db, model=embedder.name, dim=embedder.dim)
        backend = await keyword_backend(db)
        corpus, queries, qrels = load(dataset, split)
        await ingest_corpus(db, embedder, corpus, ChunkingConfig(chunk_tokens, overlap_tokens))
        health = await ensure_bm25_healthy(db, backend)
        if health.repaired:
            print(f"bm25 index was unhealthy after a restart; rebuilt in {health.repair_seconds:.1f}s")
        ext = await _external_ids(db)
        qids = sorted(qrels)
        vectors = {q: await embedder.embed_query(queries[q]) for q in qids}
        if sweep:
            await _sweep(db, backend, qids, queries, vectors, qrels, ext)
            return
        for mode in ("KEYWORD", "DENSE", "HYBRID"):
            ndcg, recall = 0.0, 0.0
            for q in qids:
                res = await search(
                    db=db,
                    tenant_id=TENANT,
                    query_vector=vectors[q],
                    query=queries[q],
                    first=100,
                    options=SearchOptions(mode=mode),
                    keyword_backend=backend,
                    log=False,
                )
                ranked = [h.document.external_id or "" for h in res.hits]
                ndcg += ndcg_at_k(ranked, qrels[q], 10)
                recall += recall_at_k(ranked, qrels[q], 100)
            print(
                f"scifact {mode.lower()} ndcg@10={ndcg / len(qids):.4f} recall@100={recall / len(qids):.4f}",
                flush=True,
            )
    finally:
        await db.dispose()


async def _external_ids(db: Database) -> dict[Any, str]:
    from sqlalchemy import text

    async with db.session(TENANT) as s:
        rows = await s.execute(text("SELECT id, external_id FROM documents WHERE tenant_id = :t"), {"t": TENANT})
        return {i: e for i, e in rows.all()}


async def _sweep(
    db: Database,
    backend: str,
    qids: list[str],
    queries: dict[str, str],
    vectors: dict[str, Any],
    qrels: dict[str, dict[str, int]],
    ext: dict[Any, str],
) -> None:
    """Fetch both legs once per query, then fuse offline for every setting in the grid."""
    legs = {}
    for q in qids:
        sql, params = leg_query("HYBRID", backend, TENANT, queries[q], vectors[q], 200, None)
        async with db.session(TENANT) as s:
            got = await fetch_legs(s, sql, params)
        legs[q] = (
            {d: v for d, (v, _) in got.best["dense"].items()},
            {d: v for d, (v, _) in got.best["keyword"].items()},
        )
    methods: list[FusionMethod] = ["RRF", "RELATIVE_SCORE", "ZSCORE"]
    for method in methods:
        for alpha in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
            ndcg = 0.0
            for q in qids:
                fused = fuse(legs[q][0], legs[q][1], method=method, alpha=alpha)
                ranked = [ext[d] for d in sorted(fused, key=lambda d: -fused[d])[:10]]
                ndcg += ndcg_at_k(ranked, qrels[q], 10)
            print(f"sweep {method} alpha={alpha:.1f} ndcg@10={ndcg / len(qids):.4f}", flush=True)


async def run_dump(*, embedder: Embedder, database_url: str, dataset: Path, out_dir: Path) -> None:
    """Store both splits' per-chunk leg results for offline tuning (bench/tuning.py)."""
    from bench.legcache import dump_legs

    db = Database(database_url)
    try:
        await db.enable_vector_codec()
        backend = await keyword_backend(db)
        await ensure_bm25_healthy(db, backend)
        ext = await _external_ids(db)
        for split in ("train", "test"):
            _, queries, qrels = load(dataset, split)
            await dump_legs(db, embedder, backend, queries, sorted(qrels), ext, out_dir / f"legs-{split}.json")
    finally:
        await db.dispose()


def judged_queries(dataset: Path, split: str) -> list[tuple[str, str]]:
    """(query id, text) of every query the split's qrels judge, in id order: what the levers run."""
    _, queries, qrels = load(dataset, split)
    return [(q, queries[q]) for q in sorted(qrels)]


async def run_bm25_sweep(*, database_url: str, dataset: Path, out_dir: Path) -> None:
    from bench.bm25_sweep import sweep_bm25

    db = Database(database_url)
    try:
        splits = {split: judged_queries(dataset, split) for split in ("train", "test")}
        await sweep_bm25(db, splits, out_dir)
    finally:
        await db.dispose()


async def run_keyword_levers(*, database_url: str, dataset: Path, out_dir: Path) -> None:
    import json

    from bench.keyword_levers import dump_keyword_levers

    db = Database(database_url)
    try:
        await ensure_bm25_healthy(db, await keyword_backend(db))
        splits = {split: judged_queries(dataset, split) for split in ("train", "test")}
        legs = {split: json.loads((out_dir / f"legs-{split}.json").read_text()) for split in splits}
        await dump_keyword_levers(db, splits, legs, out_dir / "keyword-levers.json")
    finally:
        await db.dispose()


async def run_dense_levers(*, embedder: Embedder, database_url: str, dataset: Path, out_dir: Path) -> None:
    from bench.dense_levers import dump_dense_levers

    db = Database(database_url)
    try:
        splits = {split: judged_queries(dataset, split) for split in ("train", "test")}
        await dump_dense_levers(db, embedder, splits, out_dir / "dense-levers.json")
    finally:
        await db.dispose()


def store_tag(settings: Any) -> str:
    """The name of the cached eval store for these settings: one per chunking, embedding backend and
    ONNX export recipe, so tuning runs never mix chunk sizes and no store holds vectors of two
    model files (a new recipe changes int8 vectors slightly: it gets a store of its own)."""
    from domain.providers.onnx_export import RECIPE

    backend = settings.embedding_backend
    recipe = f"-r{RECIPE}" if backend.startswith("onnx") else ""
    return f"c{settings.chunk_tokens}o{settings.chunk_overlap_tokens}-{backend}{recipe}"


async def run_chunkings(*, embedder: Embedder, database_url: str, dataset: Path, data_dir: Path, tag: str) -> None:
    """Issue 17's chunk-size sweep (bench/chunkings.py): each dense setting embedded again into a
    store of its own, `chunkings-<backend>/`; each keyword setting indexed in the eval store's
    bench-only schema; their legs beside the stored legs."""
    from bench.chunkings import DENSE_SETTINGS, KEYWORD_SETTINGS, dump_dense_chunkings, export_served
    from bench.keyword_levers import dump_keyword_chunkings

    corpus, _, _ = load(dataset, "test")
    splits = {split: judged_queries(dataset, split) for split in ("train", "test")}
    leg_dir = data_dir / f"legs-{tag}"
    store = data_dir / f"chunkings-{tag.split('-', 1)[1]}"
    db = Database(database_url)
    try:
        await export_served(db, store / f"{tag.split('-', 1)[0]}.npz")  # the served chunking's own vectors
        await ensure_bm25_healthy(db, await keyword_backend(db))
        await dump_keyword_chunkings(db, corpus, embedder.count_tokens, splits, leg_dir, KEYWORD_SETTINGS)
    finally:
        await db.dispose()
    await dump_dense_chunkings(embedder, corpus, splits, store, leg_dir, DENSE_SETTINGS)
