"""`make bench`, recommendations at real history lengths: a 10,000-item catalogue and users with
500 events each (100,000 events), server side (the domain calls behind the resolvers).

The catalogue and the events are written in bulk, not through ingest and submitFeedback: what is
measured is `recommendations` (and one `submitFeedback`) on a store of that size, and embedding
10,000 texts would take minutes of the bench for vectors whose meaning the latency does not depend
on. So each document's content vector is synthetic: a random projection of its latent factors
(`bench/recs_sim.py`) plus noise, unit length, which gives the HNSW index the clustered shape real
embeddings have. Derived state is then rebuilt from the events by the product's own code
(`rebuild`), and the model trained by the job's function (`train_tenant`), whose time is printed.

`python -m bench recs-scale` runs only this scenario."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable

import numpy as np
from sqlalchemy import text

from bench.recs_sim import LIKED_RATING, make_catalogue
from bench.recs_store import BulkDocument, BulkRating, insert_documents, insert_ratings
from domain.feedback import coengagement, profiles
from domain.feedback.profiles import LearningConfig
from domain.persistence.database import Database
from domain.providers.embedding import Embedder
from domain.recommendations.service import Recommender, RecommendRequest
from domain.rerank.service import Reranking
from domain.tenancy import ensure_tenant

ITEMS = 10_000
USERS = 200
EVENTS_PER_USER = 500
MEASURED_USERS = 100
DIM = 384
TENANT = "bench-recs-scale"


async def _insert_catalogue(db: Database, rng: np.random.Generator) -> tuple[list[uuid.UUID], np.ndarray]:
    catalogue = make_catalogue(ITEMS, seed=0)
    projection = rng.normal(size=(catalogue.factors.shape[1], DIM))
    vectors = catalogue.factors @ projection + 0.6 * rng.normal(size=(ITEMS, DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    docs = [BulkDocument(it.external_id, it.title, it.text, it.genre) for it in catalogue.items]
    ids = await insert_documents(db, TENANT, docs, vectors, seed=int(rng.integers(0, 2**31)))
    return ids, catalogue.factors


def _histories(factors: np.ndarray, popularity: np.ndarray, rng: np.random.Generator) -> list[list[tuple[int, float]]]:
    """Per user, 500 (item, rating) pairs chosen like the simulation's users choose."""
    out = []
    for _ in range(USERS):
        taste = rng.dirichlet(np.full(factors.shape[1], 0.15))
        affinity = factors @ taste
        affinity /= affinity.max()
        weights = popularity * np.exp(8.0 * affinity)
        items = rng.choice(len(weights), size=EVENTS_PER_USER, replace=False, p=weights / weights.sum())
        ratings = np.clip(
            np.round((3.6 + 3.0 * (affinity[items] - 0.3) + rng.normal(0, 0.8, len(items))) * 2) / 2, 0.5, 5
        )
        out.append([(int(i), float(r)) for i, r in zip(items, ratings, strict=True)])
    return out


async def _insert_feedback(db: Database, ids: list[uuid.UUID], histories: list[list[tuple[int, float]]]) -> None:
    rows = [BulkRating(f"user-{u}", ids[i], r) for u, history in enumerate(histories) for i, r in history]
    await insert_ratings(db, TENANT, rows, spacing_ms=1000)


async def bench_recs_at_scale(
    db: Database, embedder: Embedder, percentile: Callable[[list[float], int], float]
) -> None:
    rng = np.random.default_rng(11)
    await ensure_tenant(db, TENANT)
    t0 = time.perf_counter()
    ids, factors = await _insert_catalogue(db, rng)
    popularity = make_catalogue(ITEMS, seed=0).popularity
    histories = _histories(factors, popularity, rng)
    await _insert_feedback(db, ids, histories)
    likes = sum(r >= LIKED_RATING for h in histories for _, r in h)
    print(
        f"bench recs-scale setup: {ITEMS} items, {USERS} users x {EVENTS_PER_USER} events "
        f"({USERS * EVENTS_PER_USER} events, {likes} likes) written in {time.perf_counter() - t0:.1f}s",
        flush=True,
    )
    learning = LearningConfig()
    try:
        from domain.recommendations.training import train_tenant
    except ImportError:  # the code before the trained model, for the "before" figure
        train_tenant = None  # type: ignore[assignment]
    t0 = time.perf_counter()
    async with db.session(TENANT) as session:
        if train_tenant is None:
            pairs = await coengagement.rebuild(session, TENANT)
        else:
            # The trained path reads the model's neighbour lists, never the live pair counts, so
            # the 8 million pairs (8 minutes of SQL here) are left out; popularity is rebuilt.
            pairs = await coengagement.rebuild(session, TENANT, pairs=False)
    for u in range(MEASURED_USERS):
        async with db.session(TENANT) as session:
            await profiles.rebuild_user(session, TENANT, f"user-{u}", learning)
    # What a bulk load does last: the planner's statistics for what it wrote. Written through the
    # API, the same rows would have been analyzed by autovacuum long before a user had 500 events.
    async with db.engine.connect() as conn:
        await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(text("ANALYZE"))
    print(
        f"bench recs-scale rebuild: {pairs} co-engagement pairs, {MEASURED_USERS} profiles, ANALYZE in "
        f"{time.perf_counter() - t0:.1f}s",
        flush=True,
    )
    if train_tenant is not None:
        report = await train_tenant(db, TENANT)
        print(
            f"bench recs-scale train-recs: {report.events} events ({report.users} users, {report.items} items) "
            f"in {report.took_ms / 1000:.1f}s (ALS fit and neighbours {report.fit_ms / 1000:.1f}s)",
            flush=True,
        )
    recommender = Recommender(db=db, embedder=embedder, reranking=Reranking(), learning=learning)
    for u in range(5):  # warm the pool, the plan cache and the model cache
        await recommender.recommend(TENANT, RecommendRequest(user_id=f"user-{u}"))
    samples: list[float] = []
    for u in range(MEASURED_USERS):
        t0 = time.perf_counter()
        await recommender.recommend(TENANT, RecommendRequest(user_id=f"user-{u}", first=10))
        samples.append((time.perf_counter() - t0) * 1000)
    print(
        f"bench recs-scale recommendations blended first=10, {EVENTS_PER_USER} events/user, {ITEMS} items: "
        f"p50={percentile(samples, 50):.1f} ms p95={percentile(samples, 95):.1f} ms (n={len(samples)}, "
        f"load average {_load()})",
        flush=True,
    )
    await _bench_filtered(db, recommender, percentile)
    await _bench_like_then_recommend(db, recommender, ids, histories, learning, percentile)


async def _bench_filtered(
    db: Database, recommender: Recommender, percentile: Callable[[list[float], int], float]
) -> None:
    """The same users' lists under a metadata filter (the catalogue's most common genre): the
    model's candidates are then the exact order with the filter applied in SQL."""
    from domain.retrieval.filters import Condition, MetadataFilter

    async with db.session(TENANT) as session:
        genre, share = (
            await session.execute(
                text(
                    "SELECT genre, count(*)::float / sum(count(*)) OVER () AS share FROM documents "
                    "GROUP BY genre ORDER BY share DESC"
                )
            )
        ).first() or ("", 0.0)
    flt = MetadataFilter(all=(Condition("genre", "EQ", genre),))
    samples: list[float] = []
    for u in range(MEASURED_USERS):
        t0 = time.perf_counter()
        await recommender.recommend(TENANT, RecommendRequest(user_id=f"user-{u}", first=10, filter=flt))
        samples.append((time.perf_counter() - t0) * 1000)
    print(
        f"bench recs-scale recommendations blended first=10 filter genre={genre!r} ({share:.0%} of the items): "
        f"p50={percentile(samples, 50):.1f} ms p95={percentile(samples, 95):.1f} ms (n={len(samples)})",
        flush=True,
    )


async def _bench_like_then_recommend(
    db: Database,
    recommender: Recommender,
    ids: list[uuid.UUID],
    histories: list[list[tuple[int, float]]],
    learning: LearningConfig,
    percentile: Callable[[list[float], int], float],
) -> None:
    """A like from a 500-event user, then their next list: the fold-in path, live."""
    from domain.feedback import service as feedback

    submits: list[float] = []
    recs: list[float] = []
    for u in range(50):
        seen = {i for i, _ in histories[u]}
        fresh = next(i for i in range(len(ids)) if i not in seen)
        key = hashlib.sha256(f"{u}-{fresh}".encode()).hexdigest()
        request = feedback.FeedbackRequest(
            user_id=f"user-{u}", kind="LIKE", document_id=ids[fresh], idempotency_key=key
        )
        t0 = time.perf_counter()
        await feedback.submit(db, TENANT, request, learning)
        submits.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        await recommender.recommend(TENANT, RecommendRequest(user_id=f"user-{u}", first=10))
        recs.append((time.perf_counter() - t0) * 1000)
    print(
        f"bench recs-scale submitFeedback LIKE by a {EVENTS_PER_USER}-event user: p50={percentile(submits, 50):.1f} ms "
        f"p95={percentile(submits, 95):.1f} ms; the next recommendations p50={percentile(recs, 50):.1f} ms "
        f"p95={percentile(recs, 95):.1f} ms (n={len(recs)})",
        flush=True,
    )


def _load() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def run_scale_bench() -> None:
    from api import embedded
    from bench.stats import percentile
    from domain.persistence.migrate import migrate
    from domain.providers.embedding import LocalEmbedder

    async def run(url: str) -> None:
        db = Database(url)
        try:
            embedder = LocalEmbedder()
            await migrate(db, embedding_dim=embedder.dim)
            await bench_recs_at_scale(db, embedder, percentile)
        finally:
            await db.dispose()

    with embedded.temporary("ragql-bench-recs-") as (_root, url):
        asyncio.run(run(url))
