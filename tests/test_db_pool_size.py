"""RAGQL_DB_POOL_SIZE reaches both of a process's PostgreSQL pools: the ORM's and the bare one that
searches and recommendations use (opened by the first of them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from api.app import create_app
from api.settings import Settings
from domain.providers.embedding import LocalEmbedder
from tests.conftest import client_for, graphql_ok


async def test_the_pool_size_setting_bounds_both_pools(pg_url: str, tmp_root: Path, embedder: LocalEmbedder) -> None:
    settings = Settings(database_url=pg_url, data_dir=tmp_root, load_demo=False, db_pool_size=3)
    app = create_app(settings, embedder=embedder)
    async with client_for(app) as client:
        await graphql_ok(client, '{ search(query: "pools of herons", first: 3) { hits { score } } }')
        db = app.state.services.db
        assert db.engine.pool.size() == 3
        assert db._raw_pool is not None and db._raw_pool.get_max_size() == 3


def test_a_pool_of_no_connections_is_refused() -> None:
    with pytest.raises(ValidationError, match="db_pool_size"):
        Settings(db_pool_size=0)
