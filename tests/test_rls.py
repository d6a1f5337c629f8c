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
from domain.tenancy import ensure_tenant
from tests.conftest import ingest_docs

TENANCY = importlib.import_module("domain.persistence.migrations.versions.0004_tenancy")
TABLES = sorted(TENANCY.TENANT_TABLES)


async def _some_rows(db: Database, embedder: LocalEmbedder, tenant: str) -> None:
    """A document (documents, chunks, document_vectors) and a like (feedback, user_profiles)."""
    await ensure_tenant(db, tenant)
    outcome = await ingest_docs(db, embedder, tenant, [DocumentInput(title=f"Doc of {tenant}", text="Some text.")])
    request = feedback.FeedbackRequest(user_id="u1", kind="LIKE", document_id=outcome.documents[0].document.id)
    await feedback.submit(db, tenant, request, LearningConfig())


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
    if table in ("tenants", "documents", "chunks", "document_vectors", "feedback", "user_profiles"):
        assert seen == {a}  # the fixture gave A rows here, so the check can't pass vacuously
    async with db.session(f"nobody-{uuid.uuid4().hex[:6]}") as session:  # a tenant with no rows sees none
        assert list((await session.execute(text(unfiltered))).scalars()) == []
    async with db.engine.connect() as conn:  # the owner, for contrast, sees both
        everyone = set((await conn.execute(text(unfiltered))).scalars())
    if table in ("tenants", "documents", "feedback"):
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
