"""Tenants. Every tenant-owned row references one."""

from __future__ import annotations

from sqlalchemy import text

from domain.persistence.database import Database


async def ensure_tenant(db: Database, tenant_id: str, name: str | None = None) -> None:
    async with db.session(tenant_id) as session:
        await session.execute(
            text("INSERT INTO tenants (id, name) VALUES (:i, :n) ON CONFLICT (id) DO NOTHING"),
            {"i": tenant_id, "n": name or tenant_id},
        )
