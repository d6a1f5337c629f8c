"""`RAGQL_HNSW_EF_SEARCH`: every request transaction sets hnsw.ef_search for itself (SET LOCAL)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from api.settings import Settings
from domain.persistence.database import DEFAULT_EF_SEARCH, Database


async def test_each_transaction_sets_its_own_ef_search(pg_url: str, db: Database) -> None:
    tuned = Database(pg_url, pool_size=1, hnsw_ef_search=57)
    try:
        async with tuned.session("default") as session:
            assert (await session.execute(text("SHOW hnsw.ef_search"))).scalar_one() == "57"
        # SET LOCAL: the pooled connection goes back with the startup packet's value.
        async with tuned.engine.connect() as conn:
            assert (await conn.execute(text("SHOW hnsw.ef_search"))).scalar_one() == str(DEFAULT_EF_SEARCH)
    finally:
        await tuned.dispose()
    async with db.session("default") as session:
        assert (await session.execute(text("SHOW hnsw.ef_search"))).scalar_one() == str(DEFAULT_EF_SEARCH)


def test_the_setting_is_read_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGQL_HNSW_EF_SEARCH", "200")
    assert Settings().hnsw_ef_search == 200
    monkeypatch.setenv("RAGQL_HNSW_EF_SEARCH", "5")
    with pytest.raises(ValidationError):
        Settings()
