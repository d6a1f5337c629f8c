"""Migration 0013 drops the HNSW index over every tenant's item factors (a filtered request scores
them exactly since, `tests/test_recs_training.py`), and keeps the factors. And what a training
writes has fresh planner statistics at once."""

from __future__ import annotations

from sqlalchemy import text

from domain.documents.validation import DocumentInput
from domain.feedback import service as feedback
from domain.feedback.profiles import LearningConfig
from domain.persistence.migrate import migrate
from domain.providers.embedding import LocalEmbedder
from domain.recommendations.training import train_tenant
from domain.tenancy import ensure_tenant
from tests.conftest import ingest_docs
from tests.test_migration_0005 import store_at

INDEX = "SELECT to_regclass('item_factors_hnsw')"
COUNTS = {
    "item_neighbour_lists": "SELECT count(*) FROM item_neighbour_lists",
    "item_factors": "SELECT count(*) FROM item_factors",
}


async def test_0013_drops_the_factor_index_and_keeps_the_table(pg_url: str) -> None:
    async with store_at(pg_url, "0012") as db:
        async with db.engine.connect() as conn:
            assert (await conn.execute(text(INDEX))).scalar() is not None
        await migrate(db, embedding_dim=384)
        async with db.engine.connect() as conn:
            assert (await conn.execute(text(INDEX))).scalar() is None
            assert (await conn.execute(text("SELECT to_regclass('item_factors')"))).scalar() is not None


async def test_a_training_leaves_fresh_planner_statistics_for_what_it_wrote(
    pg_url: str, embedder: LocalEmbedder
) -> None:
    """A new database's first training: without the ANALYZE after it, the planner has never seen
    the lists (reltuples -1) and plans a filtered request for one row."""
    async with store_at(pg_url, "head") as db:
        await ensure_tenant(db, "t-fresh")
        docs = [DocumentInput(title=f"Film {n}", text=f"A film about the number {n}.") for n in range(6)]
        ids = [item.document.id for item in (await ingest_docs(db, embedder, "t-fresh", docs)).documents]
        for user in range(4):
            for doc in ids[user : user + 3]:
                await feedback.submit(
                    db,
                    "t-fresh",
                    feedback.FeedbackRequest(user_id=f"u{user}", kind="LIKE", document_id=doc),
                    LearningConfig(),
                )
        report = await train_tenant(db, "t-fresh")
        assert report.version == 1
        async with db.engine.connect() as conn:
            for table, count in COUNTS.items():
                stored = (await conn.execute(text(count))).scalar()
                planned = (
                    await conn.execute(text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table})
                ).scalar()
                assert stored and planned == stored, (table, stored, planned)
