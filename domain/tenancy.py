"""Tenants. Every tenant-owned row references one."""

from __future__ import annotations

from sqlalchemy import text

from domain.persistence.database import Database
from domain.retrieval.tenant_index import chunk_partition


async def ensure_tenant(db: Database, tenant_id: str, name: str | None = None) -> None:
    async with db.session(tenant_id) as session:
        await session.execute(
            text("INSERT INTO tenants (id, name) VALUES (:i, :n) ON CONFLICT (id) DO NOTHING"),
            {"i": tenant_id, "n": name or tenant_id},
        )


async def drop_tenant(db: Database, tenant_id: str) -> None:
    """Remove a tenant that holds only documents and ingestion jobs (`ragql eval`'s scratch
    tenant): its rows, its chunk partition with its BM25 index, then the tenant itself.

    As the owner, not the app role: the partition belongs to the owner (migration 0005), and the
    app role may not drop tables. Dropping it takes a brief ACCESS EXCLUSIVE lock on `chunks`; a
    scratch tenant is small and short-lived, so that is acceptable where a live tenant's would not be."""
    async with db.engine.begin() as conn:
        for table in ("ingestion_job_items", "ingestion_jobs", "query_log", "documents"):
            # Fixed names; documents cascades to chunks and document_vectors.
            await conn.execute(text(f"DELETE FROM {table} WHERE tenant_id = :t"), {"t": tenant_id})  # noqa: S608
        partition = chunk_partition(tenant_id)
        # chunk_sentences (0009) references the partitioned `chunks`: PostgreSQL refuses to drop a
        # partition such a foreign key depends on, but detaching it first (now empty) is allowed.
        if (await conn.execute(text("SELECT to_regclass(:p)"), {"p": partition})).scalar() is not None:
            await conn.execute(text(f"ALTER TABLE chunks DETACH PARTITION {partition}"))
            await conn.execute(text(f"DROP TABLE {partition}"))
        await conn.execute(text("DELETE FROM tenants WHERE id = :t"), {"t": tenant_id})
