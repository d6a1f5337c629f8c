"""Migration 0012 turns a model's neighbour pairs into one list per item: a store at 0011 with a
trained version keeps every pair, each list ordered best first, under row-level security, and
the pair table is gone."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from domain.documents.validation import DocumentInput
from domain.persistence.database import Database
from domain.persistence.migrate import migrate
from domain.providers.embedding import LocalEmbedder
from domain.tenancy import ensure_tenant
from tests.conftest import ingest_docs
from tests.test_migration_0005 import store_at


@pytest.fixture
async def store_at_0011(pg_url: str) -> AsyncIterator[Database]:
    async with store_at(pg_url, "0011") as db:
        yield db


async def test_0012_keeps_every_pair_as_ordered_lists(store_at_0011: Database, embedder: LocalEmbedder) -> None:
    db = store_at_0011
    await ensure_tenant(db, "t-old")
    docs = [DocumentInput(title=f"Film {n}", text=f"A film about the number {n}.") for n in range(4)]
    ids = [item.document.id for item in (await ingest_docs(db, embedder, "t-old", docs)).documents]
    # (item, neighbour, score), stored out of order on purpose.
    pairs = [(0, 2, 0.1), (0, 1, 0.9), (0, 3, 0.5), (1, 0, 0.9), (2, 3, 0.3)]
    async with db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO recs_models (tenant_id, version, status, algorithm, settings) "
                "VALUES ('t-old', 1, 'ready', 'implicit-als', '{}')"
            )
        )
        for item, neighbour, score in pairs:
            await conn.execute(
                text("INSERT INTO item_neighbours VALUES ('t-old', 1, :i, :n, :s)"),
                {"i": ids[item], "n": ids[neighbour], "s": score},
            )

    await migrate(db, embedding_dim=384)

    async with db.session("t-old") as session:
        rows = (await session.execute(text("SELECT item, neighbours, scores FROM item_neighbour_lists"))).all()
    lists = {ids.index(item): ([ids.index(n) for n in ns], [round(s, 3) for s in ss]) for item, ns, ss in rows}
    assert lists == {0: ([1, 3, 2], [0.9, 0.5, 0.1]), 1: ([0], [0.9]), 2: ([3], [0.3])}
    async with db.session("t-other") as session:
        assert (await session.execute(text("SELECT count(*) FROM item_neighbour_lists"))).scalar() == 0
    async with db.engine.connect() as conn:
        assert (await conn.execute(text("SELECT to_regclass('item_neighbours')"))).scalar() is None
