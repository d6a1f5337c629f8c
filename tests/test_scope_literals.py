"""The bare connection's tenant scope goes as literals (domain/persistence/database.py): every
value comes back from PostgreSQL exactly as given, quotes and backslashes included."""

from __future__ import annotations

import pytest

from domain.persistence.database import APP_ROLE, Database, scope_statements


@pytest.mark.parametrize("tenant", ["acme", "o'brien", "a\\'; SELECT 1; --", "back\\slash", "ünï-cødé"])
async def test_the_tenant_setting_is_exactly_the_tenant(db: Database, tenant: str) -> None:
    async with db.connection(tenant) as conn:
        got = await conn.fetchrow(
            "SELECT current_setting('ragql.tenant_id'), current_user, current_setting('hnsw.ef_search')"
        )
    assert tuple(got) == (tenant, APP_ROLE, str(db.hnsw_ef_search))


async def test_the_scope_ends_with_the_transaction(db: Database) -> None:
    async with db.connection("acme") as conn:
        pass
    async with db.connection("other") as conn:
        assert await conn.fetchval("SELECT current_setting('ragql.tenant_id')") == "other"
    pool = db._raw_pool
    assert pool is not None
    async with pool.acquire() as raw:
        assert not raw.is_in_transaction()
        assert await raw.fetchval("SELECT current_setting('ragql.tenant_id', true)") in (None, "")


async def test_a_failure_rolls_back_and_leaves_no_transaction_open(db: Database) -> None:
    with pytest.raises(Exception, match="division by zero"):
        async with db.connection("acme") as conn:
            await conn.execute("SELECT 1 / 0")
    pool = db._raw_pool
    assert pool is not None
    # The connection went back to the pool with its transaction ended: the next user of any idle
    # connection starts clean (an aborted transaction would refuse every statement).
    for _ in range(pool.get_size()):
        async with pool.acquire() as raw:
            assert not raw.is_in_transaction()
            assert await raw.fetchval("SELECT 1") == 1


def test_a_nul_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="NUL"):
        scope_statements(APP_ROLE, "a\x00b", 100)
