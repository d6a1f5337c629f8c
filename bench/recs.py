"""`make bench`, the feedback part: submitFeedback, recommendations and analytics, server side
(the domain calls behind the resolvers), on the demo catalogue with synthetic users."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable

from sqlalchemy import text

from domain.analytics.service import analytics
from domain.feedback import service as feedback
from domain.feedback.kinds import Kind
from domain.feedback.profiles import LearningConfig
from domain.persistence.database import Database
from domain.providers.embedding import Embedder
from domain.recommendations.service import Recommender, RecommendRequest
from domain.rerank.service import Reranking

USERS = 100
LIKES_PER_USER = 8
VIEWS_PER_USER = 4


async def bench_feedback_and_recs(
    db: Database, embedder: Embedder, tenant_id: str, percentile: Callable[[list[float], int], float]
) -> None:
    async with db.session(tenant_id) as session:
        ids = [
            r[0] for r in await session.execute(text("SELECT id FROM documents WHERE tenant_id = :t"), {"t": tenant_id})
        ]
    rng = random.Random(3)
    learning = LearningConfig()
    submits: list[float] = []
    for u in range(USERS):
        picks = rng.sample(ids, LIKES_PER_USER + VIEWS_PER_USER)
        kinds: list[Kind] = [*(["LIKE"] * LIKES_PER_USER), *(["VIEW"] * VIEWS_PER_USER)]  # type: ignore[list-item]
        for doc, kind in zip(picks, kinds, strict=True):
            event = feedback.FeedbackRequest(
                user_id=f"bench-{u}", kind=kind, document_id=doc, idempotency_key=str(uuid.uuid4())
            )
            t0 = time.perf_counter()
            await feedback.submit(db, tenant_id, event, learning)
            submits.append((time.perf_counter() - t0) * 1000)
    print(
        f"bench submitFeedback: p50={percentile(submits, 50):.2f} ms p95={percentile(submits, 95):.2f} ms "
        f"(n={len(submits)}, event + profile + co-engagement in one transaction)"
    )
    recommender = Recommender(db=db, embedder=embedder, reranking=Reranking(), learning=learning)
    for label, context in (("blended", None), ("blended with context", "a tense heist thriller")):
        samples: list[float] = []
        for u in range(USERS):
            request = RecommendRequest(user_id=f"bench-{u}", context=context, first=10)
            t0 = time.perf_counter()
            await recommender.recommend(tenant_id, request)
            samples.append((time.perf_counter() - t0) * 1000)
        print(
            f"bench recommendations {label} first=10 (no re-rank): p50={percentile(samples, 50):.2f} ms "
            f"p95={percentile(samples, 95):.2f} ms (n={len(samples)}, incl. query-log write)"
        )
    report: list[float] = []
    for _ in range(20):
        t0 = time.perf_counter()
        await analytics(db, tenant_id, None, None)
        report.append((time.perf_counter() - t0) * 1000)
    print(f"bench analytics (30 days): p50={percentile(report, 50):.2f} ms p95={percentile(report, 95):.2f} ms")
