"""Migration 0013 drops the HNSW index over every tenant's item factors (a filtered request scores
them exactly since, `tests/test_recs_training.py`), and keeps the factors."""

from __future__ import annotations

from sqlalchemy import text

from domain.persistence.migrate import migrate
from tests.test_migration_0005 import store_at

INDEX = "SELECT to_regclass('item_factors_hnsw')"


async def test_0013_drops_the_factor_index_and_keeps_the_table(pg_url: str) -> None:
    async with store_at(pg_url, "0012") as db:
        async with db.engine.connect() as conn:
            assert (await conn.execute(text(INDEX))).scalar() is not None
        await migrate(db, embedding_dim=384)
        async with db.engine.connect() as conn:
            assert (await conn.execute(text(INDEX))).scalar() is None
            assert (await conn.execute(text("SELECT to_regclass('item_factors')"))).scalar() is not None
