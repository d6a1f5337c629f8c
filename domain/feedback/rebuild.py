"""`ragql rebuild-profiles`: recompute every derived state (profiles, co-engagement) from the
feedback events. Safe while the server runs: each user is rebuilt under the lock live updates take,
and a tenant's co-engagement is replaced in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text

from domain.feedback import coengagement, profiles
from domain.feedback.profiles import LearningConfig
from domain.persistence.database import Database

Progress = Callable[[int], None]


@dataclass
class RebuildReport:
    tenants: int = 0
    users: int = 0
    pairs: int = 0


async def tenant_ids(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(text("SELECT id FROM tenants ORDER BY id"))
        return [str(r[0]) for r in rows]


async def users_of(db: Database, tenant_id: str) -> list[str]:
    async with db.session(tenant_id) as session:
        rows = await session.execute(
            text(
                "SELECT DISTINCT user_id FROM feedback "
                "WHERE tenant_id = :t AND document_id IS NOT NULL ORDER BY user_id"
            ),
            {"t": tenant_id},
        )
        return [str(r[0]) for r in rows]


async def rebuild_tenant(
    db: Database, tenant_id: str, config: LearningConfig, *, progress: Progress | None = None
) -> RebuildReport:
    report = RebuildReport(tenants=1)
    async with db.session(tenant_id) as session:
        report.pairs = await coengagement.rebuild(
            session, tenant_id, config.popularity_half_life_days, window=config.co_engagement_window
        )
    for user_id in await users_of(db, tenant_id):
        async with db.session(tenant_id) as session:
            await profiles.rebuild_user(session, tenant_id, user_id, config)
        report.users += 1
        if progress:
            progress(1)
    return report
