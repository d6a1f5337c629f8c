"""Row-level security: tenant isolation holds beneath the code, even for a query with no WHERE."""

from __future__ import annotations

import importlib
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from domain.documents.validation import DocumentInput
from domain.feedback import service as feedback
from domain.feedback.profiles import LearningConfig
from domain.persistence.database import APP_ROLE, Database
from domain.providers.embedding import LocalEmbedder
from domain.recommendations.training import train_tenant
from domain.tenancy import ensure_tenant
from tests.conftest import ingest_docs

TENANCY = importlib.import_module("domain.persistence.migrations.versions.0004_tenancy")
ITEM_FACTORS = importlib.import_module("domain.persistence.migrations.versions.0007_item_factors")
SENTENCES = importlib.import_module("domain.persistence.migrations.versions.0009_chunk_sentences")
NEIGHBOUR_LISTS = importlib.import_module("domain.persistence.migrations.versions.0012_neighbour_lists")
# The trained model's tables: 0007's, with 0012's neighbour lists in place of its pair table.
TRAINED = sorted(
    set(ITEM_FACTORS.TENANT_TABLES) - set(NEIGHBOUR_LISTS.DROPPED_TABLES) | set(NEIGHBOUR_LISTS.TENANT_TABLES)
)
TABLES = sorted([*TENANCY.TENANT_TABLES, *TRAINED, *SENTENCES.TENANT_TABLES])
# Tables the fixture gives rows in both tenants, so "sees only A" cannot pass vacuously.
FILLED = {"tenants", "documents", "chunks", "document_vectors", "feedback", "user_profiles", "co_engagement"}
FILLED |= set(TRAINED)


async def _some_rows(db: Database, embedder: LocalEmbedder, tenant: str) -> None:
    """Two documents (documents, chunks, document_vectors), liked by one user (feedback,
    user_profiles, co_engagement, item_popularity), and a trained model (recs_models,
    item_factors, item_neighbour_lists)."""
    await ensure_tenant(db, tenant)
    docs = [DocumentInput(title=f"Doc {n} of {tenant}", text=f"Some text {n}.") for n in (1, 2)]
    outcome = await ingest_docs(db, embedder, tenant, docs)
    for item in outcome.documents:
        request = feedback.FeedbackRequest(user_id="u1", kind="LIKE", document_id=item.document.id)
        await feedback.submit(db, tenant, request, LearningConfig())
    assert (await train_tenant(db, tenant)).version == 1


@pytest.fixture
async def two_tenants(db: Database, embedder: LocalEmbedder) -> tuple[str, str]:
    salt = uuid.uuid4().hex[:8]
    a, b = f"rls-a-{salt}", f"rls-b-{salt}"
    for tenant in (a, b):
        await _some_rows(db, embedder, tenant)
    return a, b


async def test_request_transactions_run_as_a_role_that_cannot_bypass_rls(db: Database) -> None:
    async with db.session("any") as session:
        row = (
            await session.execute(
                text("SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            )
        ).one()
    assert tuple(row) == (APP_ROLE, False, False)
    async with db.engine.connect() as conn:
        owners = (
            await conn.execute(
                text("SELECT DISTINCT tableowner FROM pg_tables WHERE tablename = ANY(:t)"), {"t": TABLES}
            )
        ).scalars()
        assert APP_ROLE not in set(owners)


async def test_every_tenant_table_has_row_level_security(db: Database) -> None:
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT relname FROM pg_class WHERE relrowsecurity AND relname = ANY(:t)"), {"t": TABLES}
            )
        ).scalars()
        assert sorted(rows) == TABLES


@pytest.mark.parametrize("table", TABLES)
async def test_an_unfiltered_select_sees_only_the_current_tenant(
    db: Database, two_tenants: tuple[str, str], table: str
) -> None:
    a, b = two_tenants
    column = "id" if table == "tenants" else "tenant_id"
    # The deliberately forgotten WHERE: every row the policy lets through.
    unfiltered = f"SELECT DISTINCT {column} FROM {table}"  # noqa: S608 (table and column from the fixed list above)
    async with db.session(a) as session:
        seen = set((await session.execute(text(unfiltered))).scalars())
    assert seen <= {a}
    if table in FILLED:
        assert seen == {a}  # the fixture gave A rows here, so the check can't pass vacuously
    async with db.session(f"nobody-{uuid.uuid4().hex[:6]}") as session:  # a tenant with no rows sees none
        assert list((await session.execute(text(unfiltered))).scalars()) == []
    async with db.engine.connect() as conn:  # the owner, for contrast, sees both
        everyone = set((await conn.execute(text(unfiltered))).scalars())
    if table in FILLED:
        assert {a, b} <= everyone


async def test_writing_another_tenants_rows_is_refused(db: Database, two_tenants: tuple[str, str]) -> None:
    a, b = two_tenants
    with pytest.raises(DBAPIError, match="row-level security"):
        async with db.session(a) as session:
            sql = (
                "INSERT INTO query_log (id, tenant_id, query, mode, result_count, took_ms) "
                "VALUES (:i, :t, 'x', 'HYBRID', 0, 1)"
            )
            await session.execute(text(sql), {"i": uuid.uuid4(), "t": b})
    async with db.session(a) as session:
        # An UPDATE or DELETE with no WHERE touches only A's rows.
        changed = await session.execute(text("UPDATE documents SET source = source"))
        deleted = await session.execute(text("DELETE FROM api_keys"))
    async with db.engine.connect() as conn:
        count_a = (await conn.execute(text("SELECT count(*) FROM documents WHERE tenant_id = :t"), {"t": a})).scalar()
    assert changed.rowcount == count_a  # type: ignore[attr-defined]
    assert deleted.rowcount == 0  # type: ignore[attr-defined]


async def test_one_tenants_model_never_serves_another(db: Database, two_tenants: tuple[str, str]) -> None:
    """B asks for A's model version and A's documents by id: RLS hides them, so the request-time
    code finds no model and no factors, whatever ids it is handed."""
    from domain.recommendations import factors

    a, b = two_tenants
    async with db.session(a) as session:
        a_docs = list((await session.execute(text("SELECT document_id FROM item_factors"))).scalars())
        cached = await factors.active(session, a)  # now loaded into this process's cache
    assert len(a_docs) == 2
    assert cached is not None and set(cached.factors_of(a_docs)) == set(a_docs)
    async with db.session(b) as session:
        # The cache is reached only through a version row that RLS lets the session read.
        assert await factors.active(session, a) is None  # even with A's model cached in this process
        own = await factors.active(session, b)  # B's own model knows none of A's documents
        assert own is not None and own.factors_of(a_docs) == {} and not set(own.ids) & set(a_docs)
        rows = await session.execute(
            text("SELECT count(*) FROM item_factors WHERE document_id = ANY(CAST(:ids AS uuid[]))"), {"ids": a_docs}
        )
        assert rows.scalar() == 0
    with pytest.raises(DBAPIError, match="row-level security"):
        async with db.session(b) as session:
            await session.execute(
                text(
                    "INSERT INTO recs_models (tenant_id, version, status, algorithm, settings) "
                    "VALUES (:t, 99, 'ready', 'x', '{}')"
                ),
                {"t": a},
            )
