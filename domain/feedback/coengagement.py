"""Item-to-item co-engagement: for each ordered pair of documents, how many users liked both.

Kept fresh incrementally: when a user likes a document for the first time, every other document
they have liked gains one user with it, in both directions, in the event's own transaction. The
same numbers come from one SQL statement over the feedback table (`rebuild`). "Liked" is defined
once, in `kinds.py`; a later dislike does not retract co-engagement (as "people who bought X also
bought Y" does not forget a purchase). Pairs with a deleted document go with the document."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.feedback.kinds import liked_sql

_LIKED = liked_sql("f")


async def already_liked(session: AsyncSession, tenant_id: str, user_id: str, document_id: uuid.UUID) -> bool:
    sql = (
        "SELECT EXISTS (SELECT 1 FROM feedback f WHERE f.tenant_id = :t AND f.user_id = :u "
        f"AND f.document_id = :d AND {_LIKED})"
    )
    return bool((await session.execute(text(sql), {"t": tenant_id, "u": user_id, "d": document_id})).scalar())


async def add_like(session: AsyncSession, tenant_id: str, user_id: str, document_id: uuid.UUID) -> int:
    """Record a user's first like of `document_id` (call before inserting the event). Returns the
    number of pairs touched."""
    sql = f"""
        WITH others AS (
            SELECT DISTINCT f.document_id AS other FROM feedback f JOIN documents d ON d.id = f.document_id
            WHERE f.tenant_id = :t AND f.user_id = :u AND f.document_id <> :d AND {_LIKED}
        ), pairs AS (
            SELECT CAST(:d AS uuid) AS a, other AS b FROM others
            UNION ALL SELECT other, CAST(:d AS uuid) FROM others
        )
        INSERT INTO co_engagement (tenant_id, item_a, item_b, users)
        SELECT :t, a, b, 1 FROM pairs ORDER BY a, b
        ON CONFLICT (tenant_id, item_a, item_b) DO UPDATE SET users = co_engagement.users + 1
        """
    result = await session.execute(text(sql), {"t": tenant_id, "u": user_id, "d": document_id})
    return int(getattr(result, "rowcount", 0) or 0)


async def rebuild(session: AsyncSession, tenant_id: str) -> int:
    """Recompute a tenant's co-engagement from its feedback. Returns the number of pairs."""
    await session.execute(text("DELETE FROM co_engagement WHERE tenant_id = :t"), {"t": tenant_id})
    sql = f"""
        WITH liked AS (
            SELECT DISTINCT f.user_id, f.document_id FROM feedback f JOIN documents d ON d.id = f.document_id
            WHERE f.tenant_id = :t AND {_LIKED}
        )
        INSERT INTO co_engagement (tenant_id, item_a, item_b, users)
        SELECT :t, x.document_id, y.document_id, count(*)
        FROM liked x JOIN liked y ON y.user_id = x.user_id AND y.document_id <> x.document_id
        GROUP BY x.document_id, y.document_id
        """
    result = await session.execute(text(sql), {"t": tenant_id})
    return int(getattr(result, "rowcount", 0) or 0)
