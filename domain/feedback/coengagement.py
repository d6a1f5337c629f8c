"""Item-to-item co-engagement and item popularity, kept in each event's transaction.

A user's verdict on a document is their latest strong signal on it (`kinds.LIKED_AT`): a like,
watched or a rating of 4+ makes it liked; a later dislike (or a rating of 1) takes that back.
When a verdict turns to "liked", every other document the user currently likes gains one user
with it, in both directions; when it turns away, those pairs lose that user again, so
co-engagement always counts current likes only. The same numbers come from one SQL statement over
the feedback table (`rebuild`).

Raw pair counts favour whatever is popular, so they are normalised when read (see
`recommendations.candidates.co_engaged`) by `item_popularity.likers`, the number of users who
currently like each document. `item_popularity.score` is the time-decayed sum of every event's
weight, updated as score·2^(-age/half-life) + w, so reading it needs no scan of the events.
Pairs and popularity of a deleted document go with the document."""

from __future__ import annotations

import math
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.feedback.kinds import LIKED_AT, weight_sql

_W = weight_sql("f")


def decay_rate(half_life_days: float) -> float:
    """Per second, for exp(-rate × age)."""
    return math.log(2) / (half_life_days * 86400.0)


def _current_likes(exclude_document: bool) -> str:
    """The documents a user currently likes (latest strong signal positive), optionally without :d."""
    other = "AND f.document_id <> :d" if exclude_document else ""
    return f"""
        SELECT document_id FROM (
            SELECT DISTINCT ON (f.document_id) f.document_id, {_W} AS w
            FROM feedback f JOIN documents d ON d.id = f.document_id
            WHERE f.tenant_id = :t AND f.user_id = :u {other} AND abs({_W}) >= {LIKED_AT}
            ORDER BY f.document_id, f.seq DESC
        ) latest WHERE w > 0"""


async def currently_liked(session: AsyncSession, tenant_id: str, user_id: str, document_id: uuid.UUID) -> bool:
    sql = f"""
        SELECT {_W} > 0 FROM feedback f
        WHERE f.tenant_id = :t AND f.user_id = :u AND f.document_id = :d AND abs({_W}) >= {LIKED_AT}
        ORDER BY f.seq DESC LIMIT 1
        """
    row = (await session.execute(text(sql), {"t": tenant_id, "u": user_id, "d": document_id})).first()
    return bool(row[0]) if row is not None else False


async def _shift_pairs(session: AsyncSession, tenant_id: str, user_id: str, document_id: uuid.UUID, by: int) -> int:
    params = {"t": tenant_id, "u": user_id, "d": document_id, "by": by}
    pairs = f"""
        others AS ({_current_likes(exclude_document=True)}),
        pairs AS (SELECT CAST(:d AS uuid) AS a, document_id AS b FROM others
                  UNION ALL SELECT document_id, CAST(:d AS uuid) FROM others)"""
    if by > 0:
        sql = f"""
            WITH {pairs}
            INSERT INTO co_engagement (tenant_id, item_a, item_b, users)
            SELECT :t, a, b, :by FROM pairs ORDER BY a, b
            ON CONFLICT (tenant_id, item_a, item_b) DO UPDATE SET users = co_engagement.users + EXCLUDED.users
            """
    else:
        sql = f"""
            WITH {pairs}
            UPDATE co_engagement c SET users = c.users + :by
            FROM pairs p WHERE c.tenant_id = :t AND c.item_a = p.a AND c.item_b = p.b
            """
    result = await session.execute(text(sql), params)
    if by < 0:
        await session.execute(
            text("DELETE FROM co_engagement WHERE tenant_id = :t AND (item_a = :d OR item_b = :d) AND users <= 0"),
            {"t": tenant_id, "d": document_id},
        )
    return int(getattr(result, "rowcount", 0) or 0)


async def add_like(session: AsyncSession, tenant_id: str, user_id: str, document_id: uuid.UUID) -> int:
    """The user's verdict on `document_id` turns to liked (call before inserting the event).
    Returns the number of pairs touched."""
    return await _shift_pairs(session, tenant_id, user_id, document_id, +1)


async def retract_like(session: AsyncSession, tenant_id: str, user_id: str, document_id: uuid.UUID) -> int:
    """The user no longer likes `document_id` (call before inserting the event)."""
    return await _shift_pairs(session, tenant_id, user_id, document_id, -1)


# The decayed score an event leaves behind, and the key that orders documents by their decayed
# score at any later instant (migration 0008): ln(score) + rate·epoch(updated_at).
_NEW_SCORE = """p.score * exp(-CAST(:rate AS double precision)
                                * greatest(extract(epoch FROM now() - p.updated_at), 0))
                 + CAST(:w AS double precision)"""
_NOW_EPOCH = "CAST(extract(epoch FROM now()) AS double precision)"


def rank_key_sql(score: str) -> str:
    return f"CASE WHEN {score} > 0 THEN ln({score}) + CAST(:rate AS double precision) * {_NOW_EPOCH} END"


async def record_popularity(
    session: AsyncSession,
    tenant_id: str,
    document_id: uuid.UUID,
    weight: float,
    likers_delta: int,
    half_life_days: float,
) -> None:
    await session.execute(
        text(
            f"""
            INSERT INTO item_popularity AS p (tenant_id, document_id, score, updated_at, likers, rank_key)
            VALUES (:t, :d, CAST(:w AS double precision), now(), greatest(CAST(:dl AS integer), 0),
                    {rank_key_sql("CAST(:w AS double precision)")})
            ON CONFLICT (tenant_id, document_id) DO UPDATE SET
                score = {_NEW_SCORE},
                updated_at = now(),
                likers = greatest(p.likers + CAST(:dl AS integer), 0),
                rank_key = {rank_key_sql(f"({_NEW_SCORE})")}
            """
        ),
        {"t": tenant_id, "d": document_id, "w": weight, "dl": likers_delta, "rate": decay_rate(half_life_days)},
    )


async def rebuild(session: AsyncSession, tenant_id: str, half_life_days: float = 14.0, *, pairs: bool = True) -> int:
    """Recompute a tenant's co-engagement (unless `pairs` is False) and item popularity from its
    feedback. Returns the number of pairs."""
    await session.execute(text("DELETE FROM item_popularity WHERE tenant_id = :t"), {"t": tenant_id})
    liked = f"""
        liked AS (
            SELECT user_id, document_id FROM (
                SELECT DISTINCT ON (f.user_id, f.document_id) f.user_id, f.document_id, {_W} AS w
                FROM feedback f JOIN documents d ON d.id = f.document_id
                WHERE f.tenant_id = :t AND abs({_W}) >= {LIKED_AT}
                ORDER BY f.user_id, f.document_id, f.seq DESC
            ) latest WHERE w > 0
        )"""
    sql = f"""
        WITH {liked}
        INSERT INTO co_engagement (tenant_id, item_a, item_b, users)
        SELECT :t, x.document_id, y.document_id, count(*)
        FROM liked x JOIN liked y ON y.user_id = x.user_id AND y.document_id <> x.document_id
        GROUP BY x.document_id, y.document_id
        """
    count = 0
    if pairs:
        await session.execute(text("DELETE FROM co_engagement WHERE tenant_id = :t"), {"t": tenant_id})
        result = await session.execute(text(sql), {"t": tenant_id})
        count = int(getattr(result, "rowcount", 0) or 0)
    # Scores and likers are each aggregated first (one row per document), then joined.
    popularity = f"""
        WITH {liked},
        likers AS (SELECT document_id, count(*) AS n FROM liked GROUP BY document_id),
        scores AS (
            SELECT f.document_id,
                   sum({_W} * exp(-CAST(:rate AS double precision) * extract(epoch FROM now() - f.created_at))) AS s
            FROM feedback f JOIN documents d ON d.id = f.document_id
            WHERE f.tenant_id = :t
            GROUP BY f.document_id
        )
        INSERT INTO item_popularity (tenant_id, document_id, score, updated_at, likers, rank_key)
        SELECT :t, s.document_id, s.s, now(), coalesce(l.n, 0), {rank_key_sql("s.s")}
        FROM scores s LEFT JOIN likers l ON l.document_id = s.document_id
        """
    await session.execute(text(popularity), {"t": tenant_id, "rate": decay_rate(half_life_days)})
    return count
