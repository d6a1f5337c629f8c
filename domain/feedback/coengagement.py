"""Item-to-item co-engagement and item popularity, kept in each event's transaction.

A user's verdict on a document is their latest strong signal on it (`kinds.LIKED_AT`): a like,
watched or a rating of 4+ makes it liked; a later dislike (or a rating of 1) takes that back.

Bounded pairs: a user's current likes, in the order they became likes, pair only within a
window of `window` positions (`LearningConfig.co_engagement_window`, 50). So a new like pairs with
the user's last 50 likes, not with all of them: the table grows linearly in a user's likes, not
with their square (a 500-event user no longer writes 40,000 pairs), and the pairs that remain are
the ones closest in time, which say the most about taste. When a like is retracted, its pairs go,
and the likes on either side of it, now one position closer, gain the pairs that the window
newly spans; so co-engagement always counts current likes only, and the same numbers come from
one SQL statement over the feedback table (`rebuild`), exactly.

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


DEFAULT_WINDOW = 50


def _ranked_likes(per_user: bool) -> str:
    """CTEs `strong`, `verdicts`, `ranked`: the current likes, each with its position `pos` (1, 2,
    …) in the order they became likes (the first positive strong signal after the last negative
    one), for user :u, or for every user of the tenant with `per_user`."""
    who = "" if per_user else "AND f.user_id = :u"
    return f"""
        strong AS (
            SELECT f.user_id, f.document_id, f.seq, {_W} AS w
            FROM feedback f JOIN documents d ON d.id = f.document_id
            WHERE f.tenant_id = :t {who} AND abs({_W}) >= {LIKED_AT}
        ),
        verdicts AS (
            SELECT user_id, document_id, (array_agg(w ORDER BY seq DESC))[1] AS latest,
                   coalesce(max(seq) FILTER (WHERE w < 0), 0) AS last_negative
            FROM strong GROUP BY user_id, document_id
        ),
        since AS (
            SELECT s.user_id, s.document_id, min(s.seq) AS since
            FROM strong s JOIN verdicts v ON v.user_id = s.user_id AND v.document_id = s.document_id
            WHERE v.latest > 0 AND s.w > 0 AND s.seq > v.last_negative
            GROUP BY s.user_id, s.document_id
        ),
        ranked AS (
            SELECT user_id, document_id,
                   row_number() OVER (PARTITION BY user_id ORDER BY since, document_id) AS pos
            FROM since
        )"""


async def currently_liked(session: AsyncSession, tenant_id: str, user_id: str, document_id: uuid.UUID) -> bool:
    sql = f"""
        SELECT {_W} > 0 FROM feedback f
        WHERE f.tenant_id = :t AND f.user_id = :u AND f.document_id = :d AND abs({_W}) >= {LIKED_AT}
        ORDER BY f.seq DESC LIMIT 1
        """
    row = (await session.execute(text(sql), {"t": tenant_id, "u": user_id, "d": document_id})).first()
    return bool(row[0]) if row is not None else False


async def _apply(session: AsyncSession, tenant_id: str, pairs_sql: str, params: dict[str, object], by: int) -> int:
    """Add `by` users to each pair (a, b) that `pairs_sql` selects, in both directions."""
    both = f"""
        {pairs_sql},
        directed AS (SELECT a, b FROM pairs UNION ALL SELECT b, a FROM pairs)"""
    if by > 0:
        sql = f"""
            {both}
            INSERT INTO co_engagement (tenant_id, item_a, item_b, users)
            SELECT :t, a, b, :by FROM directed ORDER BY a, b
            ON CONFLICT (tenant_id, item_a, item_b) DO UPDATE SET users = co_engagement.users + EXCLUDED.users
            """
    else:
        sql = f"""
            {both}
            UPDATE co_engagement c SET users = c.users + :by
            FROM directed p WHERE c.tenant_id = :t AND c.item_a = p.a AND c.item_b = p.b
            """
    result = await session.execute(text(sql), {**params, "t": tenant_id, "by": by})
    return int(getattr(result, "rowcount", 0) or 0)


async def add_like(
    session: AsyncSession, tenant_id: str, user_id: str, document_id: uuid.UUID, window: int = DEFAULT_WINDOW
) -> int:
    """The user's verdict on `document_id` turns to liked (call before inserting the event): it
    becomes their newest like and pairs with the `window` before it. Returns the pairs touched."""
    pairs = f"""
        WITH {_ranked_likes(per_user=False)},
        pairs AS (
            SELECT CAST(:d AS uuid) AS a, r.document_id AS b FROM ranked r
            WHERE r.document_id <> :d AND r.pos > (SELECT coalesce(max(pos), 0) FROM ranked) - :n
        )"""
    return await _apply(session, tenant_id, pairs, {"u": user_id, "d": document_id, "n": window}, +1)


async def retract_like(
    session: AsyncSession, tenant_id: str, user_id: str, document_id: uuid.UUID, window: int = DEFAULT_WINDOW
) -> int:
    """The user no longer likes `document_id` (call before inserting the event): its pairs go,
    and the likes `window + 1` apart across it, now `window` apart, pair."""
    params = {"u": user_id, "d": document_id, "n": window}
    gone = f"""
        WITH {_ranked_likes(per_user=False)},
        me AS (SELECT pos FROM ranked WHERE document_id = :d),
        pairs AS (
            SELECT CAST(:d AS uuid) AS a, r.document_id AS b FROM ranked r, me
            WHERE r.document_id <> :d AND abs(r.pos - me.pos) <= :n
        )"""
    bridged = f"""
        WITH {_ranked_likes(per_user=False)},
        me AS (SELECT pos FROM ranked WHERE document_id = :d),
        pairs AS (
            SELECT x.document_id AS a, y.document_id AS b FROM ranked x JOIN ranked y ON y.pos = x.pos + :n + 1, me
            WHERE x.pos < me.pos AND y.pos > me.pos
        )"""
    touched = await _apply(session, tenant_id, gone, params, -1)
    touched += await _apply(session, tenant_id, bridged, params, +1)
    await session.execute(
        text("DELETE FROM co_engagement WHERE tenant_id = :t AND (item_a = :d OR item_b = :d) AND users <= 0"),
        {"t": tenant_id, "d": document_id},
    )
    return touched


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


async def rebuild(
    session: AsyncSession,
    tenant_id: str,
    half_life_days: float = 14.0,
    *,
    pairs: bool = True,
    window: int = DEFAULT_WINDOW,
) -> int:
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
        WITH {_ranked_likes(per_user=True)}
        INSERT INTO co_engagement (tenant_id, item_a, item_b, users)
        SELECT :t, x.document_id, y.document_id, count(*)
        FROM ranked x JOIN ranked y ON y.user_id = x.user_id AND y.document_id <> x.document_id
                                   AND abs(y.pos - x.pos) <= :n
        GROUP BY x.document_id, y.document_id
        """
    count = 0
    if pairs:
        await session.execute(text("DELETE FROM co_engagement WHERE tenant_id = :t"), {"t": tenant_id})
        result = await session.execute(text(sql), {"t": tenant_id, "n": window})
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
